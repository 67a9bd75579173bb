"""Fused KL (β = 1), Itakura–Saito (β = 0) and general-β multiplicative updates of H, flash-attention shape.

One program owns a column tile ``H_j`` (the whole padded rank × BLOCK_N), held in registers, and loops
over row tiles i of X:

    R = W_i H_j                      (tl.dot, registers only: WH never exists in memory)
    R = max(R, eps_r)                (β < 2, the reconstruction floor of fastnmf.safeguard)
    numerator   += W_iᵀ (X_ij ∘ R^(β−2))
    denominator += W_iᵀ R^(β−1)       (KL: colsum(W_i), no GEMM; IS: reciprocals only)

then applies the safeguarded ratio, the exponent γ(β) and the multiply in the epilogue and writes H once.
X is read once per half-iteration (per column tile: once); W is re-read by every column tile from L2.
The W update is this kernel on ``Xᵀ ≈ Hᵀ Wᵀ`` (views, no copies).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..losses import mu_exponent
from ..safeguard import denominator_floor, factor_floor
from . import launch, occupancy
from .configs import MAX_BETA_RANK, MUConfig, mu_beta_config
from .launch import (
    KL,
    beta_case,
    check_factorization,
    check_mu_options,
    check_precision,
    check_scalar,
    split_rows,
)
from .mu_finalize import finalize_split_update
from .tile_ops import floor_keeping_nan, mu_epilogue, pow_nonnegative, pow_positive, tile_pointers

__all__ = ["mu_beta_update_h", "mu_beta_cost"]


@triton.jit
def _mu_beta_h_kernel(
    X, W, H, COLSUM, OUT, NUM_WS, DEN_WS,
    M, N, K, rows_per_split,
    stride_xm, stride_xn, stride_wm, stride_wk, stride_hk, stride_hn, stride_ok, stride_on,
    stride_nws_s, stride_nws_k, stride_nws_n, stride_dws_s, stride_dws_k, stride_dws_n,
    beta, eps_r, gamma, l1, l2, tiny, phi,
    BETA_CASE: tl.constexpr,  # 0 IS, 1 KL, 2 Frobenius, 3 general β
    FLOOR_R: tl.constexpr,  # β < 2: R is floored at eps_r wherever it is divided by or raised to a power
    HAS_GAMMA: tl.constexpr,  # γ(β) ≠ 1 (β < 1 or β > 2)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,  # the padded rank: the whole rank is one tile
    SPLIT_M: tl.constexpr,  # True: write partial sums to the workspaces, the finalize pass divides
    PRECISION: tl.constexpr,
):
    # tl.dot on a GPU needs every dimension ≥ 16 (the launcher pads the rank to a power of two ≥ 16).
    tl.static_assert(BLOCK_K >= 16)
    tl.static_assert(BLOCK_M >= 16)
    tl.static_assert(BLOCK_N >= 16)
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    offs_m = tl.arange(0, BLOCK_M)
    mask_n = offs_n < N
    mask_k = offs_k < K
    mask = mask_k[:, None] & mask_n[None, :]

    # ---- the column tile H_j stays in registers for the whole row loop (the "query" of the attention shape)
    h = tl.load(tile_pointers(H, offs_k, offs_n, stride_hk, stride_hn), mask=mask, other=0.0)
    numerator = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    if BETA_CASE != 1:  # KL's denominator is colsum(W), computed by the launcher (COLSUM)
        denominator = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)

    # ---- stream the row tiles of X and W
    row_start = pid_s * rows_per_split
    row_end = tl.minimum(row_start + rows_per_split, M)
    for i in range(row_start, row_end, BLOCK_M):
        rows = i + offs_m
        mask_m = rows < row_end
        # W twice, each only as a dot operand, so that both loads pipeline like X's: as BLOCK_M × BLOCK_K
        # for R, and as BLOCK_K × BLOCK_M (strides swapped, as in tile_ops.wt_x_rows) for the products with
        # Wᵀ — a tl.trans of one load, or a tl.sum over it, made it a synchronous load in the loop.
        w = tl.load(tile_pointers(W, rows, offs_k, stride_wm, stride_wk),
                    mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        w_t = tl.load(tile_pointers(W, offs_k, rows, stride_wk, stride_wm),
                      mask=mask_k[:, None] & mask_m[None, :], other=0.0)
        x = tl.load(tile_pointers(X, rows, offs_n, stride_xm, stride_xn),
                    mask=mask_m[:, None] & mask_n[None, :], other=0.0).to(tl.float32)
        r = tl.dot(w, h, input_precision=PRECISION)  # R_ij = W_i H_j, never written to memory
        if FLOOR_R:
            r = floor_keeping_nan(r, eps_r)
        if BETA_CASE == 1:
            # KL: numerator Wᵀ(X / R); the denominator colsum(W) does not depend on X.
            numerator = tl.dot(w_t, x / r, numerator, input_precision=PRECISION)
        elif BETA_CASE == 0:
            # IS: R^−2 and R^−1 from one reciprocal, no pow. (x·inv)·inv stays finite where x·inv² might
            # not; padded rows have x = 0 and inv ≤ 1/eps_r, so they add exactly 0.
            inv = 1.0 / r
            numerator = tl.dot(w_t, (x * inv) * inv, numerator, input_precision=PRECISION)
            denominator = tl.dot(w_t, inv, denominator, input_precision=PRECISION)
        elif BETA_CASE == 2:
            numerator = tl.dot(w_t, x, numerator, input_precision=PRECISION)
            denominator = tl.dot(w_t, r, denominator, input_precision=PRECISION)
        else:
            # General β: one power R^(β−2); R^(β−1) = R^(β−2)·R. Without the floor (β > 2) R may be 0 and
            # β−2 > 0, hence pow_nonnegative. Padded rows get R = 1: at R = eps_r the power can overflow
            # for very negative β, and 0·inf in the dot would poison the real outputs.
            r = tl.where(mask_m[:, None], r, 1.0)
            if FLOOR_R:
                p = pow_positive(r, beta - 2.0)
            else:
                p = pow_nonnegative(r, beta - 2.0)
            numerator = tl.dot(w_t, x * p, numerator, input_precision=PRECISION)
            denominator = tl.dot(w_t, p * r, denominator, input_precision=PRECISION)

    if SPLIT_M:
        # ---- split-m: write this program's partial sums; mu_finalize reduces them and divides
        tl.store(tile_pointers(NUM_WS + pid_s * stride_nws_s, offs_k, offs_n, stride_nws_k, stride_nws_n),
                 numerator, mask=mask)
        if BETA_CASE != 1:  # KL: the launcher hands the finalize pass colsum(W) itself
            tl.store(tile_pointers(DEN_WS + pid_s * stride_dws_s, offs_k, offs_n, stride_dws_k, stride_dws_n),
                     denominator, mask=mask)
    else:
        # ---- epilogue: safeguarded ratio, exponent γ(β), multiply, factor floor; one write of H
        if BETA_CASE == 1:
            colsum = tl.load(COLSUM + offs_k, mask=mask_k, other=0.0)
            h_new = mu_epilogue(h, numerator, colsum[:, None], gamma, l1, l2, tiny, phi, HAS_GAMMA)
        else:
            h_new = mu_epilogue(h, numerator, denominator, gamma, l1, l2, tiny, phi, HAS_GAMMA)
        tl.store(tile_pointers(OUT, offs_k, offs_n, stride_ok, stride_on), h_new, mask=mask)


def mu_beta_cost(m: int, n: int, k: int, x_itemsize: int, beta: float) -> tuple[int, int]:
    """(bytes, flops) of one fused β update of H, for the roofline.

    Bytes: X once, W once, H read and written. Flops: ``R = WH`` (2mnk), the numerator (2mnk), the
    denominator (2mnk, or mk for the KL column sums), ≈4 per entry of X for the ratio/powers (a pow is
    counted as one), ≈6 per entry of H for the epilogue.
    """
    bytes_moved = m * n * x_itemsize + 4 * (m * k + 2 * k * n)
    denominator = m * k if beta_case(beta) == KL else 2 * m * n * k
    flops = 4 * m * n * k + denominator + 4 * m * n + 6 * k * n
    return bytes_moved, flops


@torch.no_grad()
def mu_beta_update_h(
    X: torch.Tensor,
    W: torch.Tensor,
    H: torch.Tensor,
    *,
    beta: float,
    eps_r: float,
    l1: float = 0.0,
    l2: float = 0.0,
    precision: str = "ieee",
    config: MUConfig | None = None,
) -> torch.Tensor:
    """One fused β-divergence MU update of H (k×n) for ``X (m×n) ≈ W (m×k) H``; returns a new fp32 tensor.

    Any β (fast paths for 0, 1, 2); ``eps_r`` is the reconstruction floor of fastnmf.safeguard (used for
    β < 2). X is float32, float16 or bfloat16; W and H float32; any strides. ``precision`` is the
    ``input_precision`` of every tl.dot; ``config`` overrides the block sizes.
    """
    op = "mu_beta_update_h"
    m, n, k = check_factorization(op, X, W, H)
    check_precision(precision)
    beta = check_scalar(op, "beta", beta)
    eps_r, l1, l2 = check_mu_options(op, eps_r, l1, l2, k, W, H, MAX_BETA_RANK, "fused β kernels")
    out = launch.new_output(H)
    if n == 0:
        return out
    case = beta_case(beta)
    cfg = config or mu_beta_config(m, n, k, X.device, precision, case, X.element_size())
    if cfg.block_k < k:
        raise ValueError(f"{op}: config.block_k = {cfg.block_k} must cover the whole rank k = {k} (W {tuple(W.shape)}).")
    gamma = mu_exponent(beta)
    tiny, phi = denominator_floor(torch.float32), factor_floor(torch.float32)
    rows_per_split, splits = split_rows(m, cfg.split_m, cfg.block_m)
    use_split = splits > 1
    # KL's denominator colsum(W) (fp32, k values) once per update, outside the row loop.
    colsum = W.sum(dim=0, dtype=torch.float32) if case == KL else out
    if use_split:
        num_ws = launch.new_workspace(splits, k, n, device=X.device)
        den_ws = launch.new_workspace(splits, k, n, device=X.device) if case != KL else out
        den_strides = den_ws.stride() if case != KL else (0, 0, 0)
    else:
        num_ws = den_ws = out  # never touched: the SPLIT_M branch is compiled out
        den_strides = (0, 0, 0)
    grid = (triton.cdiv(n, cfg.block_n), splits)
    with launch.on_device(X.device):  # the kernel runs on its tensors' GPU, not the current one
        compiled = _mu_beta_h_kernel[grid](
            X, W, H, colsum, out, num_ws, den_ws,
            m, n, k, rows_per_split,
            *X.stride(), *W.stride(), *H.stride(), *out.stride(),
            *(num_ws.stride() if use_split else (0, 0, 0)), *den_strides,
            beta, eps_r, gamma, l1, l2, tiny, phi,
            BETA_CASE=case,
            FLOOR_R=beta < 2.0,
            HAS_GAMMA=gamma != 1.0,
            SPLIT_M=use_split,
            **launch.tile_arguments(cfg, precision),
        )
    occupancy.remember(occupancy.variant_key("mu_beta", X.device, cfg, precision, case, X.element_size()), compiled,
                       X.device)
    if use_split:
        # KL's column sums (k) seen as one (1, k, n) split with stride 0 along n.
        if case == KL:
            finalize_split_update(num_ws, colsum[None, :, None].expand(1, k, n), 1, H, out, gamma=gamma, l1=l1,
                                  l2=l2, tiny=tiny, phi=phi)
        else:
            finalize_split_update(num_ws, den_ws, splits, H, out, gamma=gamma, l1=l1, l2=l2, tiny=tiny, phi=phi)
    return out
