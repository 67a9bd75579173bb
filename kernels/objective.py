"""Tiled β-divergence ``D_β(X | WH)``: one program per tile of X, WH formed in registers, never in memory.

Each program computes ``R = W_i H_j`` for its ``BLOCK_M × BLOCK_N`` tile (looping over the rank), the
element-wise divergence terms with the conventions of ``fastnmf.losses.beta_divergence`` (scikit-learn's:
β = 2 is ½‖X − WH‖², ``0 · log 0 = 0``, the x = 0 entries are dropped where the term is undefined), and
writes one float64 partial sum; the launcher adds the partial sums with torch. The solver evaluates it
every ``check_every`` iterations only.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import launch
from .configs import ObjectiveConfig, objective_config
from .launch import GENERAL, beta_case, check_factorization, check_precision, check_scalar
from .tile_ops import floor_keeping_nan, pow_nonnegative, pow_positive, tile_pointers

__all__ = ["factorization_divergence", "factorization_divergence_cost"]


@triton.jit
def _beta_divergence_kernel(
    X, W, H, PARTIAL,
    M, N, K,
    stride_xm, stride_xn, stride_wm, stride_wk, stride_hk, stride_hn,
    beta, eps_r,
    BETA_CASE: tl.constexpr,  # 0 IS, 1 KL, 2 Frobenius, 3 general β
    FLOOR_R: tl.constexpr,  # β < 2: R = max(WH, eps_r)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    tl.static_assert(BLOCK_K >= 16)
    tl.static_assert(BLOCK_M >= 16)
    tl.static_assert(BLOCK_N >= 16)
    # A 1-D grid, tiles in row-major order: CUDA caps grid axes 1 and 2 at 65535 programs, which a 2-D
    # (row tiles, column tiles) grid exceeds for n > 65535·BLOCK_N (4.2·10⁶ columns at 64); axis 0 takes 2³¹−1.
    pid = tl.program_id(0)
    tiles_n = tl.cdiv(N, BLOCK_N)
    pid_m = pid // tiles_n
    pid_n = pid % tiles_n
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = rows < M
    mask_n = cols < N
    mask = mask_m[:, None] & mask_n[None, :]

    # ---- R = W_i H_j over rank chunks (registers only)
    r = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start in range(0, K, BLOCK_K):
        offs_c = start + tl.arange(0, BLOCK_K)
        mask_c = offs_c < K
        w = tl.load(tile_pointers(W, rows, offs_c, stride_wm, stride_wk),
                    mask=mask_m[:, None] & mask_c[None, :], other=0.0)
        h = tl.load(tile_pointers(H, offs_c, cols, stride_hk, stride_hn),
                    mask=mask_c[:, None] & mask_n[None, :], other=0.0)
        r = tl.dot(w, h, r, input_precision=PRECISION)
    x = tl.load(tile_pointers(X, rows, cols, stride_xm, stride_xn), mask=mask, other=0.0).to(tl.float32)
    if FLOOR_R:
        r = floor_keeping_nan(r, eps_r)

    # ---- element-wise divergence terms (each is ≥ 0); logs and powers never see x = 0
    positive = x > 0.0
    x_safe = tl.where(positive, x, 1.0)
    if BETA_CASE == 2:
        terms = 0.5 * (x - r) * (x - r)
    elif BETA_CASE == 1:
        terms = tl.where(positive, x * tl.log(x_safe / r), 0.0) - x + r
    elif BETA_CASE == 0:
        ratio = x_safe / r
        terms = tl.where(positive, ratio - tl.log(ratio) - 1.0, 0.0)
    else:
        # Σ x^β + (β−1) r^β − β x r^(β−1); the launcher divides the sum by β(β−1).
        x_pow = tl.where(positive, pow_positive(x_safe, beta), 0.0)
        if FLOOR_R:
            r_pow = pow_positive(r, beta - 1.0)
        else:
            r_pow = pow_nonnegative(r, beta - 1.0)  # β > 2: R may be 0, and β − 1 > 0
        terms = x_pow + (beta - 1.0) * r_pow * r - beta * x * r_pow
    # Padded entries are dropped after the fact (their terms may be inf/NaN: R = eps_r there).
    terms = tl.where(mask, terms, 0.0)

    # ---- one float64 partial sum per tile
    partial = tl.sum(tl.sum(terms.to(tl.float64), axis=1), axis=0)
    tl.store(PARTIAL + pid, partial)


def factorization_divergence_cost(m: int, n: int, k: int, x_itemsize: int) -> tuple[int, int]:
    """(bytes, flops) of the tiled objective: X, W and H read once; ``WH`` (2mnk) and ≈8 flops per entry."""
    bytes_moved = m * n * x_itemsize + 4 * (m * k + k * n)
    flops = 2 * m * n * k + 8 * m * n
    return bytes_moved, flops


@torch.no_grad()
def factorization_divergence(
    X: torch.Tensor,
    W: torch.Tensor,
    H: torch.Tensor,
    *,
    beta: float,
    eps_r: float,
    precision: str = "ieee",
    config: ObjectiveConfig | None = None,
) -> torch.Tensor:
    """``D_β(X | WH)`` as a 0-d float64 tensor on X's device, exactly as ``fastnmf.losses.beta_divergence``.

    ``eps_r`` floors WH for β < 2 (fastnmf.safeguard). X is float32, float16 or bfloat16; W, H float32;
    any strides. No m×n temporary: one float64 partial sum per tile of X.
    """
    op = "factorization_divergence"
    m, n, k = check_factorization(op, X, W, H)
    check_precision(precision)
    beta, eps_r = check_scalar(op, "beta", beta), check_scalar(op, "eps_r", eps_r)
    if m == 0 or n == 0:
        return torch.zeros((), dtype=torch.float64, device=X.device)
    cfg = config or objective_config(m, n, k, X.device, precision)
    case = beta_case(beta)
    grid = (triton.cdiv(m, cfg.block_m) * triton.cdiv(n, cfg.block_n),)
    partials = launch.new_workspace(grid[0], device=X.device, dtype=torch.float64)
    with launch.on_device(X.device):  # the kernel runs on its tensors' GPU, not the current one
        _beta_divergence_kernel[grid](
            X, W, H, partials,
            m, n, k,
            *X.stride(), *W.stride(), *H.stride(),
            beta, eps_r,
            BETA_CASE=case,
            FLOOR_R=beta < 2.0,
            **launch.tile_arguments(cfg, precision),
        )
    total = partials.sum()
    if case == GENERAL:
        total = total / (beta * (beta - 1.0))
    return total

