"""The collectives of a distributed fit, written once: uneven parts padded, payloads counted.

Every collective goes through this module, so that (1) parts of unequal size work on every backend —
each part is padded to the largest and the tensor collectives (``all_gather_into_tensor``,
``reduce_scatter_tensor``, which NCCL and gloo both run) move equal chunks — and (2) a
:class:`PayloadLog` can count what a fit sends: the *logical* payload of each collective (the gathered
block, the reduced-and-scattered input, the all-reduced tensor), unpadded. That is the quantity of the
communication formula in docs/distributed.md; the bytes on the wire depend on the backend's algorithm
(ring collectives move about 2·(p−1)/p of it per rank; padding adds up to one column per part).

A group of None means a group of one process: nothing to communicate, nothing counted.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

__all__ = ["DistributedError", "run", "PayloadLog", "count_payload", "all_reduce", "all_reduce_max",
           "all_gather_parts", "reduce_scatter_parts"]


@dataclass
class PayloadLog:
    """Collectives recorded while :func:`count_payload` is active: ``(operation, logical bytes, group size)``."""

    records: list = field(default_factory=list)

    def count(self, operation: str) -> int:
        return sum(1 for record in self.records if record[0] == operation)

    def bytes(self, operation: str | None = None) -> int:
        return sum(record[1] for record in self.records if operation is None or record[0] == operation)


_ACTIVE: list[PayloadLog] = []

# torch 2.13 renamed the tensor collectives (the old names warn); older torch has only the old ones.
gather_into_tensor = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
reduce_scatter_tensor = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


@contextlib.contextmanager
def count_payload():
    """Count the collectives of this process inside the ``with`` block: ``with count_payload() as log``."""
    log = PayloadLog()
    _ACTIVE.append(log)
    try:
        yield log
    finally:
        _ACTIVE.remove(log)


class DistributedError(RuntimeError):
    """A collective failed: another rank died, or did not answer within the group's timeout."""


def run(operation: str, collective, *args, **kwargs):
    """``collective(*args, **kwargs)``, its failure (NCCL and gloo raise RuntimeError subclasses, naming the
    peer's address at best) turned into a :class:`DistributedError` that says what it means."""
    try:
        return collective(*args, **kwargs)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DistributedError(
            f"rank {dist.get_rank()}: {operation} failed — another rank died or did not answer within the "
            f"process group's timeout ({first_line})"
        ) from error


def _record(operation: str, tensor_bytes: int, group) -> None:
    for log in _ACTIVE:
        log.records.append((operation, int(tensor_bytes), dist.get_world_size(group)))


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def all_reduce(tensor: torch.Tensor, group) -> torch.Tensor:
    """Sum over ``group``, in place; returns ``tensor``."""
    if group is not None:
        _record("all_reduce", _nbytes(tensor), group)
        run("all_reduce", dist.all_reduce, tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def all_reduce_max(tensor: torch.Tensor, group) -> torch.Tensor:
    """Maximum over ``group``, in place (flags and maxima: counted with the all-reduces)."""
    if group is not None:
        _record("all_reduce", _nbytes(tensor), group)
        run("all_reduce", dist.all_reduce, tensor, op=dist.ReduceOp.MAX, group=group)
    return tensor


def _padded_chunks(tensor: torch.Tensor, dim: int, sizes: list[int]) -> torch.Tensor:
    """``(p, *part shape)`` with part r = ``tensor``'s slice r along ``dim``, zero-padded to the largest."""
    widest = max(sizes)
    moved = tensor.movedim(dim, 0)
    chunks = torch.zeros((len(sizes), widest, *moved.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    start = 0
    for index, size in enumerate(sizes):
        chunks[index, :size] = moved[start:start + size]
        start += size
    return chunks


def all_gather_parts(part: torch.Tensor, dim: int, sizes: list[int], rank: int, group) -> torch.Tensor:
    """The parts of all members of ``group`` (member r's has ``sizes[r]`` entries along ``dim``)
    concatenated along ``dim``, in member order; a new contiguous tensor."""
    if group is None:
        return part.contiguous()
    if part.shape[dim] != sizes[rank]:
        raise RuntimeError(f"all-gather: this rank's part has {part.shape[dim]} entries along dim {dim}, "
                           f"expected {sizes[rank]}.")
    widest = max(sizes)
    moved = part.movedim(dim, 0)
    padded = torch.zeros((widest, *moved.shape[1:]), dtype=part.dtype, device=part.device)
    padded[:moved.shape[0]] = moved
    # The tensor collectives take the members' chunks stacked along dim 0 (p·widest rows).
    gathered = torch.empty((len(sizes) * widest, *padded.shape[1:]), dtype=part.dtype, device=part.device)
    _record("all_gather", sum(sizes) * _nbytes(padded) // max(widest, 1), group)
    run("all_gather", gather_into_tensor, gathered, padded, group=group)
    gathered = gathered.view(len(sizes), *padded.shape)
    whole = torch.cat([gathered[index, :size] for index, size in enumerate(sizes)], dim=0)
    return whole.movedim(0, dim).contiguous()


def reduce_scatter_parts(tensor: torch.Tensor, dim: int, sizes: list[int], rank: int, group) -> torch.Tensor:
    """The sum over ``group`` of ``tensor``, of which this member gets its part (``sizes[rank]`` entries
    along ``dim``, after the parts of the members before it); a new contiguous tensor."""
    if group is None:
        return tensor.contiguous()
    chunks = _padded_chunks(tensor, dim, sizes)
    mine = torch.empty(chunks.shape[1:], dtype=tensor.dtype, device=tensor.device)
    _record("reduce_scatter", _nbytes(tensor), group)
    run("reduce_scatter", reduce_scatter_tensor, mine, chunks.flatten(0, 1), op=dist.ReduceOp.SUM, group=group)
    return mine[:sizes[rank]].movedim(0, dim).contiguous()
