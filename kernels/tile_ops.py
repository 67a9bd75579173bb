"""Small ``@triton.jit`` helpers shared by the kernels: tile pointers, powers, the MU epilogue.

They are inlined into the calling kernels by the Triton compiler, so they cost nothing at run time.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["tile_pointers", "pow_positive", "pow_nonnegative", "floor_keeping_nan", "mu_epilogue"]


@triton.jit
def tile_pointers(base, rows, cols, stride_row, stride_col):
    """Pointers to ``base[rows, cols]`` for a 2-D view with arbitrary strides.

    Offsets are formed in int64: X may hold more than 2³¹ elements (a 50 000 × 50 000 matrix does), and a
    transposed view multiplies the row index by the long stride.
    """
    return base + rows.to(tl.int64)[:, None] * stride_row + cols.to(tl.int64)[None, :] * stride_col


@triton.jit
def pow_positive(x, p):
    """``x ** p`` for x > 0 as ``exp2(p · log2 x)``.

    libdevice's pow is not available in the interpreter, and exp2/log2 are single instructions on a GPU;
    the relative error is ≈ ln2 · |p log2 x| · 2⁻²⁴ (2e-6 for x = 1e-7, p = -2), well inside 1e-5.
    """
    return tl.exp2(p * tl.log2(x))


@triton.jit
def pow_nonnegative(x, p):
    """``x ** p`` for x ≥ 0 and p > 0, with ``0 ** p = 0`` (log2 is never evaluated at 0); NaN stays NaN."""
    positive = x > 0.0
    return tl.where(positive, tl.exp2(p * tl.log2(tl.where(positive, x, 1.0))), tl.where(x != x, x, 0.0))


@triton.jit
def floor_keeping_nan(x, floor):
    """``max(x, floor)``, but NaN stays NaN: ``tl.maximum`` compiles to maxnum, which returns the other
    operand for a NaN, so a NaN factor would silently become φ on a GPU while the torch backend (and the
    interpreter's numpy) propagate it; kept, it reaches the objective and raises FloatingPointError there."""
    return tl.where(x != x, x, tl.maximum(x, floor))


@triton.jit
def mu_epilogue(h, numerator, denominator, gamma, l1, l2, tiny, phi, HAS_GAMMA: tl.constexpr):
    """``max(h · (num / max(den + l1 + l2·h, tiny))^γ, phi)``: the safeguard rule of fastnmf.safeguard.

    Same order of operations as ``fastnmf.updates.multiplicative_step``: the L1 then the L2 term are added to the
    denominator, the denominator floor ``tiny`` is applied before dividing (a zero column of W gives a
    zero numerator and a zero denominator, hence ratio 0, never 0/0), and the factor floor ``phi`` last.
    """
    denominator = denominator + l1 + l2 * h
    ratio = numerator / floor_keeping_nan(denominator, tiny)
    if HAS_GAMMA:
        ratio = pow_nonnegative(ratio, gamma)
    return floor_keeping_nan(h * ratio, phi)


@triton.jit
def wt_x_rows(W, X, offs_k, offs_n, mask_k, mask_n, row_start, row_end,
              stride_wm, stride_wk, stride_xm, stride_xn,
              BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr):
    """``W[rows, offs_k]ᵀ X[rows, offs_n]`` over rows ``[row_start, row_end)``: X streamed once in BLOCK_M
    row tiles, upcast to fp32 in registers, fp32 accumulator (shared by the GEMM and the Frobenius MU)."""
    offs_m = tl.arange(0, BLOCK_M)
    accumulator = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    for i in range(row_start, row_end, BLOCK_M):
        rows = i + offs_m
        mask_m = rows < row_end
        # Wᵀ is loaded directly as BLOCK_K × BLOCK_M (strides swapped): no transpose in registers.
        w_t = tl.load(tile_pointers(W, offs_k, rows, stride_wk, stride_wm),
                      mask=mask_k[:, None] & mask_m[None, :], other=0.0)
        x = tl.load(tile_pointers(X, rows, offs_n, stride_xm, stride_xn),
                    mask=mask_m[:, None] & mask_n[None, :], other=0.0).to(tl.float32)
        accumulator = tl.dot(w_t, x, accumulator, input_precision=PRECISION)
    return accumulator
