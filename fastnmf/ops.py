"""Backend dispatch: the one place that decides which implementation of the ops runs.

Solvers only see a :class:`Backend`: ``mu_update_h``/``mu_update_w``, ``hals_update_h``/``hals_update_w``
and ``objective``. A W update is always the H update of the transposed problem ``Xᵀ ≈ Hᵀ Wᵀ`` (views, no
copies), so a backend implements each H update once. The data handed to a backend is what validation made
of X: a dense tensor, a :class:`fastnmf.sparse.SparseMatrix`, or a :class:`fastnmf.weights.WeightedMatrix`
(X with entry weights); each has ``.T``, and each has its own backend: dense X runs on "torch" or "triton",
sparse X on "torch-sparse" or "triton-sparse" (the fused KL kernel; torch sparse ops for the rest), weighted
X on the weighted torch backend only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import backend_sparse, backend_torch

__all__ = ["Backend", "BACKEND_NAMES", "DATA_LAYOUTS", "PRECISIONS", "resolve_backend", "triton_available"]

BACKEND_NAMES = ("auto", "torch", "triton")


@dataclass(frozen=True)
class Backend:
    """The ops a solver needs. All take and return tensors on X's device; none syncs with the host."""

    name: str
    mu_update_h: Callable[..., torch.Tensor]
    objective: Callable[..., torch.Tensor]
    # (X, W, H, *, l1, l2, max_sweeps, delta) -> (H_new, ½‖X − W·H_new‖² − ½‖X‖²); β = 2 only.
    hals_update_h: Callable[..., tuple] = backend_torch.hals_update_h
    # Dtypes of X the backend reads directly; any other float X is converted to the factors' dtype once.
    native_x_dtypes: tuple = (torch.float32, torch.float64)
    # Fixed cost of one HALS row update, in flop-equivalents per device type (0 when the sweep is one
    # fused kernel). It enters the accelerated-HALS sweep count (solvers.inner_sweep_limit).
    hals_row_overhead: dict = field(default_factory=dict)

    def mu_update_w(self, X, W, H, **options):
        """MU update of W = the H update of ``Xᵀ ≈ Hᵀ Wᵀ``; returns a new (m×k) tensor."""
        return self.mu_update_h(X.T, H.T, W.T, **options).T

    def hals_update_w(self, X, W, H, **options):
        """HALS update of W = the H update of ``Xᵀ ≈ Hᵀ Wᵀ``; returns ``(W_new, fit)``."""
        W_new_t, fit = self.hals_update_h(X.T, H.T, W.T, **options)
        return W_new_t.T, fit


# The torch sweep launches ~3 ops per row. Estimated, not measured: ~4 µs per op on the CPU against
# ~250 GFLOP/s of fp32 GEMM (≈3e6 flops), ~5 µs per launch on a GPU against ~50 TFLOP/s (≈7.5e8).
# Without this term, digits (1797×64, k=16) got up to 67 sweeps of 16 Python-launched rows per H update.
_TORCH_ROW_OVERHEAD = {"cpu": 3e6, "cuda": 7.5e8}
TORCH_BACKEND = Backend("torch", backend_torch.mu_update_h, backend_torch.objective,
                        hals_row_overhead=_TORCH_ROW_OVERHEAD)
SPARSE_BACKEND = Backend("torch-sparse", backend_sparse.mu_update_h, backend_sparse.objective,
                         hals_update_h=backend_sparse.hals_update_h, hals_row_overhead=_TORCH_ROW_OVERHEAD)
DATA_LAYOUTS = ("dense", "sparse", "weighted")


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available() -> bool:
    """True when Triton imports (it is a Linux-only dependency)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


PRECISIONS = ("ieee", "tf32", "tf32x3")


def _triton_backend(precision: str, data: str = "dense") -> Backend:
    from . import backend_triton  # imported lazily: it compiles (or interprets) kernels on import

    return backend_triton.make_sparse_backend(precision) if data == "sparse" else backend_triton.make_backend(precision)


def _weighted_backend() -> Backend:
    from . import backend_weighted  # imports fastnmf.weights, which imports the validation layer

    return backend_weighted.BACKEND


def resolve_backend(
    name: str, device: torch.device, precision: str = "ieee", dtype: torch.dtype = torch.float32,
    data: str = "dense",
) -> Backend:
    """``"auto"``: Triton for CUDA data in float32/float16/bfloat16 when Triton imports, else torch
    (float64 data keeps float64 factors, which only the torch backend computes). ``"triton"`` on a CPU
    tensor needs the Triton interpreter (``TRITON_INTERPRET=1``, set before fastnmf is imported).

    ``data``: ``"dense"`` (a tensor), ``"sparse"`` (a :class:`fastnmf.sparse.SparseMatrix`) or
    ``"weighted"`` (a :class:`fastnmf.weights.WeightedMatrix`). Sparse data follows the same rules as dense
    data, with the sparse backends: ``"triton"`` (and ``"auto"`` on CUDA) gives
    ``backend_triton.make_sparse_backend`` — the fused sparse KL kernel for β = 1, the torch sparse ops
    for the other β, the objective and HALS — and ``"torch"`` the torch sparse backend. Weighted data always
    runs on its torch backend (CPU or CUDA): there are no Triton kernels for it, so ``"auto"`` picks it and
    an explicit ``"triton"`` is an error rather than a silent change of backend.

    ``precision`` is the precision of the Triton kernels' matrix products (``"ieee"`` fp32, ``"tf32"``,
    ``"tf32x3"``); the torch backend follows PyTorch's own matmul settings.
    """
    if name not in BACKEND_NAMES:
        raise ValueError(f"Invalid backend {name!r}: expected one of {list(BACKEND_NAMES)}.")
    if precision not in PRECISIONS:
        raise ValueError(f"Invalid precision {precision!r}: expected one of {list(PRECISIONS)}.")
    if data not in DATA_LAYOUTS:
        raise ValueError(f"Invalid data layout {data!r}: expected one of {list(DATA_LAYOUTS)}.")
    if data == "weighted":
        if name == "triton":
            raise ValueError(
                "backend='triton' has no kernels for entry weights or missing values yet; use backend='auto' "
                "or 'torch' (the weighted torch backend runs on CPU and CUDA)."
            )
        return _weighted_backend()
    torch_backend = SPARSE_BACKEND if data == "sparse" else TORCH_BACKEND
    if name == "torch":
        return torch_backend
    if name == "auto":
        if device.type == "cuda" and dtype != torch.float64 and triton_available():
            return _triton_backend(precision, data)
        return torch_backend
    if dtype == torch.float64:
        raise TypeError(
            "backend='triton' computes with float32 factors, but X is float64. Pass float32 data "
            "(X.astype(np.float32) or X.float()), or use backend='torch' to keep float64."
        )
    if not triton_available():
        raise RuntimeError("backend='triton' needs the 'triton' package (Linux only): pip install triton.")
    if device.type != "cuda" and not _interpreting():
        raise RuntimeError(
            f"backend='triton' runs on CUDA tensors, but the data is on {device}. Move it to a GPU "
            "(X.cuda()), or use backend='torch'; to run the kernels on the CPU for testing, set "
            "TRITON_INTERPRET=1 in the environment before importing fastnmf."
        )
    return _triton_backend(precision, data)
