"""Timers and peak-memory meters, one of each per device kind.

- CPU work: ``time.perf_counter`` around the call (the call returns when the work is done).
- CUDA work: CUDA events recorded around the call and synchronized after it, so the time is the GPU
  timeline between them, including any gaps where the GPU waited on Python.
- CPU memory: the peak resident set size (``VmHWM``) during the call minus the resident size before the
  provider started, the peak being reset before each timed chunk through ``/proc/self/clear_refs``
  (Linux ≥ 4.0). It counts every allocator (torch, numpy, OpenBLAS), which tracemalloc would not (torch's
  CPU allocations are invisible to it). Large blocks are made to go straight back to the OS on free
  (``mallopt``), so that memory a previous provider freed does not hide this one's peak.
- CUDA memory: ``torch.cuda.max_memory_allocated`` minus the allocation before the provider started.
"""

from __future__ import annotations

import ctypes
import gc
import time
from typing import Callable

import torch

__all__ = ["make_timer", "make_memory_meter", "release_freed_memory"]

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()
if _LIBC is not None:
    # A fixed threshold disables glibc's adaptive one, which would otherwise rise to 32 MB after the
    # first large free and keep every later m×n temporary of < 32 MB in the heap after it is freed.
    _LIBC.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so the next RSS baseline is honest."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class _CpuTimer:
    """``timer(fn)`` times one call; ``start()`` … ``stop()`` time whatever runs in between (a provider
    that reports through a callback)."""

    name = "time.perf_counter"

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self) -> float:
        return time.perf_counter() - self._start

    def __call__(self, fn: Callable[[], None]) -> float:
        self.start()
        fn()
        return self.stop()


class _CudaTimer:
    name = "CUDA events"

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> None:
        self._start = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(self.device)  # nothing queued before the chunk is charged to it
        self._start.record()

    def stop(self) -> float:
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return self._start.elapsed_time(end) * 1e-3

    def __call__(self, fn: Callable[[], None]) -> float:
        self.start()
        fn()
        return self.stop()


def make_timer(device: torch.device):
    return _CudaTimer(device) if device.type == "cuda" else _CpuTimer()


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class _RssMeter:
    method = "CPU: peak RSS (VmHWM, reset per chunk via /proc/self/clear_refs) minus RSS before start"

    def __init__(self):
        self.baseline = 0
        self.peak = 0
        self.available = self._can_reset()

    @staticmethod
    def _can_reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
        except OSError:
            return False
        return _status_kib("VmHWM") is not None

    def start(self) -> None:
        release_freed_memory()
        self.baseline = (_status_kib("VmRSS") or 0) * 1024
        self.peak = 0

    def before_chunk(self) -> None:
        if self.available:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")

    def after_chunk(self) -> None:
        if self.available:
            self.peak = max(self.peak, (_status_kib("VmHWM") or 0) * 1024 - self.baseline)

    def result(self) -> int | None:
        return max(self.peak, 0) if self.available else None


class _CudaMeter:
    method = "CUDA: torch.cuda.max_memory_allocated minus memory_allocated before start"

    def __init__(self, device: torch.device):
        self.device = device
        self.baseline = 0
        self.peak = 0
        self.available = True

    def start(self) -> None:
        release_freed_memory()
        torch.cuda.synchronize(self.device)
        self.baseline = torch.cuda.memory_allocated(self.device)
        self.peak = 0

    def before_chunk(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def after_chunk(self) -> None:
        self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device) - self.baseline)

    def result(self) -> int | None:
        return max(self.peak, 0)


def make_memory_meter(device: torch.device):
    return _CudaMeter(device) if device.type == "cuda" else _RssMeter()
