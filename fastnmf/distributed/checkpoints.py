"""Checkpoints of a distributed fit: one shard file per rank, one manifest written by rank 0.

In the checkpoint folder, each rank writes its owned W and H (``rank00003-iter000000120.npz``, the format
of ``fastnmf.checkpoint``, atomically); once every rank has written (an agreement, so a failed write fails
every rank and leaves the previous checkpoint in place), rank 0 replaces ``manifest.json`` atomically.
The manifest names the iteration and every shard file; a shard file is deleted only once a newer
manifest no longer names it — a crash at any moment leaves a manifest whose files all exist. On a
cluster without a shared file system each rank's file stays on its own node; only rank 0 reads the
manifest (and sends it to the others), each rank reads its own shard.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..checkpoint import Checkpoint, CheckpointError, read_checkpoint, write_atomically, write_checkpoint
from . import comm
from .agreement import agree

__all__ = ["MANIFEST", "ShardCheckpointWriter", "read_manifest", "read_shard"]

MANIFEST = "manifest.json"
_VERSION = 1


def _shard_name(rank: int, n_iter: int) -> str:
    return f"rank{rank:05d}-iter{n_iter:09d}.npz"


def _host(state: dict | None) -> dict | None:
    if not state:
        return None
    return {key: value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
            for key, value in state.items()}


class ShardCheckpointWriter:
    """``writer(result)`` at each objective check: every ``every`` seconds (any rank's clock: the
    decision is all-reduced), every rank writes its shard, then rank 0 the manifest."""

    def __init__(self, folder, every: float, grid, rank: int, params: dict, shape, dtype: str, device,
                 previous: str | None = None):
        self.folder, self.every, self.grid, self.rank = Path(folder), float(every), grid, rank
        self.params, self.shape, self.dtype, self.device = params, tuple(int(v) for v in shape), dtype, device
        self.last_write = time.monotonic()
        # This rank's file that the current manifest names (the one a resumed fit started from).
        self.written: list[str] = [previous] if previous else []

    def __call__(self, result) -> None:
        due = torch.tensor([1.0 if time.monotonic() - self.last_write >= self.every else 0.0], device=self.device)
        if not bool(comm.all_reduce_max(due, self.grid.group)[0]):
            return
        name = _shard_name(self.rank, result.n_iter)

        def write():
            self.folder.mkdir(parents=True, exist_ok=True)
            write_checkpoint(self.folder / name, Checkpoint(
                W=result.W.detach().cpu().numpy(), H=result.H.detach().cpu().numpy(), n_iter=result.n_iter,
                loss_history=list(result.loss_history), params=self.params, x_shape=self.shape, x_dtype=self.dtype,
                solver_state=_host(result.solver_state)))
            return None, name

        _, names = agree(write, self.grid.group)
        if self.rank == 0:
            manifest = dict(version=_VERSION, n_iter=result.n_iter, grid=list(self.grid.shape), shape=list(self.shape),
                            x_dtype=self.dtype, params=self.params, shards=names)
            content = json.dumps(manifest, indent=1).encode()
            agree(lambda: (write_atomically(self.folder / MANIFEST, lambda handle: handle.write(content)), None),
                  self.grid.group)
        else:
            agree(lambda: (None, None), self.grid.group)
        # Every rank now knows the manifest names only the files just written: older ones can go.
        for old in self.written:
            if old != name:
                (self.folder / old).unlink(missing_ok=True)
        self.written = [name]
        self.last_write = time.monotonic()


def read_manifest(folder, grid) -> dict:
    """Rank 0 reads ``manifest.json`` and sends it to every rank (an error on rank 0 is raised everywhere)."""
    folder = Path(folder)

    def read():
        if grid.position != (0, 0):
            return None, None
        path = folder / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"No distributed checkpoint at {folder}: {MANIFEST} is missing.")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"The manifest {path} is unreadable ({type(error).__name__}: {error}).") from error
        if manifest.get("version") != _VERSION:
            raise CheckpointError(f"The manifest {path} has format version {manifest.get('version')}; this fastnmf "
                                  f"reads {_VERSION}.")
        return None, manifest

    _, manifests = agree(read, grid.group)
    manifest = manifests[0]
    if list(grid.shape) != manifest["grid"]:
        raise ValueError(f"The checkpoint at {folder} was written by a {manifest['grid'][0]}×{manifest['grid'][1]} grid; "
                         f"this fit runs on {grid.rows}×{grid.columns}. Resume on the same grid.")
    return manifest


def read_shard(folder, manifest: dict, rank: int) -> Checkpoint:
    """This rank's shard of the checkpoint ``manifest`` describes."""
    return read_checkpoint(Path(folder) / manifest["shards"][rank])

