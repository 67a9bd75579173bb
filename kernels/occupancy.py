"""How many programs of a compiled kernel run at once on a GPU, and the row split that fills whole waves.

A grid of P programs runs in ⌈P / slots⌉ waves, where ``slots`` = resident blocks per SM × SMs; the last
wave of 1.2 waves leaves 80 % of the GPU idle for its duration. The resident blocks per SM follow from the
compiled kernel's registers, warps and shared memory (the CUDA occupancy calculator's rules,
:func:`blocks_per_sm`), which are known only once Triton has compiled the variant.

The launchers therefore learn them from their own launches: ``kernel[grid](...)`` returns Triton's
``CompiledKernel`` (its ``n_regs`` filled when it was loaded on the device), the launcher passes it to
:func:`remember` under a key of the variant's tiles, and the next call with the same tiles sizes its split
from :func:`resident_blocks`. The first launch of a variant in a process (where Triton compiles it anyway)
assumes :data:`ASSUMED_BLOCKS_PER_SM`. Nothing here queries a device under the interpreter or on CPU
tensors: a key is only ever remembered from a launch on a CUDA device.

Open question for the first GPU run (docs/kernels.md, "Grids and waves"): whether a split of the streamed
dimension (extra partial sums, one reduction) or a persistent grid over tiles is faster when the column
tiles alone are under a wave; the split is what exists, sized here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch
import triton

__all__ = [
    "ASSUMED_BLOCKS_PER_SM",
    "MIN_WAVE_EFFICIENCY",
    "SMLimits",
    "SM90",
    "blocks_per_sm",
    "device_limits",
    "variant_key",
    "remember",
    "resident_blocks",
    "forget_all",
    "remembered",
    "wave_efficiency",
    "split_for_waves",
]

# Before a variant's first launch: two blocks per SM (what the split rule assumed before residency was known).
ASSUMED_BLOCKS_PER_SM = 2

# A split stops growing once this fraction of the slots of every wave is busy.
MIN_WAVE_EFFICIENCY = 0.9


@dataclass(frozen=True)
class SMLimits:
    """Per-SM limits that bound residency (CUDA C Programming Guide, "Compute capabilities" table)."""

    registers: int = 65536
    shared_bytes: int = 233472  # 228 KB on sm_90, of which 1 KB is reserved per resident block
    reserved_shared_per_block: int = 1024
    max_warps: int = 64
    max_blocks: int = 32
    register_unit: int = 256  # registers are allocated per warp in units of 256


SM90 = SMLimits()


def blocks_per_sm(registers: int | None, num_warps: int, shared_bytes: int, limits: SMLimits = SM90) -> int | None:
    """Resident blocks per SM of a kernel using ``registers`` per thread, ``num_warps`` warps and
    ``shared_bytes`` of shared memory per block (None when the registers are unknown)."""
    if registers is None:
        return None
    unit = limits.register_unit
    per_warp = -(-registers * 32 // unit) * unit
    by_registers = (limits.registers // per_warp) // num_warps
    by_shared = limits.shared_bytes // (shared_bytes + limits.reserved_shared_per_block)
    return min(by_registers, by_shared, limits.max_warps // num_warps, limits.max_blocks)


@functools.lru_cache(maxsize=None)
def device_limits(device_index: int) -> tuple[int, SMLimits]:
    """(SM count, per-SM limits) of a CUDA device, from torch's device properties; sm_90's values where a
    torch version does not report one."""
    props = torch.cuda.get_device_properties(device_index)
    limits = SMLimits(
        registers=getattr(props, "regs_per_multiprocessor", SM90.registers),
        shared_bytes=getattr(props, "shared_memory_per_multiprocessor", SM90.shared_bytes),
        max_warps=getattr(props, "max_threads_per_multi_processor", SM90.max_warps * 32) // 32,
    )
    return props.multi_processor_count, limits


# variant_key(...) → resident blocks per SM.
_RESIDENT: dict[tuple, int] = {}


def variant_key(kernel: str, device: torch.device, config, *choices) -> tuple:
    """The key under which a variant's residency is kept: the kernel, the device, its tiles (a config's
    ``split_m`` set aside: the split is what the residency decides, and both sides of the ``SPLIT_M``
    branch are taken as one) and any other compile-time ``choices`` (precision, X's dtype)."""
    if hasattr(config, "split_m"):
        config = replace(config, split_m=1)
    return (kernel, device.type, device.index, config, *choices)


def remember(key: tuple, compiled, device: torch.device) -> None:
    """Record the residency of the variant a launch on ``device`` compiled (``compiled`` is what
    ``kernel[grid](...)`` returned). Ignored off CUDA, and for objects without Triton's metadata (a launch
    recorder, a Triton that names them differently): the assumption then stays."""
    if device.type != "cuda" or compiled is None:
        return
    registers = getattr(compiled, "n_regs", None)
    metadata = getattr(compiled, "metadata", None)
    if not isinstance(registers, int) or metadata is None:
        return
    _, limits = device_limits(_index(device))
    blocks = blocks_per_sm(registers, int(metadata.num_warps), int(metadata.shared), limits)
    if blocks is not None and blocks >= 1:
        _RESIDENT[key] = blocks


def resident_blocks(key: tuple) -> int:
    """Resident blocks per SM of the variant under ``key``: as last remembered, else the assumption."""
    return _RESIDENT.get(key, ASSUMED_BLOCKS_PER_SM)


def remembered() -> list[dict]:
    """Every remembered residency, for reports (``bench.gpu_check``): kernel, device, tiles, other choices."""
    return [{"kernel": key[0], "device": f"{key[1]}:{key[2]}", "tiles": str(key[3]), "choices": [str(c) for c in key[4:]],
             "blocks_per_sm": blocks} for key, blocks in _RESIDENT.items()]


def forget_all() -> None:
    """Drop every remembered residency (tests)."""
    _RESIDENT.clear()


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def wave_efficiency(programs: int, slots: int) -> float:
    """The busy fraction of the GPU over the waves of ``programs`` programs on ``slots`` resident slots."""
    if programs <= 0 or slots <= 0:
        return 1.0
    return programs / (triton.cdiv(programs, slots) * slots)


def split_for_waves(programs: int, slots: int, most: int, min_efficiency: float = MIN_WAVE_EFFICIENCY) -> int:
    """How many programs share the streamed dimension of each of ``programs`` tiles: the smallest split
    ≤ ``most`` whose waves keep ``min_efficiency`` of the slots busy, else the split (≤ ``most``) that
    comes closest. 1 when the tiles alone do (many waves, or a grid that fills the slots)."""
    best, best_efficiency = 1, wave_efficiency(programs, slots)
    if best_efficiency >= min_efficiency:
        return 1
    for split in range(2, max(1, most) + 1):
        efficiency = wave_efficiency(programs * split, slots)
        if efficiency >= min_efficiency:
            return split
        if efficiency > best_efficiency + 1e-12:
            best, best_efficiency = split, efficiency
    return best
