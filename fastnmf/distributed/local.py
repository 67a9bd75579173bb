"""Run a function on N gloo processes of this machine (127.0.0.1), with a deadline.

``run_local(world, target, *args)`` spawns ``world`` processes (spawn start method, one torch thread each),
initializes a gloo process group over TCP on a free loopback port, calls ``target(rank, world, *args)`` on
each and returns what each returned (pickled through files). A rank that raises reports its traceback
(:class:`RankFailed` in the caller); a rank that exits without returning reports its exit code
(:class:`RankExit`, with ``allow_exit=True``); past ``deadline`` seconds every process still running is
killed — nothing can hang. What the distributed tests and ``python -m bench --distributed N`` launch with;
``target`` must be importable by name (a module-level function).
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import pickle
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

__all__ = ["run_local", "RankExit", "RankFailed", "free_port"]


@dataclass
class RankExit:
    """A rank that ended without returning: its exit code."""

    exitcode: int | None


class RankFailed(RuntimeError):
    """A rank raised, or ranks were still running at the deadline."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _entry(rank, world, port, timeout_s, target, args, out_dir):
    if os.path.exists("/sys/class/net/lo"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only: nothing leaves this machine
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    outcome = None
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
        outcome = ("ok", target(rank, world, *args))
    except BaseException:  # noqa: BLE001 — reported to the parent
        outcome = ("error", traceback.format_exc())
    with open(Path(out_dir) / f"rank{rank}.pkl", "wb") as handle:
        pickle.dump(outcome, handle)
    # No destroy_process_group: after a failed collective it can block; the process exits here.
    os._exit(0)


def run_local(world: int, target, *args, deadline: float = 90.0, collective_timeout: float = 30.0,
              allow_exit: bool = False) -> list:
    """``[target(rank, world, *args) for every rank]``, run in ``world`` gloo processes (module docstring)."""
    context = multiprocessing.get_context("spawn")
    port = free_port()
    with tempfile.TemporaryDirectory() as out_dir:
        processes = [context.Process(target=_entry, args=(rank, world, port, collective_timeout, target, args, out_dir))
                     for rank in range(world)]
        for process in processes:
            process.start()
        end = time.monotonic() + deadline
        for process in processes:
            process.join(max(0.0, end - time.monotonic()))
        hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
        if hung:
            raise RankFailed(f"ranks {hung} of {world} still running after {deadline} s: killed")
        results = []
        for rank, process in enumerate(processes):
            path = Path(out_dir) / f"rank{rank}.pkl"
            if not path.exists():
                if not allow_exit:
                    raise RankFailed(f"rank {rank} exited with code {process.exitcode} without a result")
                results.append(RankExit(process.exitcode))
                continue
            status, value = pickle.loads(path.read_bytes())
            if status == "error":
                raise RankFailed(f"rank {rank} of {world} raised:\n{value}")
            results.append(value)
        return results
