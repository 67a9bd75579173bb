"""``Wᵀ X`` with X read in its storage dtype: the data product of a HALS update (``A = WᵀX``, k×n, fp32).

One program owns a ``BLOCK_K × BLOCK_N`` tile of the result and streams the matching columns of X once,
accumulating in fp32 registers — the numerator loop of the fused Frobenius kernel (``mu_frobenius``)
without its epilogue. X may be float32, float16 or bfloat16 (upcast in registers), W is float32: a torch
``W.T @ X`` would refuse the mixed dtypes, and casting X would write an m×n fp32 copy. With few column
tiles (``split_m > 1``) the m loop is split over several programs that write partial sums, added by torch
afterwards (deterministic: no atomics).

The product of the transposed problem (``H Xᵀ`` for the W update) is this kernel on ``Hᵀ, Xᵀ``: views
with swapped strides, no copies.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import launch, occupancy
from .configs import MUConfig, interpreting, matmul_tn_config
from .launch import X_DTYPES, check_precision, split_rows
from .tile_ops import tile_pointers, wt_x_rows

__all__ = ["matmul_tn", "matmul_tn_cost"]


@triton.jit
def _matmul_tn_kernel(
    W, X, OUT,
    M, N, K, rows_per_split,
    stride_wm, stride_wk, stride_xm, stride_xn, stride_os, stride_ok, stride_on,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # tl.dot on a GPU needs every dimension ≥ 16 (the launcher pads the rank tile to a power of two ≥ 16).
    tl.static_assert(BLOCK_K >= 16)
    tl.static_assert(BLOCK_M >= 16)
    tl.static_assert(BLOCK_N >= 16)
    # The rank tiles of one column tile are consecutive programs (axis 0, rank fastest): they run together
    # and read the same X tiles, so X comes from HBM once per half-update at any k, the other reads from L2.
    num_k = tl.cdiv(K, BLOCK_K)
    pid_k = tl.program_id(0) % num_k
    pid_n = tl.program_id(0) // num_k
    pid_s = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    mask_n = offs_n < N
    mask_k = offs_k < K

    row_start = pid_s * rows_per_split
    row_end = tl.minimum(row_start + rows_per_split, M)
    accumulator = wt_x_rows(W, X, offs_k, offs_n, mask_k, mask_n, row_start, row_end,
                            stride_wm, stride_wk, stride_xm, stride_xn, BLOCK_M, BLOCK_K, BLOCK_N, PRECISION)

    out = OUT + pid_s * stride_os
    tl.store(tile_pointers(out, offs_k, offs_n, stride_ok, stride_on), accumulator,
             mask=mask_k[:, None] & mask_n[None, :])


def matmul_tn_cost(m: int, n: int, k: int, x_itemsize: int) -> tuple[int, int]:
    """(bytes, flops) of ``WᵀX``: X and W read once, the k×n result written once; 2mnk flops."""
    return m * n * x_itemsize + 4 * (m * k + k * n), 2 * m * n * k


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _check_operands(op: str, W: torch.Tensor, X: torch.Tensor) -> tuple[int, int, int]:
    for name, t in (("W", W), ("X", X)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}.")
    shapes = f"W {_shape(W)}, X {_shape(X)}"
    if W.dim() != 2 or X.dim() != 2 or W.shape[0] != X.shape[0]:
        raise ValueError(f"{op}: expected W (m×k) and X (m×n) with the same number of rows; got {shapes}.")
    if W.shape[1] < 1:
        raise ValueError(f"{op}: the rank k must be ≥ 1; got {shapes}.")
    if X.dtype not in X_DTYPES:
        raise TypeError(f"{op}: X {_shape(X)} has dtype {X.dtype}; expected one of float32, float16, bfloat16.")
    if W.dtype != torch.float32:
        raise TypeError(f"{op}: W {_shape(W)} has dtype {W.dtype}; the factors must be float32.")
    if W.device != X.device:
        raise ValueError(f"{op}: W {_shape(W)} is on {W.device}, X {_shape(X)} on {X.device}; both must be on "
                         "the same device.")
    if X.device.type != "cuda" and not interpreting():
        raise ValueError(
            f"{op}: the Triton kernels run on CUDA tensors, but X {_shape(X)} is on {X.device}; set "
            "TRITON_INTERPRET=1 before importing fastnmf to run them on the CPU."
        )
    return X.shape[0], X.shape[1], W.shape[1]


@torch.no_grad()
def matmul_tn(
    W: torch.Tensor,
    X: torch.Tensor,
    *,
    precision: str = "ieee",
    config: MUConfig | None = None,
) -> torch.Tensor:
    """``Wᵀ X`` (k×n, a new contiguous fp32 tensor) for ``W (m×k)`` float32 and ``X (m×n)`` float32,
    float16 or bfloat16, any strides; fp32 accumulation, ``precision`` ("ieee", "tf32", "tf32x3") is the
    ``input_precision`` of the tl.dot. ``config`` overrides the block sizes (tests force the split path).
    """
    op = "matmul_tn"
    m, n, k = _check_operands(op, W, X)
    check_precision(precision)
    out = launch.new_workspace(k, n, device=X.device)  # contiguous, whatever X's layout
    if n == 0:
        return out
    cfg = config or matmul_tn_config(m, n, k, X.device, precision, X.element_size())
    rows_per_split, splits = split_rows(m, cfg.split_m, cfg.block_m)
    target = launch.new_workspace(splits, k, n, device=X.device) if splits > 1 else out.unsqueeze(0)
    grid = (triton.cdiv(n, cfg.block_n) * triton.cdiv(k, cfg.block_k), splits)  # (column × rank tiles, row splits)
    with launch.on_device(X.device):  # the kernel runs on its tensors' GPU, not the current one
        compiled = _matmul_tn_kernel[grid](
            W, X, target,
            m, n, k, rows_per_split,
            *W.stride(), *X.stride(), *target.stride(),
            **launch.tile_arguments(cfg, precision),
        )
    occupancy.remember(occupancy.variant_key("matmul_tn", X.device, cfg, precision, X.element_size()), compiled, X.device)
    if splits > 1:
        torch.sum(target, dim=0, out=out)
    return out
