"""Fused Frobenius (β = 2) multiplicative update of H: ``H ← max(H ∘ WᵀX / max((WᵀW)H + l1 + l2·H, tiny), φ)``.

One program owns a ``BLOCK_K × BLOCK_N`` tile of H (a rank tile × a column tile). It streams the
matching columns of X once, accumulating ``WᵀX`` in fp32 registers, then forms ``(WᵀW)H`` for its tile
from the k×k Gram (computed once per half-iteration by a torch matmul: ``2mk²`` flops, next to the
kernel's ``2mnk``) and applies the safeguarded ratio and multiply in the epilogue: H is written once,
and neither ``WᵀX`` nor ``(WᵀW)H`` exists in global memory. X may be fp32, fp16 or bf16; it is upcast
in registers.

The W update is this kernel on the transposed problem ``Xᵀ ≈ Hᵀ Wᵀ``: views with swapped strides, no copy.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..safeguard import denominator_floor, factor_floor
from . import launch, occupancy
from .configs import MUConfig, mu_frobenius_config
from .launch import check_factorization, check_precision, check_scalar, split_rows
from .mu_finalize import finalize_split_update
from .tile_ops import mu_epilogue, tile_pointers, wt_x_rows

__all__ = ["mu_frobenius_update_h", "mu_frobenius_cost"]


@triton.jit
def _gram_times_h(
    G, H, offs_k, offs_n, K, N,
    stride_g0, stride_g1, stride_hk, stride_hn,
    BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
):
    """Rows ``offs_k`` of ``(WᵀW) H`` for the columns ``offs_n``, looping over the rank in BLOCK_K chunks."""
    mask_k = offs_k < K
    mask_n = offs_n < N
    product = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    for start in range(0, K, BLOCK_K):
        offs_c = start + tl.arange(0, BLOCK_K)
        mask_c = offs_c < K
        g = tl.load(tile_pointers(G, offs_k, offs_c, stride_g0, stride_g1),
                    mask=mask_k[:, None] & mask_c[None, :], other=0.0)
        h = tl.load(tile_pointers(H, offs_c, offs_n, stride_hk, stride_hn),
                    mask=mask_c[:, None] & mask_n[None, :], other=0.0)
        product = tl.dot(g, h, product, input_precision=PRECISION)
    return product


@triton.jit
def _mu_frobenius_h_kernel(
    X, W, H, G, OUT, NUM_WS, DEN_WS,
    M, N, K, rows_per_split,
    stride_xm, stride_xn, stride_wm, stride_wk, stride_hk, stride_hn,
    stride_g0, stride_g1, stride_ok, stride_on,
    stride_nws_s, stride_nws_k, stride_nws_n, stride_dws_k, stride_dws_n,
    l1, l2, tiny, phi,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SPLIT_M: tl.constexpr,  # True: write partial sums to the workspaces, the finalize pass divides
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

    # ---- stream X once: numerator = W[rows, tile]ᵀ X[rows, cols], fp32 accumulator in registers
    row_start = pid_s * rows_per_split
    row_end = tl.minimum(row_start + rows_per_split, M)
    numerator = wt_x_rows(W, X, offs_k, offs_n, mask_k, mask_n, row_start, row_end,
                          stride_wm, stride_wk, stride_xm, stride_xn, BLOCK_M, BLOCK_K, BLOCK_N, PRECISION)

    mask = mask_k[:, None] & mask_n[None, :]
    if SPLIT_M:
        # ---- split-m: this program's partial numerator; the first split also writes (WᵀW)H
        nws = NUM_WS + pid_s * stride_nws_s
        tl.store(tile_pointers(nws, offs_k, offs_n, stride_nws_k, stride_nws_n), numerator, mask=mask)
        if pid_s == 0:
            denominator = _gram_times_h(G, H, offs_k, offs_n, K, N, stride_g0, stride_g1, stride_hk, stride_hn,
                                        BLOCK_K, BLOCK_N, PRECISION)
            tl.store(tile_pointers(DEN_WS, offs_k, offs_n, stride_dws_k, stride_dws_n), denominator, mask=mask)
    else:
        # ---- epilogue: denominator (WᵀW)H from the Gram, safeguarded ratio, multiply, one write of H
        denominator = _gram_times_h(G, H, offs_k, offs_n, K, N, stride_g0, stride_g1, stride_hk, stride_hn,
                                    BLOCK_K, BLOCK_N, PRECISION)
        h = tl.load(tile_pointers(H, offs_k, offs_n, stride_hk, stride_hn), mask=mask, other=0.0)
        h_new = mu_epilogue(h, numerator, denominator, 1.0, l1, l2, tiny, phi, False)
        tl.store(tile_pointers(OUT, offs_k, offs_n, stride_ok, stride_on), h_new, mask=mask)


def mu_frobenius_cost(m: int, n: int, k: int, x_itemsize: int) -> tuple[int, int]:
    """(bytes, flops) of one fused Frobenius update of H, for the roofline.

    Bytes: X once, W once, the Gram, H read and written (the compulsory traffic; W re-reads by the column
    tiles hit L2). Flops: ``WᵀX`` (2mnk), the Gram (2mk², torch), ``(WᵀW)H`` (2k²n), the epilogue (≈6kn).
    """
    bytes_moved = m * n * x_itemsize + 4 * (m * k + k * k + 2 * k * n)
    flops = 2 * m * n * k + 2 * m * k * k + 2 * k * k * n + 6 * k * n
    return bytes_moved, flops


@torch.no_grad()
def mu_frobenius_update_h(
    X: torch.Tensor,
    W: torch.Tensor,
    H: torch.Tensor,
    *,
    l1: float = 0.0,
    l2: float = 0.0,
    precision: str = "ieee",
    config: MUConfig | None = None,
) -> torch.Tensor:
    """One fused Frobenius MU update of H (k×n) for ``X (m×n) ≈ W (m×k) H``; returns a new fp32 tensor.

    X is float32, float16 or bfloat16; W and H float32; any strides (pass ``X.T``, ``H.T``, ``W.T`` for
    the W update). ``precision`` ("ieee", "tf32", "tf32x3") is the ``input_precision`` of every tl.dot.
    ``config`` overrides the block sizes (tests use it to force the split-m path).
    """
    op = "mu_frobenius_update_h"
    m, n, k = check_factorization(op, X, W, H)
    check_precision(precision)
    l1, l2 = check_scalar(op, "l1", l1), check_scalar(op, "l2", l2)
    out = launch.new_output(H)
    if n == 0:
        return out
    cfg = config or mu_frobenius_config(m, n, k, X.device, precision, X.element_size())
    tiny, phi = denominator_floor(torch.float32), factor_floor(torch.float32)
    gram = W.T @ W  # k×k, once per half-iteration
    rows_per_split, splits = split_rows(m, cfg.split_m, cfg.block_m)
    use_split = splits > 1
    if use_split:
        num_ws = launch.new_workspace(splits, k, n, device=X.device)
        den_ws = launch.new_workspace(1, k, n, device=X.device)
    else:
        num_ws = den_ws = out  # never touched: the SPLIT_M branch is compiled out
    grid = (triton.cdiv(n, cfg.block_n) * triton.cdiv(k, cfg.block_k), splits)  # (column × rank tiles, row splits)
    with launch.on_device(X.device):  # the kernel runs on its tensors' GPU, not the current one
        compiled = _mu_frobenius_h_kernel[grid](
            X, W, H, gram, out, num_ws, den_ws,
            m, n, k, rows_per_split,
            *X.stride(), *W.stride(), *H.stride(), *gram.stride(), *out.stride(),
            *(num_ws.stride() if use_split else (0, 0, 0)),
            *(den_ws.stride()[1:] if use_split else (0, 0)),
            l1, l2, tiny, phi,
            SPLIT_M=use_split,
            **launch.tile_arguments(cfg, precision),
        )
    occupancy.remember(occupancy.variant_key("mu_frobenius", X.device, cfg, precision, X.element_size()), compiled,
                       X.device)
    if use_split:
        finalize_split_update(num_ws, den_ws, 1, H, out, gamma=1.0, l1=l1, l2=l2, tiny=tiny, phi=phi)
    return out
