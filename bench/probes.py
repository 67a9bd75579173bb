"""This machine's limits, measured in the same run as the providers (not a spec sheet).

- read bandwidth: time to read X once (``X.sum()``): the best any pass over X can do on this machine,
  at this size (a 32 MB X may be helped by the caches; that is part of "this machine now"); plus a
  device-wide figure from a 1 GiB buffer (``large_bytes``);
- GEMM rate: fp32 products of the problem's own shapes (``Wᵀ X`` and ``X Hᵀ``) and a square one,
  through torch and (on a CPU) through numpy: their BLAS libraries differ (MKL vs OpenBLAS), and on some
  CPUs the one torch does not use is the faster — the limit is the best of them.

Each is the median of a few timings after one warm-up call.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch

from .clock import make_timer

__all__ = ["device_limits", "problem_limits"]


# A timing shorter than this is repeated back to back (a small X stays in cache, as during NMF), so that
# the launch cost of one call does not pass for the machine's limit; the count adapts to the call's cost.
_MIN_TIMING_S = 0.02
_MAX_INNER = 1000


def _median_seconds(fn, device: torch.device, repeats: int) -> float:
    """Per-call median over ``repeats`` timings, each of enough back-to-back calls to last ``_MIN_TIMING_S``."""
    timer = make_timer(device)
    timer(fn)  # warm-up: first-touch page faults, library initialization, kernel selection
    inner = min(_MAX_INNER, max(1, math.ceil(_MIN_TIMING_S / max(timer(fn), 1e-9))))

    def calls():
        for _ in range(inner):
            fn()

    return statistics.median(timer(calls) for _ in range(repeats)) / inner


def _read_gbps(X: torch.Tensor, repeats: int) -> float:
    seconds = _median_seconds(lambda: X.sum(), X.device, repeats)
    return X.numel() * X.element_size() / seconds / 1e9


def _gemm_tflops(a, b, repeats: int) -> float:
    """fp32 GEMM rate of ``a @ b``: torch tensors, or numpy arrays (timed on the CPU clock)."""
    device = a.device if isinstance(a, torch.Tensor) else torch.device("cpu")
    seconds = _median_seconds(lambda: a @ b, device, repeats)
    return 2.0 * a.shape[0] * a.shape[1] * b.shape[1] / seconds / 1e12


def device_limits(device: torch.device, large_bytes: int, square: int, repeats: int = 5) -> dict:
    """Read bandwidth of a ``large_bytes`` buffer and the fp32 GEMM rate of a ``square``³ product."""
    buffer = torch.ones(large_bytes // 4, dtype=torch.float32, device=device)
    read = _read_gbps(buffer, repeats)
    del buffer
    a = torch.rand(square, square, device=device)
    b = torch.rand(square, square, device=device)
    gemm = _gemm_tflops(a, b, repeats)
    numpy_gemm = _gemm_tflops(a.cpu().numpy(), b.cpu().numpy(), repeats) if device.type == "cpu" else None
    return {
        "gemm_tflops_square_numpy": numpy_gemm,
        "read_gbps_large": read,
        "read_large_bytes": int(large_bytes),
        "gemm_tflops_square": gemm,
        "gemm_square_size": int(square),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if device.type == "cuda" else None,
    }


def problem_limits(data, k: int, repeats: int = 5) -> dict:
    """Read-X-once bandwidth and the fp32 rates of the two X-GEMMs of one iteration, at this problem's
    shape. A problem too large to hold dense (``data.X`` is None) gets the read rate of its CSR arrays
    (values and column indices on the device) and no GEMM probe of its own (the square one stands in)."""
    X = data.X
    if X is None:
        csr = data.X_sparse
        device = data.W0.device
        values = torch.from_numpy(csr.data).to(device)
        indices = torch.from_numpy(csr.indices.astype(np.int64)).to(device)
        nbytes = values.numel() * values.element_size() + indices.numel() * indices.element_size()
        seconds = _median_seconds(lambda: (values.sum(), indices.sum()), device, repeats)
        return {"read_x_gbps": nbytes / seconds / 1e9, "read_x_what": "CSR values + column indices",
                "gemm_tflops_wtx": None, "gemm_tflops_xht": None, "gemm_tflops_wtx_numpy": None}
    m, n = X.shape
    W = torch.rand(m, k, device=X.device)
    H = torch.rand(k, n, device=X.device)
    limits = {
        "read_x_gbps": _read_gbps(X, repeats),
        "read_x_what": "dense X",
        "gemm_tflops_wtx": _gemm_tflops(W.T, X, repeats),
        "gemm_tflops_xht": _gemm_tflops(X, H.T, repeats),
        "gemm_tflops_wtx_numpy": None,
    }
    if X.device.type == "cpu":
        limits["gemm_tflops_wtx_numpy"] = _gemm_tflops(W.numpy().T, X.numpy(), repeats)
    return limits
