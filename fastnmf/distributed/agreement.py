"""Every rank raises the same error, or none does: local steps whose failures are exchanged.

A distributed fit validates its input on each rank; a bad block on one rank must not leave the others
waiting in a collective until the timeout. :func:`agree` runs a local step, exchanges its outcome with
every rank of the group (one ``all_gather_object``), and raises the first failure on all of them, naming
the rank. Collective failures later in a fit (a rank that died, a timeout) become a
:class:`DistributedError`.
"""

from __future__ import annotations

import torch.distributed as dist

from ..checkpoint import CheckpointError
from .comm import DistributedError, run

__all__ = ["DistributedError", "agree", "exchange"]

# Errors re-raised on every rank with their own type; anything else becomes a RuntimeError.
_KNOWN = {cls.__name__: cls for cls in (DistributedError, ValueError, TypeError, RuntimeError, MemoryError,
                                        FileNotFoundError, FloatingPointError, CheckpointError, NotImplementedError)}


def exchange(value, group) -> list:
    """``value`` of every rank of ``group``, in group-rank order (a pickled all-gather)."""
    values = [None] * dist.get_world_size(group)
    run("all_gather_object", dist.all_gather_object, values, value, group=group)
    return values


def agree(step, group):
    """Run ``step() -> (result, info)`` here; return ``(result, [info of every rank])`` — or, if ``step``
    raised on any rank, raise that error on every rank (the first failing rank's, naming it)."""
    try:
        result, info = step()
        failure = None
    except Exception as error:  # noqa: BLE001 — every failure must reach the other ranks
        result = info = None
        failure, local_error = (type(error).__name__, str(error)), error
    outcomes = exchange((failure, info), group)
    failed = [(rank, outcome[0]) for rank, outcome in enumerate(outcomes) if outcome[0] is not None]
    if failed:
        rank, (name, message) = failed[0]
        others = f"; ranks {[r for r, _ in failed[1:]]} failed too" if len(failed) > 1 else ""
        error = _KNOWN.get(name, RuntimeError)(f"{message} [rank {rank} of {len(outcomes)}{others}]")
        if failure is not None and failed[0][0] == dist.get_rank(group):
            raise error from local_error
        raise error
    return result, [outcome[1] for outcome in outcomes]
