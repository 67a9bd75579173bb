"""Checkpoints of a running fit: written atomically, read without pickle, checked against the data.

A checkpoint is an ``.npz`` with W, H, the iteration count, the loss history, the estimator's parameters
(as JSON) and the shape and dtype of X. It is written to a temporary file in the same folder, flushed to
disk (fsync) and renamed over the old one, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Checkpoint", "write_checkpoint", "write_atomically", "read_checkpoint", "CheckpointError"]

_FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, incomplete, or made for other data or options."""


@dataclass
class Checkpoint:
    W: np.ndarray
    H: np.ndarray
    n_iter: int
    loss_history: list[float]
    params: dict
    x_shape: tuple[int, int]
    x_dtype: str
    # A solver's internal state beyond (W, H) — HALS extrapolation's step sizes and pairs — so that a resumed
    # fit continues exactly: scalars (JSON) and arrays, in the solver's units. None when there is none.
    solver_state: dict | None = None


def _save(handle, checkpoint: Checkpoint) -> None:
    # np.savez is the one writer; tests patch it to simulate a crash mid-write.
    np.savez(
        handle,
        version=np.array(_FORMAT_VERSION),
        W=checkpoint.W,
        H=checkpoint.H,
        n_iter=np.array(checkpoint.n_iter),
        loss_history=np.asarray(checkpoint.loss_history, dtype=np.float64),
        params=np.array(json.dumps(checkpoint.params)),
        x_shape=np.asarray(checkpoint.x_shape, dtype=np.int64),
        x_dtype=np.array(checkpoint.x_dtype),
        **_state_entries(checkpoint.solver_state),
    )


_STATE_PREFIX = "state_"


def _state_entries(state: dict | None) -> dict:
    if not state:
        return {}
    arrays = {key: value for key, value in state.items() if isinstance(value, np.ndarray)}
    scalars = {key: value for key, value in state.items() if key not in arrays}
    entries = {_STATE_PREFIX + key: value for key, value in arrays.items()}
    entries[_STATE_PREFIX + "scalars"] = np.array(json.dumps(scalars))
    return entries


def _read_state(archive) -> dict | None:
    keys = [key for key in archive.files if key.startswith(_STATE_PREFIX)]
    if not keys:
        return None
    state = json.loads(str(archive[_STATE_PREFIX + "scalars"]))
    state.update({key[len(_STATE_PREFIX):]: archive[key] for key in keys if key != _STATE_PREFIX + "scalars"})
    return state


def write_checkpoint(path, checkpoint: Checkpoint) -> None:
    """Write atomically (:func:`write_atomically`)."""
    write_atomically(path, lambda handle: _save(handle, checkpoint))


def write_atomically(path, save) -> None:
    """``save(handle)`` into a temporary file in ``path``'s folder (binary), fsync, rename over ``path``, fsync
    the folder: readers see the old file or the new one, never a part."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            save(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    # Make the rename itself durable (POSIX: fsync the folder).
    if hasattr(os, "O_DIRECTORY"):
        folder_descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder_descriptor)
        finally:
            os.close(folder_descriptor)


def read_checkpoint(path) -> Checkpoint:
    """Read a checkpoint (``allow_pickle=False``); any damage is a :class:`CheckpointError` naming the file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            version = int(archive["version"])
            if version != _FORMAT_VERSION:
                raise CheckpointError(f"Checkpoint {path} has format version {version}; this fastnmf reads {_FORMAT_VERSION}.")
            return Checkpoint(
                W=archive["W"],
                H=archive["H"],
                n_iter=int(archive["n_iter"]),
                loss_history=[float(v) for v in archive["loss_history"]],
                params=json.loads(str(archive["params"])),
                x_shape=tuple(int(v) for v in archive["x_shape"]),
                x_dtype=str(archive["x_dtype"]),
                solver_state=_read_state(archive),
            )
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise
    except Exception as error:  # zip, key, value or JSON errors: all mean the file is not a usable checkpoint
        raise CheckpointError(f"Checkpoint {path} is corrupt or incomplete ({type(error).__name__}: {error}).") from error
