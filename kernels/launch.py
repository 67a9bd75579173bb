"""Host-side checks and allocations shared by the launchers (no Triton code here).

Every launcher allocates its outputs and scratch buffers through :func:`new_output` and
:func:`new_workspace`, called as ``launch.new_output(...)`` (looked up at call time, never imported by
name): the tests replace these two functions with NaN-filling ones (``tests/conftest.py``), so that an
entry a kernel forgets to write fails a test. The library itself allocates plainly.
"""

from __future__ import annotations

import contextlib
import math

import torch
import triton

from ..backends.contract import PRECISIONS, interpreting
from ..layouts.sparse import SparseMatrix

__all__ = [
    "IS",
    "KL",
    "FROBENIUS",
    "GENERAL",
    "beta_case",
    "X_DTYPES",
    "PRECISIONS",
    "check_factorization",
    "check_sparse_factorization",
    "check_mu_options",
    "check_precision",
    "check_scalar",
    "new_output",
    "new_workspace",
    "on_device",
    "split_rows",
]

# X is read in these dtypes and upcast in registers; factors, Grams and accumulators are fp32.
X_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# BETA_CASE constexpr of the β kernels: each fast path compiles to its own variant, any other β shares one.
IS, KL, FROBENIUS, GENERAL = 0, 1, 2, 3


def beta_case(beta: float) -> int:
    """The kernel variant for β: 0 (Itakura–Saito), 1 (KL), 2 (Frobenius) or 3 (any other β, via powers)."""
    return {0.0: IS, 1.0: KL, 2.0: FROBENIUS}.get(float(beta), GENERAL)


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"Invalid precision {precision!r}: expected one of {list(PRECISIONS)}.")
    return precision


def check_factorization(op: str, X: torch.Tensor, W: torch.Tensor, H: torch.Tensor) -> tuple[int, int, int]:
    """Check ``X (m×n) ≈ W (m×k) · H (k×n)`` for a kernel; return ``(m, n, k)``.

    Raises TypeError for a non-tensor or a wrong dtype, ValueError for shapes and devices; every message
    names the shapes involved.
    """
    for name, t in (("X", X), ("W", W), ("H", H)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}.")
    shapes = f"X {_shape(X)}, W {_shape(W)}, H {_shape(H)}"
    if X.dim() != 2 or W.dim() != 2 or H.dim() != 2:
        raise ValueError(f"{op}: X, W and H must be 2-D matrices; got {shapes}.")
    m, n = X.shape
    _check_chain(op, m, n, W, H, shapes)
    if X.dtype not in X_DTYPES:
        raise TypeError(f"{op}: X {_shape(X)} has dtype {X.dtype}; expected one of float32, float16, bfloat16.")
    _check_factors_and_device(op, _shape(X), X.device, W, H)
    return m, n, W.shape[1]


def _check_chain(op: str, m: int, n: int, W: torch.Tensor, H: torch.Tensor, shapes: str) -> None:
    """X (m×n) ≈ W (m×k) · H (k×n) with k ≥ 1 (dense and sparse X)."""
    if W.shape[0] != m or H.shape[1] != n or W.shape[1] != H.shape[0]:
        raise ValueError(f"{op}: shapes do not chain as X (m×n) ≈ W (m×k) · H (k×n): got {shapes}.")
    if W.shape[1] < 1:
        raise ValueError(f"{op}: the rank k must be ≥ 1; got {shapes}.")


def _check_factors_and_device(op: str, x_shape: str, x_device: torch.device, W: torch.Tensor, H: torch.Tensor) -> None:
    """float32 factors, all on X's device, and that device CUDA (or the interpreter) — dense and sparse X."""
    for name, t in (("W", W), ("H", H)):
        if t.dtype != torch.float32:
            raise TypeError(f"{op}: {name} {_shape(t)} has dtype {t.dtype}; the factors must be float32.")
    if not (x_device == W.device == H.device):
        raise ValueError(
            f"{op}: X {x_shape} is on {x_device}, W {_shape(W)} on {W.device}, H {_shape(H)} on {H.device}; "
            "all three must be on the same device."
        )
    if x_device.type != "cuda" and not interpreting():
        raise ValueError(
            f"{op}: the Triton kernels run on CUDA tensors, but X {x_shape} is on {x_device}; set "
            "TRITON_INTERPRET=1 before importing fastnmf to run them on the CPU."
        )


def check_sparse_factorization(op: str, X, W: torch.Tensor, H: torch.Tensor) -> tuple[int, int, int]:
    """Check ``X (m×n) ≈ W (m×k) · H (k×n)`` for a sparse X (a :class:`fastnmf.layouts.SparseMatrix`);
    return ``(m, n, k)``. Same rules and messages as :func:`check_factorization`, plus the index dtypes
    of the two CSR copies (int32 or int64; SparseMatrix builds int64)."""
    if not isinstance(X, SparseMatrix):
        raise TypeError(f"{op}: X must be a fastnmf.layouts.SparseMatrix, got {type(X).__name__}.")
    for name, t in (("W", W), ("H", H)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}.")
    x_shape = str(tuple(X.shape))
    shapes = f"X {x_shape} (sparse, {X.nnz} stored entries), W {_shape(W)}, H {_shape(H)}"
    if W.dim() != 2 or H.dim() != 2:
        raise ValueError(f"{op}: W and H must be 2-D matrices; got {shapes}.")
    m, n = X.shape
    _check_chain(op, m, n, W, H, shapes)
    if X.dtype not in X_DTYPES:
        raise TypeError(
            f"{op}: X {x_shape} has values of dtype {X.dtype}; expected one of float32, float16, bfloat16."
        )
    for copy in (X.by_row, X.by_column):
        for indices in (copy.crow_indices(), copy.col_indices()):
            if indices.dtype not in (torch.int32, torch.int64):
                raise TypeError(f"{op}: X {x_shape} has CSR indices of dtype {indices.dtype}; expected int32 or int64.")
    _check_factors_and_device(op, x_shape, X.device, W, H)
    return m, n, W.shape[1]


def check_mu_options(op: str, eps_r, l1, l2, k: int, W: torch.Tensor, H: torch.Tensor, max_rank: int,
                     kernels: str) -> tuple[float, float, float]:
    """The scalars of a fused MU update (``eps_r`` ≥ 0, ``l1``, ``l2``) as floats, and the rank against the
    largest the ``kernels`` hold on chip; shared by the dense β and the sparse KL launchers."""
    eps_r = check_scalar(op, "eps_r", eps_r)
    l1, l2 = check_scalar(op, "l1", l1), check_scalar(op, "l2", l2)
    if eps_r < 0.0:
        raise ValueError(f"{op}: eps_r = {eps_r} must be ≥ 0 (fastnmf.safeguard.reconstruction_floor).")
    if k > max_rank:
        raise ValueError(
            f"{op}: rank k = {k} (W {tuple(W.shape)}, H {tuple(H.shape)}) is above {max_rank}, the largest "
            f"rank the {kernels} hold on chip; use backend='torch' for this rank."
        )
    return eps_r, l1, l2


def check_scalar(op: str, name: str, value) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{op}: {name} = {value} must be finite.")
    return value


def new_output(like: torch.Tensor) -> torch.Tensor:
    """An uninitialized fp32 tensor shaped and strided like ``like`` (so the W update keeps the caller's
    layout of W)."""
    return torch.empty_like(like, dtype=torch.float32, memory_format=torch.preserve_format)


def new_workspace(*shape: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialized contiguous buffer: partial sums, a contiguous output (``matmul_tn``), or a small
    per-program output such as the sweep counts of ``hals_sweeps`` (int32)."""
    return torch.empty(shape, device=device, dtype=dtype)


def split_rows(m: int, split: int, block_m: int) -> tuple[int, int]:
    """Rows per split of the m loop (a multiple of BLOCK_M, ≥ BLOCK_M) and the number of non-empty splits."""
    rows = triton.cdiv(triton.cdiv(max(m, 1), split), block_m) * block_m
    return rows, max(1, triton.cdiv(m, rows))


def tile_arguments(cfg, precision: str) -> dict:
    """The launch keywords every tiled ``tl.dot`` kernel takes from its config: the three tile sizes, the dot
    precision, warps and pipeline stages."""
    return dict(BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, PRECISION=precision,
                num_warps=cfg.num_warps, num_stages=cfg.num_stages)


def on_device(device: torch.device):
    """The context a launch runs in: ``torch.cuda.device(device)`` for a CUDA tensor — Triton launches on
    the *current* device, which need not be the tensors' (one process driving cuda:1, a torchrun rank) —
    and nothing on the CPU (the interpreter)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
