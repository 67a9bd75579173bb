"""Block-size configurations of the fused kernels: one function per kernel family, no autotuning.

Under the Triton interpreter (``TRITON_INTERPRET=1``) every function returns exactly one config with
large tiles and queries no device: programs run one after another in Python, so fewer, larger programs
are faster, and ``triton.autotune``/device queries would need a GPU driver (DESIGN.md §3).

On a GPU the configs are heuristics of tile shape against the padded rank, plus a split of the streamed
dimension (``split_m``) when the column tiles alone would leave most SMs idle. They are starting points,
not measurements: ``python -m bench`` should replace them with measured choices (or ``triton.autotune``
over a few of them) once it runs on an H100.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import triton

__all__ = [
    "MUConfig",
    "ObjectiveConfig",
    "interpreting",
    "poison_outputs",
    "padded_rank",
    "mu_frobenius_config",
    "mu_beta_config",
    "objective_config",
    "MAX_BETA_RANK",
]

# tl.dot on a GPU needs every dimension ≥ 16; the rank is padded to a power of two ≥ 16.
MIN_DOT_DIM = 16

# The β kernels keep the whole padded rank of a column tile on chip (H_j, and one or two accumulators of
# K_PAD × BLOCK_N). Above 512 the accumulators no longer fit in registers at BLOCK_N = 16 (the smallest
# tile tl.dot accepts), so larger ranks are refused with a message pointing to the torch backend.
MAX_BETA_RANK = 512

# Under the interpreter: 128×128 tiles make the test shapes (m, n ≤ 300) run in a handful of programs
# while still exercising the row loop, its masked remainder and several column tiles.
_INTERPRETER_BLOCK = 128


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (read at call time; kernels read it at import)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def poison_outputs() -> bool:
    """True when launchers fill their outputs with NaN first, so that an unwritten tile fails a test."""
    return os.environ.get("FASTNMF_POISON_OUTPUTS", "0") not in ("", "0")


def padded_rank(k: int) -> int:
    """The rank as the kernels see it: a power of two ≥ 16 (tl.dot's minimum dimension on a GPU)."""
    return max(MIN_DOT_DIM, triton.next_power_of_2(max(int(k), 1)))


@dataclass(frozen=True)
class MUConfig:
    """Tiles of a multiplicative-update kernel.

    ``block_k`` is the rank tile (a power of two ≥ 16); ``split_m`` > 1 splits the streamed dimension m
    over that many programs per column tile, which then write partial sums to a workspace that a second
    small kernel reduces (``fastnmf.kernels.mu_finalize``).
    """

    block_m: int
    block_n: int
    block_k: int
    split_m: int = 1
    num_warps: int = 4
    num_stages: int = 2

    def __post_init__(self):
        for name in ("block_m", "block_n", "block_k"):
            value = getattr(self, name)
            if value < MIN_DOT_DIM or value & (value - 1):
                raise ValueError(f"MUConfig.{name} = {value}: expected a power of two ≥ {MIN_DOT_DIM}.")
        if self.split_m < 1:
            raise ValueError(f"MUConfig.split_m = {self.split_m}: expected ≥ 1.")


@dataclass(frozen=True)
class ObjectiveConfig:
    """Tiles of the objective kernel: one program per (block_m × block_n) tile of X."""

    block_m: int
    block_n: int
    block_k: int
    num_warps: int = 4
    num_stages: int = 2


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _split_for_occupancy(device: torch.device, m: int, programs: int, block_m: int) -> int:
    """How many programs share the m loop of one column tile, so that ~2 waves of programs fill the GPU.

    Each split keeps ≥ 4 row tiles, so the partial sums it writes (k × BLOCK_N fp32) stay small next to
    the X it streams (≥ 4·BLOCK_M × BLOCK_N).
    """
    target = 2 * _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    if programs >= target:
        return 1
    most = max(1, m // (4 * block_m))
    return max(1, min(triton.cdiv(target, programs), most))


def mu_frobenius_config(m: int, n: int, k: int, device: torch.device) -> MUConfig:
    """Config of the fused Frobenius update of H (k×n) from X (m×n)."""
    k_pad = padded_rank(k)
    if interpreting():
        return MUConfig(_INTERPRETER_BLOCK, _INTERPRETER_BLOCK, k_pad)
    # The accumulator is BLOCK_K × BLOCK_N fp32 in registers; beyond 128 the rank is tiled over programs
    # (X is then streamed once per rank tile — rare: NMF ranks are mostly ≤ 128).
    block_k = min(k_pad, 128)
    block_n = 64 if block_k <= 64 else 32
    block_m = 64
    programs = triton.cdiv(n, block_n) * triton.cdiv(k, block_k)
    split = _split_for_occupancy(device, m, programs, block_m)
    return MUConfig(block_m, block_n, block_k, split, num_warps=4 if block_k <= 64 else 8, num_stages=3)


def mu_beta_config(m: int, n: int, k: int, device: torch.device) -> MUConfig:
    """Config of the fused KL / general-β update of H (the whole padded rank in one tile)."""
    k_pad = padded_rank(k)
    if interpreting():
        return MUConfig(_INTERPRETER_BLOCK, _INTERPRETER_BLOCK, k_pad)
    # Registers per program ≈ K_PAD·BLOCK_N (H_j) + 2·K_PAD·BLOCK_N (accumulators) + BLOCK_M·K_PAD (W_i):
    # shrink the tiles as the rank grows so that they stay ≈ 16–24 K fp32 over 4–8 warps.
    if k_pad <= 32:
        block_m, block_n, warps = 64, 64, 4
    elif k_pad <= 64:
        block_m, block_n, warps = 64, 64, 8
    elif k_pad <= 128:
        block_m, block_n, warps = 32, 64, 8
    elif k_pad <= 256:
        block_m, block_n, warps = 32, 32, 8
    else:
        block_m, block_n, warps = 16, 16, 8
    programs = triton.cdiv(n, block_n)
    split = _split_for_occupancy(device, m, programs, block_m)
    return MUConfig(block_m, block_n, k_pad, split, num_warps=warps, num_stages=2)


def objective_config(m: int, n: int, k: int, device: torch.device) -> ObjectiveConfig:
    """Config of the tiled β-divergence kernel."""
    k_pad = padded_rank(k)
    if interpreting():
        return ObjectiveConfig(_INTERPRETER_BLOCK, _INTERPRETER_BLOCK, min(k_pad, 128))
    return ObjectiveConfig(64, 64, min(k_pad, 64), num_warps=4, num_stages=2)
