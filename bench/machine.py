"""How busy the machine is with work that is not ours (shared development machines).

Other processes on a 2-core machine do not just take their share: every multi-threaded PyTorch/MKL call
waits at its OpenMP barrier for a thread that was descheduled, and small operations become 10–100×
slower. The harness therefore measures, for each timed run, the CPU time that *other* processes used
during its timed chunks (``/proc/stat`` busy time minus this process's own, all threads included), and
can wait for a quiet machine before each run (``--wait-quiet``). Linux only; elsewhere it reports None.
"""

from __future__ import annotations

import os
import time

__all__ = ["CpuCounter", "foreign_cores", "wait_until_quiet"]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_and_own() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        with open("/proc/self/stat") as own:
            # fields after the ")" that ends the command name: utime and stime are the 12th and 13th
            parts = own.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal, int(parts[11]) + int(parts[12])


class CpuCounter:
    """Accumulates other processes' CPU time over the intervals between ``start()`` and ``stop()``."""

    def __init__(self):
        self.foreign_ticks = 0
        self.seconds = 0.0
        self._mark = None

    def start(self) -> None:
        self._mark = (_busy_and_own(), time.perf_counter())

    def stop(self) -> None:
        (before, t0), after = self._mark, _busy_and_own()
        if before is None or after is None:
            return
        self.foreign_ticks += max(0, (after[0] - before[0]) - (after[1] - before[1]))
        self.seconds += time.perf_counter() - t0

    def cores(self) -> float | None:
        """Average number of cores other processes kept busy during the measured intervals."""
        return self.foreign_ticks / _TICKS / self.seconds if self.seconds > 0 else None


def foreign_cores(window_s: float = 1.0) -> float | None:
    counter = CpuCounter()
    counter.start()
    time.sleep(window_s)
    counter.stop()
    return counter.cores()


def wait_until_quiet(max_wait_s: float, threshold_cores: float = 0.15) -> float:
    """Wait (at most ``max_wait_s``) until other processes use less than ``threshold_cores`` for a second;
    return the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < max_wait_s:
        busy = foreign_cores(1.0)
        if busy is None or busy < threshold_cores:
            break
    return time.perf_counter() - started
