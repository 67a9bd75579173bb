"""Block-size configurations of the fused kernels: one function per kernel family, no autotuning.

Under the Triton interpreter (``TRITON_INTERPRET=1``) every function returns exactly one config with
large tiles and queries no device: programs run one after another in Python, so fewer, larger programs
are faster, and ``triton.autotune``/device queries would need a GPU driver (docs/kernels.md, section
"The Triton interpreter").

On a GPU the tiles come from tables indexed by the padded rank and the dot precision, chosen from
offline sm_90 compiles (``fastnmf.kernels.compile_check``: largest tile without register spills), plus a
split of the streamed dimension (``split_m``) sized to fill whole waves of the variant's resident programs
(``fastnmf.kernels.occupancy``; docs/kernels.md, "Grids and waves"). They
are not timed yet: ``python -m bench`` on an H100 should confirm them or replace them (``triton.autotune``
over a few neighbours is the obvious next step).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch
import triton

from ..backends.contract import interpreting
from . import occupancy

__all__ = [
    "MUConfig",
    "ObjectiveConfig",
    "HALSConfig",
    "SparseMUConfig",
    "interpreting",
    "padded_rank",
    "frobenius_tiles",
    "beta_tiles",
    "objective_tiles",
    "mu_frobenius_config",
    "mu_beta_config",
    "objective_config",
    "matmul_tn_config",
    "hals_tiles",
    "hals_sweep_config",
    "sparse_padded_rank",
    "sparse_kl_tiles",
    "mu_sparse_kl_config",
    "MAX_BETA_RANK",
    "MAX_HALS_RANK",
]

# tl.dot on a GPU needs every dimension ≥ 16; the rank is padded to a power of two ≥ 16.
MIN_DOT_DIM = 16

# The β kernels keep the whole padded rank of a column tile on chip (H_j, and one or two accumulators of
# K_PAD × BLOCK_N). Above 512 the accumulators no longer fit in registers at BLOCK_N = 16 (the smallest
# tile tl.dot accepts), so larger ranks are refused with a message pointing to the torch backend.
MAX_BETA_RANK = 512

# The HALS sweep kernel keeps a whole column block of H (padded rank × BLOCK_N) in registers; same limit.
MAX_HALS_RANK = 512

# Under the interpreter: 128×128 tiles make the test shapes (m, n ≤ 300) run in a handful of programs
# while still exercising the row loop, its masked remainder and several column tiles.
_INTERPRETER_BLOCK = 128


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


@dataclass(frozen=True)
class HALSConfig:
    """Tiles of the HALS sweep kernel: one program per block of ``block_n`` columns of H, the whole padded
    rank ``block_k`` on chip. No tl.dot: ``block_n`` may be any power of two."""

    block_n: int
    block_k: int
    num_warps: int = 4

    def __post_init__(self):
        if self.block_n < 1 or self.block_n & (self.block_n - 1):
            raise ValueError(f"HALSConfig.block_n = {self.block_n}: expected a power of two.")
        if self.block_k < MIN_DOT_DIM or self.block_k & (self.block_k - 1):
            raise ValueError(f"HALSConfig.block_k = {self.block_k}: expected a power of two ≥ {MIN_DOT_DIM}.")


@dataclass(frozen=True)
class SparseMUConfig:
    """Tiles of the sparse KL kernel (``fastnmf.kernels.mu_sparse_kl``): one program per ``block_cols``
    consecutive columns of X, their stored entries visited ``block_nnz`` per column at a time, the whole
    padded rank ``block_k`` on chip. No tl.dot: any powers of two."""

    block_nnz: int
    block_k: int
    num_warps: int = 4
    block_cols: int = 1

    def __post_init__(self):
        for name in ("block_nnz", "block_k", "num_warps", "block_cols"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"SparseMUConfig.{name} = {value}: expected a power of two.")


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _sms(device: torch.device) -> int:
    """The SM count of ``device`` (the current CUDA device when it has no index)."""
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


def _split_for_occupancy(device: torch.device, m: int, programs: int, block_m: int, key: tuple) -> int:
    """How many programs share the m loop of one column tile, so that the waves of the grid keep the GPU
    busy (``occupancy.split_for_waves``): the slots are the resident blocks per SM of the variant under
    ``key`` (as its last launch compiled it; two before that) times the SMs.

    Each split keeps ≥ 4 row tiles, so the partial sums it writes (k × BLOCK_N fp32) stay small next to
    the X it streams (≥ 4·BLOCK_M × BLOCK_N).
    """
    sms = _sms(device)
    slots = occupancy.resident_blocks(key) * sms
    most = max(1, m // (4 * block_m))
    return occupancy.split_for_waves(programs, slots, most)


# GPU tiles were chosen from offline sm_90 compiles of every (padded rank, precision) pair (triton.compile to
# a cubin, registers and stack read with cuobjdump): the largest tile that compiles without register spills.
# They are not timed yet (no GPU was available); the benchmark should confirm or replace them.
#
# ``ieee`` fp32 dots run on FMA units, and Triton's FMA dot keeps whole operand slices in registers: the β
# kernel's 64×64 tiles spill 5–12 KB per thread at ranks 32–64 ("REG:32 STACK:6152"), hence much smaller
# tiles there. ``tf32``/``tf32x3`` dots run on tensor cores with operands in shared memory.


def frobenius_tiles(k_pad: int, precision: str, x_itemsize: int = 4) -> MUConfig:
    """GPU tiles of the Frobenius kernel and of ``WᵀX`` (``split_m`` left at 1).

    The rank tile stops at 64: at 128 every tile spills and needs 240–290 KB of shared memory with three
    stages (the H100 has 227 KB). 64×128 tiles for ieee and tf32x3 at rank 16 and for ieee with fp32 X at
    rank 32; 64×64 for tf32 up to rank 64 and for tf32x3 at rank 32 (its three MMAs per product spill 16
    bytes at 64×128); 64×32 for ieee and tf32x3 at rank 64. fp16/bf16 X with ``ieee`` FMA dots converts each X tile to
    fp32 in registers: at 64-row tiles every rank up to 64 spilled 208–456 bytes (``compile_report``,
    Triton 3.9), so those take 32-row tiles (16×32 with 4 warps at rank 64). The choices were rechecked
    with the split variants the wave rule (``occupancy.split_for_waves``) launches at the GPU preset's
    shapes, under Triton 3.9 and 3.6.
    """
    block_k = min(k_pad, 64)
    if block_k <= 16:
        block_n = 64 if precision == "tf32" else 128  # tf32 64×128: 8 B of spills split, W layout (3.6)
    elif block_k == 32:
        # ieee with half X, and tf32, spilled 8–24 B at 64×128 split in the W layout (Triton 3.6)
        block_n = 128 if precision == "ieee" and x_itemsize == 4 else 64
    else:
        block_n = 64 if precision == "tf32" else 32  # 64×64 in the W layout spilled 8 B (ieee), 48 B (tf32x3), 3.6
    block_m, warps = 64, 8
    if precision == "ieee" and x_itemsize < 4:
        block_m = 32
        if block_k == 64:  # 32×32 split spilled 8–24 bytes (3.6 and 3.9), 16×32 at 8 warps too; 4 warps: 3 blocks
            block_m, warps = 16, 4
    return MUConfig(block_m, block_n, block_k, num_warps=warps, num_stages=3)


# (block_m, block_n, num_warps) of the β kernel by padded rank, per dot precision; the comment gives the
# most registers (or spilled bytes) over the IS / β=2 / general variants with fp16 or fp32 X, and the
# resident blocks per SM (``occupancy.blocks_per_sm``). BLOCK_N sets W's traffic (k/BLOCK_N × X's bytes,
# from L2), so two blocks per SM were sought by fewer warps or fewer rows at the same BLOCK_N: a second
# block hides the first's synchronous epilogue. Searched with the compile report under Triton 3.9 and 3.6.
_BETA_TILES = {
    "ieee": {
        16: (16, 64, 8),  # ≤ 94 registers, 2 blocks (32×64: 144–151 registers, 1 block; at 4 warps 8–24 B of spills)
        32: (16, 32, 8),  # 32×32: 8–16 bytes of spills for general β under Triton 3.6 (compile_report); 32×64: 32 B
        64: (16, 16, 4),  # 184 (32×32: 32–184 bytes of spills)
        128: (16, 16, 8),  # ≤ 255, 1 block for general β and half X (4 warps spill 16–32 B; no smaller tile)
        256: (16, 16, 8),  # 8–24 bytes of spills, at the smallest tile tl.dot accepts
        512: (16, 16, 8),  # 24–72 bytes of spills
    },
    "tf32": {
        16: (32, 64, 8),  # ≤ 107 registers, 2 blocks (64×64: ≤ 255, 1 block; at 4 warps 16–32 B of spills)
        32: (16, 64, 8),  # ≤ 106, 2 blocks (32×64: 1 block for IS in the W layout, 8 B of spills split with half X, 3.9)
        64: (16, 64, 8),  # ≤ 122, 2 blocks (32×64: 139–161, 1 block; at 4 warps 16 B of spills under 3.9)
        128: (32, 64, 8),  # ≤ 254, 1 block: every 64-column tile with 2 blocks spilled (288–888 B); 16×32 at
        #                    4 warps fits 2 without spills, at twice W's traffic — for the GPU run to decide
        256: (16, 16, 8),  # 254 (32×32: 56 bytes of spills)
        512: (16, 16, 8),  # 650 bytes of spills: every tile spills at this rank
    },
    "tf32x3": {  # three MMAs per product: more registers than tf32
        16: (16, 64, 8),  # ≤ 119 registers under 3.6 and 3.9; 64×64 spilled 24 B (3.9), 32×64 and 32×32 8 B
        32: (32, 32, 8),  # ≤ 254, 1 block: 16×32 at 4 warps (2 blocks) spilled 8 B under both versions, 32×32 at 4 warps 16 B
        64: (16, 32, 4),  # ≤ 171, 2–3 blocks (32×32 at 8 warps: ≤ 240, 1 block; at 4 warps 32 B of spills, 3.9)
        128: (16, 32, 8),  # ≤ 243, 1 block (4 warps: 16–88 B of spills; 16×16 at 8 warps still 1 block)
        256: (16, 32, 8),  # 464 bytes of spills: every tile spills at this rank
        512: (16, 16, 8),
    },
}


def beta_tiles(k_pad: int, precision: str) -> MUConfig:
    """GPU tiles of the β kernel (the whole padded rank in one tile; ``split_m`` left at 1)."""
    block_m, block_n, warps = _BETA_TILES[precision][min(max(k_pad, 16), MAX_BETA_RANK)]
    return MUConfig(block_m, block_n, k_pad, num_warps=warps, num_stages=2)


def objective_tiles(k_pad: int, precision: str) -> ObjectiveConfig:
    """GPU tiles of the objective kernel: 64×64 over rank chunks of ≤ 32 with 8 warps compiles to ≤ 118
    registers for ieee and ≤ 83 for tf32 (4 warps: 229 and 168)."""
    return ObjectiveConfig(64, 64, min(k_pad, 32), num_warps=8, num_stages=2)


# (block_n, num_warps) of the HALS sweep by padded rank: the spill-free sm_90 compile with the fewest
# registers among tiles of ≥ 2048 entries (H block, fp32) — registers do not follow the tile size, they
# follow the layout Triton picks (64×64 with 4 warps: 255 and 32 bytes of spills; with 2 warps: 139).
# Registers as recompiled with the per-column early stop (the per-block rule took 79, 142, 154, 158, 121
# and 191); the tiles were chosen with the per-block rule and all still compile without spills.
_HALS_TILES = {
    16: (128, 4),  # 91 registers (16×256: 143)
    32: (128, 8),  # ≤ 80 registers under 3.6 and 3.9; at 4 warps 128 and 64 columns spilled 8–16 B (3.6)
    64: (64, 2),  # 139 (64×64 at 4 warps spills 32 bytes, 64×128 spills at any warp count)
    128: (32, 4),  # 155 (128×64: 254 registers at 4 warps, spills at 2 and 8)
    256: (16, 8),  # 123 (256×32 at 8 warps: 190)
    512: (16, 8),  # 191 (512×32 at 8 warps: 255, 4 warps spill)
}


def hals_tiles(k_pad: int) -> HALSConfig:
    """GPU tiles of the HALS sweep kernel (the whole padded rank in one tile), from offline sm_90 compiles
    (``compile_check``); not timed yet."""
    k_pad = min(max(k_pad, MIN_DOT_DIM), MAX_HALS_RANK)
    block_n, warps = _HALS_TILES[k_pad]
    return HALSConfig(block_n=block_n, block_k=k_pad, num_warps=warps)


def hals_sweep_config(n: int, k: int, device: torch.device) -> HALSConfig:
    """Config of the HALS sweep over the rows of H (k×n): the column block shrinks (down to 16 columns)
    until the programs fill every resident slot of the GPU once (the block's residency as its launches
    reported it, ``occupancy``; 2 per SM before), since each program runs the whole sweep alone."""
    k_pad = padded_rank(k)
    if interpreting():
        return HALSConfig(_INTERPRETER_BLOCK, k_pad)
    tiles = hals_tiles(k_pad)
    sms = _sms(device)

    def slots(block_n):
        return occupancy.resident_blocks(occupancy.variant_key("hals_sweep", device, replace(tiles, block_n=block_n))) * sms

    block_n = tiles.block_n
    while block_n > 16 and triton.cdiv(n, block_n) < slots(block_n):
        block_n //= 2
    return replace(tiles, block_n=block_n)


def matmul_tn_config(m: int, n: int, k: int, device: torch.device, precision: str = "ieee",
                     x_itemsize: int = 4) -> MUConfig:
    """Config of ``WᵀX`` (``fastnmf.kernels.gemm``): the Frobenius kernel's tiles (its numerator loop is
    this GEMM), with the m loop split when the column and rank tiles alone leave most SMs idle."""
    return mu_frobenius_config(m, n, k, device, precision, x_itemsize, kernel="matmul_tn")


def mu_frobenius_config(m: int, n: int, k: int, device: torch.device, precision: str = "ieee",
                        x_itemsize: int = 4, kernel: str = "mu_frobenius") -> MUConfig:
    """Config of the fused Frobenius update of H (k×n) from X (m×n) whose entries take ``x_itemsize`` bytes;
    ``kernel`` names the variant whose residency sizes the split (``occupancy.variant_key``)."""
    k_pad = padded_rank(k)
    if interpreting():
        return MUConfig(_INTERPRETER_BLOCK, _INTERPRETER_BLOCK, k_pad)
    tiles = frobenius_tiles(k_pad, precision, x_itemsize)
    programs = triton.cdiv(n, tiles.block_n) * triton.cdiv(k, tiles.block_k)
    key = occupancy.variant_key(kernel, device, tiles, precision, x_itemsize)
    return replace(tiles, split_m=_split_for_occupancy(device, m, programs, tiles.block_m, key))


def mu_beta_config(m: int, n: int, k: int, device: torch.device, precision: str = "ieee", beta_case: int = 3,
                   x_itemsize: int = 4) -> MUConfig:
    """Config of the fused KL / general-β update of H; ``beta_case`` and ``x_itemsize`` pick the compiled
    variant whose residency sizes the split."""
    k_pad = padded_rank(k)
    if interpreting():
        return MUConfig(_INTERPRETER_BLOCK, _INTERPRETER_BLOCK, k_pad)
    tiles = beta_tiles(k_pad, precision)
    programs = triton.cdiv(n, tiles.block_n)
    key = occupancy.variant_key("mu_beta", device, tiles, precision, beta_case, x_itemsize)
    return replace(tiles, split_m=_split_for_occupancy(device, m, programs, tiles.block_m, key))


def objective_config(m: int, n: int, k: int, device: torch.device, precision: str = "ieee") -> ObjectiveConfig:
    """Config of the tiled β-divergence kernel."""
    k_pad = padded_rank(k)
    if interpreting():
        return ObjectiveConfig(_INTERPRETER_BLOCK, _INTERPRETER_BLOCK, min(k_pad, 128))
    return objective_tiles(k_pad, precision)


# The sparse KL kernel gathers a [BLOCK_COLS, BLOCK_NNZ, BLOCK_K] tile of rows of W per chunk of stored
# entries and keeps it, and its products with h and q, in registers. At most SPARSE_TILE_ELEMENTS fp32
# entries per tile (BLOCK_NNZ = 4 at rank 512, 256 at rank 16 with one column), with one warp per 512 of
# them (16 per thread and tile): offline sm_90 compiles of ranks 4–512 with one column per program took
# 56–118 registers without spills, where 4 warps for a 4096-entry tile (32 per thread) took 128–198 — fewer
# resident warps for a kernel bound by gather latency.
SPARSE_TILE_ELEMENTS = 4096

# Columns per program at most: beyond, a program's loop (to its longest column) wastes more masked lanes
# on skewed columns than the extra columns save in launches.
MAX_SPARSE_COLUMNS = 32


def sparse_padded_rank(k: int) -> int:
    """The rank as the sparse kernel sees it: a power of two ≥ 4 (no tl.dot, so no minimum of 16; 4 fp32
    = 16 bytes, one vector load per gathered row at the smallest ranks)."""
    return max(4, triton.next_power_of_2(max(int(k), 1)))


def sparse_kl_tiles(k_pad: int, mean_column_nnz: int) -> SparseMUConfig:
    """GPU tiles of the sparse KL kernel: the chunk follows the mean number of stored entries per column
    (a chunk much longer than the columns would be mostly masked lanes), from 16 up to the register budget
    ``SPARSE_TILE_ELEMENTS // k_pad``; the rest of the budget goes to columns per program (up to
    ``MAX_SPARSE_COLUMNS``); one warp per 512 tile entries (1 to 8 warps).
    Not timed yet (no GPU was available): the benchmark should confirm or replace them."""
    cap = max(1, SPARSE_TILE_ELEMENTS // k_pad)
    if k_pad >= 512:
        cap //= 2  # 8 entries × 512 with 8 warps spilled 8 bytes under Triton 3.9 (compile_check); 4 × 512 did not
    block_nnz = min(cap, max(16, triton.next_power_of_2(max(int(mean_column_nnz), 1))))
    block_cols = max(1, min(MAX_SPARSE_COLUMNS, SPARSE_TILE_ELEMENTS // (block_nnz * k_pad)))
    num_warps = max(1, min(8, (block_cols * block_nnz * k_pad) // 512))
    return SparseMUConfig(block_nnz, k_pad, num_warps=num_warps, block_cols=block_cols)


def mu_sparse_kl_config(nnz: int, n: int, k: int, device: torch.device) -> SparseMUConfig:
    """Config of the fused sparse KL update of H (k×n) from a sparse X with ``nnz`` stored entries."""
    k_pad = sparse_padded_rank(k)
    if interpreting():
        # Chunks of 128 entries over 4 columns: the test columns (≤ 131 rows) take one or two chunks per
        # program, and a column count that is not a multiple of 4 exercises the masked columns.
        return SparseMUConfig(_INTERPRETER_BLOCK, k_pad, block_cols=4)
    return sparse_kl_tiles(k_pad, triton.cdiv(nnz, max(n, 1)))
