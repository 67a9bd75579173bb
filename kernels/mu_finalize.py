"""Second pass of a split-m update: sum the partial numerators/denominators, apply the MU epilogue.

Only used when ``MUConfig.split_m > 1``: with few column tiles (small n — the 64 features of digits, or
the W update of a short-and-wide X) one program per column tile would leave most of the GPU's SMs idle,
so the m loop is split over several programs that each write a partial ``k × BLOCK_N`` sum. That
workspace is ``split_m · k · n`` fp32, small next to X by construction (each split streams ≥ 4 row
tiles, see ``configs._split_for_occupancy``). With ``split_m == 1`` the update is fully fused and this
kernel is not launched.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import launch
from .configs import padded_rank
from .tile_ops import mu_epilogue, tile_pointers

__all__ = ["finalize_split_update", "mu_finalize_cost"]


@triton.jit
def _mu_finalize_kernel(
    NUM, DEN, H, OUT,
    K, N, num_splits, den_splits,
    stride_num_s, stride_num_k, stride_num_n,
    stride_den_s, stride_den_k, stride_den_n,
    stride_hk, stride_hn, stride_ok, stride_on,
    gamma, l1, l2, tiny, phi,
    HAS_GAMMA: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (offs_k < K)[:, None] & (offs_n < N)[None, :]

    # ---- reduce the partial sums over the splits (pointer increments: the loop index stays a scalar)
    numerator = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    num_ptrs = tile_pointers(NUM, offs_k, offs_n, stride_num_k, stride_num_n)
    for _ in range(0, num_splits):
        numerator += tl.load(num_ptrs, mask=mask, other=0.0)
        num_ptrs += stride_num_s
    denominator = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    # stride_den_n is 0 for KL, whose denominator (colsum W) does not depend on the column.
    den_ptrs = tile_pointers(DEN, offs_k, offs_n, stride_den_k, stride_den_n)
    for _ in range(0, den_splits):
        denominator += tl.load(den_ptrs, mask=mask, other=0.0)
        den_ptrs += stride_den_s

    # ---- epilogue: the same safeguarded ratio and multiply as the fused kernels
    h = tl.load(tile_pointers(H, offs_k, offs_n, stride_hk, stride_hn), mask=mask, other=0.0)
    h_new = mu_epilogue(h, numerator, denominator, gamma, l1, l2, tiny, phi, HAS_GAMMA)
    tl.store(tile_pointers(OUT, offs_k, offs_n, stride_ok, stride_on), h_new, mask=mask)


def mu_finalize_cost(n: int, k: int, num_splits: int, den_splits: int) -> tuple[int, int]:
    """(bytes, flops) of the finalize pass: read the partials and H, write H."""
    bytes_moved = 4 * k * n * (num_splits + den_splits + 2)
    flops = k * n * (num_splits + den_splits + 6)
    return bytes_moved, flops


def finalize_split_update(
    numerator: torch.Tensor,
    denominator: torch.Tensor,
    den_splits: int,
    H: torch.Tensor,
    out: torch.Tensor,
    *,
    gamma: float,
    l1: float,
    l2: float,
    tiny: float,
    phi: float,
) -> torch.Tensor:
    """Launch the finalize pass. ``numerator`` is (splits, k, n); ``denominator`` is (≥ den_splits, k, n),
    possibly a stride-0 view along n (KL)."""
    splits, k, n = numerator.shape
    block_k = min(padded_rank(k), 64)
    block_n = 64
    grid = (triton.cdiv(n, block_n), triton.cdiv(k, block_k))
    with launch.on_device(H.device):  # the kernel runs on its tensors' GPU, not the current one
        _mu_finalize_kernel[grid](
            numerator, denominator, H, out,
            k, n, splits, den_splits,
            *numerator.stride(), *denominator.stride(),
            *H.stride(), *out.stride(),
            gamma, l1, l2, tiny, phi,
            HAS_GAMMA=gamma != 1.0,
            BLOCK_K=block_k,
            BLOCK_N=block_n,
            num_warps=8,  # 64×64 tiles: 255 registers and 32 bytes of spills with 4 warps, 128 with 8 (sm_90)
        )
    return out
