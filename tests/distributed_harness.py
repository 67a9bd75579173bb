"""Run a function on N gloo ranks on 127.0.0.1, with a deadline: the distributed tests' launcher.

``run_ranks(world, target, *args)`` spawns ``world`` processes (spawn start method, one torch thread
each), initializes a gloo process group over TCP on a free local port, calls ``target(rank, world, *args)``
on each and returns what each returned (pickled through files). A rank that raises reports its traceback;
a rank that exits reports its exit code (:class:`RankExit`); past ``deadline`` seconds every process still
running is killed and the test fails — no test can hang.
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


@dataclass
class RankExit:
    """A rank that ended without returning: its exit code."""

    exitcode: int | None


class RankFailed(AssertionError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _entry(rank, world, port, timeout_s, target, args, out_dir):
    os.environ.setdefault("TRITON_INTERPRET", "1")
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


def run_ranks(world: int, target, *args, deadline: float = 90.0, collective_timeout: float = 30.0,
              allow_exit: bool = False) -> list:
    """``[target(rank, world, *args) for every rank]``, run in ``world`` gloo processes."""
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
