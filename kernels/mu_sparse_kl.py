"""Fused KL (β = 1) multiplicative update of H for a sparse X (:class:`fastnmf.layouts.SparseMatrix`).

For ``X (m×n) ≈ W (m×k) H (k×n)`` the KL update is ``H ← H ∘ Wᵀ(X / WH) / colsum(W)``. Only the stored
entries of X contribute to the numerator (a zero of X adds 0 / (WH)_ij = 0), so each program takes
``BLOCK_COLS`` consecutive columns of X and walks their stored entries in the column-major copy
``X.by_column`` (the CSR of Xᵀ: its row pointers are X's column pointers, its column indices the rows i),
``BLOCK_NNZ`` entries of every column at a time:

    w  = W[i, :]                      gathered rows of W, a [BLOCK_COLS, BLOCK_NNZ, BLOCK_K] tile (masked)
    r  = Σ_k w ∘ h_j                  (WH)_ij at the stored entries: a reduction over k, no tl.dot
    r  = max(r, eps_r)                the reconstruction floor of fastnmf.safeguard
    q  = x / r                        (0 on padded lanes)
    numerator_j += Σ_entries w ∘ q    Wᵀ(X / WH) for each column j of the program

r and q live in registers only (no sampled values are stored: the torch sparse backend writes the SDDMM
result, nnz values, and reads it back for the SpMM). The denominator ``colsum(W)`` is one k-vector, formed
by torch before the launch; the epilogue is the dense kernels' (``tile_ops.mu_epilogue``, γ = 1), and H is
written once. A column without stored entries gets numerator 0: the safeguarded result the dense update
gives for a zero column of X (``max(h · 0 / den, φ) = φ``).

The W update is this kernel on ``Xᵀ ≈ Hᵀ Wᵀ``: ``X.T`` swaps the two CSR copies, so it walks the rows of X
in ``X.by_row``; ``Hᵀ`` and ``Wᵀ`` are views. The launcher gathers from a row-major copy of the gathered
factor when its rows are not contiguous (``Hᵀ`` is column-major): see :func:`mu_sparse_kl_update_h`.

GPU notes (this kernel has only run under the interpreter and been compiled offline for sm_90):

- No tl.dot, so no minimum of 16 on any dimension; the rank is padded to a power of two ≥ 4
  (``configs.sparse_padded_rank``) because tl.arange needs powers of two.
- The gathered fp32 tile and its two products must fit in registers: the config keeps
  BLOCK_COLS · BLOCK_NNZ · BLOCK_K ≤ ``configs.SPARSE_TILE_ELEMENTS`` (4096), sizes BLOCK_NNZ by the mean
  number of entries per column so short columns do not run mostly masked, and gives the rest of the
  budget to columns: the W update of the GPU preset's 10⁶ × 10⁵ matrix (≈ 11 entries per row of X, which
  it walks as columns) takes 8 rows of 16 entries per program at k = 32 where it took one row with 1–2
  warps, and one warp per 512 tile entries.
- Several columns make the [BLOCK_COLS, BLOCK_K] loads and stores of h contiguous along the columns when H
  is row-major (the H update: column j of H alone is k values with stride n). Where the budget leaves one
  column per program (long columns), that column's k scattered values are read and written once against
  ≥ 16·k gathered values of W.
- The numerator is reduced over the entries of each chunk (a [BLOCK_COLS, BLOCK_K] accumulator) rather
  than kept per entry and reduced once: fewer registers, and most columns take one or two chunks.
- A program's loop runs to its longest column, the shorter ones masked: work per program follows the
  longest of BLOCK_COLS adjacent columns, and very skewed columns (power-law data) load-balance only
  through the number of programs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..safeguard import denominator_floor, factor_floor
from ..layouts.sparse import SparseMatrix
from . import launch
from .configs import MAX_BETA_RANK, SparseMUConfig, mu_sparse_kl_config
from .launch import check_mu_options, check_sparse_factorization
from .tile_ops import floor_keeping_nan, mu_epilogue

__all__ = ["mu_sparse_kl_update_h", "mu_sparse_kl_cost"]


@triton.jit
def _mu_sparse_kl_h_kernel(
    COL_PTR, ROW_IDX, VALUES, W, H, COLSUM, OUT,
    N, K,
    stride_wm, stride_wk, stride_hk, stride_hn, stride_ok, stride_on,
    eps_r, l1, l2, tiny, phi,
    BLOCK_COLS: tl.constexpr,  # consecutive columns of X per program
    BLOCK_NNZ: tl.constexpr,  # stored entries per column and chunk
    BLOCK_K: tl.constexpr,  # the padded rank: the whole rank is one tile
):
    columns = tl.program_id(0).to(tl.int64) * BLOCK_COLS + tl.arange(0, BLOCK_COLS).to(tl.int64)
    mask_c = columns < N
    offs_k = tl.arange(0, BLOCK_K)
    mask_k = offs_k < K
    offs_k64 = offs_k.to(tl.int64)
    mask_h = mask_c[:, None] & mask_k[None, :]
    # ---- the program's columns of H, a [BLOCK_COLS, BLOCK_K] tile in registers for the whole loop
    h = tl.load(H + columns[:, None] * stride_hn + offs_k64[None, :] * stride_hk, mask=mask_h, other=0.0)
    start = tl.load(COL_PTR + columns, mask=mask_c, other=0)
    end = tl.load(COL_PTR + columns + 1, mask=mask_c, other=0)
    longest = tl.max(end - start, axis=0)
    numerator = tl.zeros((BLOCK_COLS, BLOCK_K), dtype=tl.float32)

    # ---- chunk c holds entries c·BLOCK_NNZ … of every column of the program; the loop runs to the longest
    for offset in range(0, longest, BLOCK_NNZ):
        entries = start[:, None] + offset + tl.arange(0, BLOCK_NNZ)[None, :]  # [BLOCK_COLS, BLOCK_NNZ]
        mask_e = entries < end[:, None]
        rows = tl.load(ROW_IDX + entries, mask=mask_e, other=0).to(tl.int64)
        x = tl.load(VALUES + entries, mask=mask_e, other=0.0).to(tl.float32)
        # Gathered rows of W: contiguous k-vectors when W is row-major (the launcher sees to it).
        w = tl.load(W + rows[:, :, None] * stride_wm + offs_k64[None, None, :] * stride_wk,
                    mask=mask_e[:, :, None] & mask_k[None, None, :], other=0.0)
        r = tl.sum(w * h[:, None, :], axis=2)  # (WH)_ij at the stored entries, registers only
        r = floor_keeping_nan(r, eps_r)
        # Padded lanes add nothing, even at eps_r = 0 where their 0 / 0 would be NaN.
        q = tl.where(mask_e, x / r, 0.0)
        numerator += tl.sum(w * q[:, :, None], axis=1)

    # ---- epilogue: denominator colsum(W) (+ l1, + l2·h), safeguarded ratio, multiply, factor floor
    denominator = tl.load(COLSUM + offs_k, mask=mask_k, other=0.0)
    h_new = mu_epilogue(h, numerator, denominator[None, :], 1.0, l1, l2, tiny, phi, False)
    tl.store(OUT + columns[:, None] * stride_on + offs_k64[None, :] * stride_ok, h_new, mask=mask_h)


# Hopper's L2 (50 MB on the H100/H200): a gathered factor larger than this is fetched from HBM per gather.
L2_BYTES = 50 * 2 ** 20


def mu_sparse_kl_cost(nnz: int, m: int, n: int, k: int, value_itemsize: int,
                      l2_bytes: int = L2_BYTES) -> tuple[int, int]:
    """(bytes, flops) of one fused sparse KL update of H, for the roofline.

    Bytes: the stored values and their row indices (int64) once, the column pointers, colsum(W), H read
    and written, and W: once when it fits in L2 (``4·m·k ≤ l2_bytes``; 16 MiB at m = 65 536, k = 64), else
    every gather from HBM — ``4·nnz·k``, e.g. 2.8 GB per H update at nnz = 1.1·10⁷, k = 64 (W = 256 MB at
    m = 10⁶): an upper bound, rows gathered twice within one program's reach hit L2. Flops:
    ``(WH)_ij`` at the stored entries (2·nnz·k), the numerator (2·nnz·k), the floor and the ratio (2 per
    entry), colsum(W) (mk), ≈6 per entry of H for the epilogue.
    """
    w_bytes = 4 * m * k if 4 * m * k <= l2_bytes else 4 * nnz * k
    bytes_moved = nnz * (value_itemsize + 8) + 8 * (n + 1) + w_bytes + 4 * (k + 2 * k * n)
    flops = 4 * nnz * k + 2 * nnz + m * k + 6 * k * n
    return bytes_moved, flops


def _non_empty(t: torch.Tensor) -> torch.Tensor:
    """``t``, or one element of its dtype for an empty ``t``: the kernel never reads it then (no entries,
    or no rows to gather), but a launch with a null pointer is refused on a GPU."""
    return t if t.numel() else torch.zeros(1, dtype=t.dtype, device=t.device)


@torch.no_grad()
def mu_sparse_kl_update_h(
    X: SparseMatrix,
    W: torch.Tensor,
    H: torch.Tensor,
    *,
    eps_r: float,
    l1: float = 0.0,
    l2: float = 0.0,
    config: SparseMUConfig | None = None,
) -> torch.Tensor:
    """One fused KL MU update of H (k×n) for a sparse ``X (m×n) ≈ W (m×k) H``; returns a new fp32 tensor
    strided like H.

    ``X`` is a :class:`fastnmf.layouts.SparseMatrix` with float32, float16 or bfloat16 values (read from
    its column-major copy ``X.by_column``); W and H are float32, any strides. ``eps_r`` is the
    reconstruction floor of fastnmf.safeguard; ``l1``/``l2`` the regularization, as in the dense kernels;
    ``config`` overrides the tiles. For the W update pass ``X.T, H.T, W.T`` and transpose the result
    (``fastnmf.layouts.Layout.update_w``).

    W's rows are gathered once per stored entry: when they are not contiguous in memory (the W update's
    ``Hᵀ`` view has stride n between the k values of a row), W is copied to row-major first — m·k values
    read and written once, against nnz·k scattered reads that would each touch a separate 32-byte sector.
    """
    op = "mu_sparse_kl_update_h"
    _, n, k = check_sparse_factorization(op, X, W, H)
    eps_r, l1, l2 = check_mu_options(op, eps_r, l1, l2, k, W, H, MAX_BETA_RANK, "fused KL kernels")
    out = launch.new_output(H)
    if n == 0:
        return out
    cfg = config or mu_sparse_kl_config(X.nnz, n, k, X.device)
    if cfg.block_k < k:
        raise ValueError(f"{op}: config.block_k = {cfg.block_k} must cover the whole rank k = {k} (W {tuple(W.shape)}).")
    colsum = W.sum(dim=0)  # the KL denominator, k values (the dense kernel sums the same rows of W)
    if k > 1 and W.stride(1) != 1:
        W = W.contiguous()
    pattern = X.by_column
    with launch.on_device(W.device):  # the kernel runs on its tensors' GPU, not the current one
        _mu_sparse_kl_h_kernel[(triton.cdiv(n, cfg.block_cols),)](
            pattern.crow_indices(), _non_empty(pattern.col_indices()), _non_empty(pattern.values()),
            _non_empty(W), H, colsum, out,
            n, k,
            *W.stride(), *H.stride(), *out.stride(),
            eps_r, l1, l2, denominator_floor(torch.float32), factor_floor(torch.float32),
            BLOCK_COLS=cfg.block_cols,
            BLOCK_NNZ=cfg.block_nnz,
            BLOCK_K=cfg.block_k,
            num_warps=cfg.num_warps,
        )
    return out
