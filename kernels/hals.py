"""Fused HALS sweeps (β = 2): all k row updates of H and the inner repeats in one kernel, H written once.

Given ``A = WᵀX`` (k×n) and ``B = WᵀW`` (k×k), column c of the new H depends only on column c of A and on
B (docs/kernels.md, section "hals — fused HALS sweeps (β = 2)"). One program owns a block of ``BLOCK_N``
columns of H, holds it in registers (the whole padded rank), and runs the Gauss–Seidel sweep over the
rows j = 0..k−1

    H_j ← max(H_j + step_j · (A'_j − (B'H)_j), φ)        B' = B + l2·I, A' = A − l1,

where row j sees the rows < j already updated, ``step_j = 1/(B_jj + l2)`` or 0 (row left unchanged) from
``fastnmf.safeguard.hals_step_sizes`` (computed by the launcher on the device, without a host
synchronisation) and φ the factor floor (docs/maths.md, section "HALS (β = 2)"). The launcher forms the
k×k ``B'``; ``A − l1`` is taken in registers. Rows of B' and of A are read from global memory at each
row step (k and BLOCK_N values: B', k·k·4 bytes in all, and this block's rows of A stay in L1/L2 across
the sweeps). Row j needs ``H_j`` and ``(B'H)_j``: two reductions over the rank of the on-chip block (no
tl.dot: the sweep is sequential in j). A row whose step is 0 is skipped (a uniform branch). Up to
``max_sweeps`` sweeps run without leaving the chip (Gillis & Glineur 2012); H is read once and written
once. GPU tiles (``configs.hals_tiles``) come from offline sm_90 compiles only; nothing here is timed.

**Early stop, per column**: the same per-column rule as the torch sweep (fastnmf.updates.hals_sweeps_).
Each column c of H is its own least-squares problem. After sweep s its change is
``change_c(s) = Σ_j (H_after[j, c] − H_before[j, c])²`` (fp32 differences, summed in float64); for
s ≥ 2, once ``change_c(s) ≤ δ² · change_c(1)`` the column stops, keeping sweep s's values, and later
sweeps leave it as it is (its row updates are masked: freezing it is exact, since no other column reads
it). A program ends when all its columns have stopped or after ``max_sweeps`` sweeps, and returns the
number of sweeps it ran (the most over its columns). No grid-wide reduction and no host synchronisation,
and the result does not depend on how the columns are split into blocks (``config.block_n``, or the
number of programs the GPU config picks) — nor, for the W update, on how the rows of X are split. With
``delta = 0`` a column stops only once a sweep changes it not at all (a fixed point: further sweeps would
not change it either), so exactly ``max_sweeps`` sweeps' worth of updates are applied.

The W update is this kernel on the transposed problem (``A = H Xᵀ``, ``B = HHᵀ``, and ``Wᵀ`` as a view):
strided loads and stores, no copies. Column normalization, if one is ever added, belongs after the sweep.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..safeguard import factor_floor, hals_step_sizes
from . import launch, occupancy
from .configs import MAX_HALS_RANK, HALSConfig, hals_sweep_config, interpreting, padded_rank
from .launch import check_scalar
from .tile_ops import floor_keeping_nan, tile_pointers

__all__ = ["hals_sweeps", "hals_sweeps_cost"]


@triton.jit
def _hals_sweep_kernel(
    H, A, B, STEPS, OUT, SWEEPS,
    N, K, max_sweeps,
    stride_hk, stride_hn, stride_ak, stride_an, stride_b0, stride_b1, stride_ok, stride_on,
    l1, phi, delta_sq,
    EARLY_STOP: tl.constexpr,  # max_sweeps > 1: measure each column's change for the δ rule
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,  # the padded rank: the whole rank of the column block is on chip
):
    tl.static_assert(BLOCK_K >= 16)
    pid = tl.program_id(0)
    offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_n = offs_n < N
    mask_k = offs_k < K
    # Padded rows and columns load as 0: they add 0 to every product and are never stored.
    h = tl.load(tile_pointers(H, offs_k, offs_n, stride_hk, stride_hn),
                mask=mask_k[:, None] & mask_n[None, :], other=0.0)
    no_change = tl.zeros((BLOCK_N,), dtype=tl.float64)
    first = no_change  # change_c(1) of each column (float64, as the torch sweep)
    # The columns still being swept: padded columns never are, a column leaves once the δ rule stops it.
    active = mask_n
    sweep = 0
    go = max_sweeps > 0
    while go:
        change = no_change
        # Pointers advanced row by row (64-bit pointer arithmetic: j·stride_ak may exceed 2³¹).
        b_row = B + offs_k.to(tl.int64) * stride_b1
        a_row = A + offs_n.to(tl.int64) * stride_an
        for j in range(0, K):
            step = tl.load(STEPS + j)
            if step != 0.0:  # 0: a numerically zero term, whose row is left as it is (uniform branch)
                is_j = (offs_k == j)[:, None]
                b = tl.load(b_row, mask=mask_k, other=0.0)  # row j of B' = B + l2·I
                a = tl.load(a_row, mask=active, other=0.0) - l1  # row j of A' = A − l1 (stopped columns: unread)
                h_j = tl.sum(tl.where(is_j, h, 0.0), axis=0)
                gradient = tl.sum(b[:, None] * h, axis=0) - a  # (B'H)_j − A'_j, rows < j already updated
                h_new = floor_keeping_nan(h_j - step * gradient, phi)
                if EARLY_STOP:
                    h_new = tl.where(active, h_new, h_j)  # a stopped column keeps its values
                    difference = h_new - h_j  # 0 in stopped and padded columns
                    change += (difference * difference).to(tl.float64)
                h = tl.where(is_j, h_new[None, :], h)
            b_row += stride_b0
            a_row += stride_ak
        sweep += 1
        if EARLY_STOP:
            first = tl.where(sweep == 1, change, first)
            # Gillis & Glineur's rule per column, as fastnmf.updates.hals_sweeps_: never after the first sweep.
            active = tl.where(sweep == 1, active, active & (change > delta_sq * first))
            go = (sweep < max_sweeps) & (tl.max(active.to(tl.int32), axis=0) > 0)
        else:
            go = sweep < max_sweeps
    tl.store(tile_pointers(OUT, offs_k, offs_n, stride_ok, stride_on), h, mask=mask_k[:, None] & mask_n[None, :])
    tl.store(SWEEPS + pid, sweep)


def hals_sweeps_cost(n: int, k: int, sweeps: int) -> tuple[int, int]:
    """(bytes, flops) of ``sweeps`` fused sweeps over the rows of H (k×n), for the roofline.

    Bytes: H read and written once, A and B read once (the compulsory traffic: later sweeps re-read A's
    rows and B's rows from L1/L2). Flops per sweep: the row products ``(B'H)_j`` (2k²n), extracting
    ``H_j`` from the block (2k²n: a masked sum over the rank on chip) and ≈8kn for the update and the
    change.
    """
    bytes_moved = 4 * (3 * k * n + k * k)
    flops = sweeps * (4 * k * k * n + 8 * k * n)
    return bytes_moved, flops


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _check(op: str, H: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> tuple[int, int]:
    for name, t in (("H", H), ("A", A), ("B", B)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}.")
    shapes = f"H {_shape(H)}, A {_shape(A)}, B {_shape(B)}"
    if H.dim() != 2 or A.shape != H.shape or B.dim() != 2 or B.shape != (H.shape[0], H.shape[0]):
        raise ValueError(f"{op}: expected H (k×n), A = WᵀX (k×n) and B = WᵀW (k×k); got {shapes}.")
    k, n = H.shape
    if k < 1:
        raise ValueError(f"{op}: the rank k must be ≥ 1; got {shapes}.")
    if k > MAX_HALS_RANK:
        raise ValueError(
            f"{op}: rank {k} is above the {MAX_HALS_RANK} the fused sweep keeps on chip ({shapes}); use "
            "fastnmf.updates.hals_sweeps_ (the triton backend does so by itself)."
        )
    for name, t in (("H", H), ("A", A), ("B", B)):
        if t.dtype != torch.float32:
            raise TypeError(f"{op}: {name} {_shape(t)} has dtype {t.dtype}; expected float32.")
    if not (H.device == A.device == B.device):
        raise ValueError(f"{op}: H {_shape(H)} is on {H.device}, A {_shape(A)} on {A.device}, B {_shape(B)} on "
                         f"{B.device}; all three must be on the same device.")
    if H.device.type != "cuda" and not interpreting():
        raise ValueError(
            f"{op}: the Triton kernels run on CUDA tensors, but H {_shape(H)} is on {H.device}; set "
            "TRITON_INTERPRET=1 before importing fastnmf to run them on the CPU."
        )
    return k, n


@torch.no_grad()
def hals_sweeps(
    H: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    *,
    l1: float = 0.0,
    l2: float = 0.0,
    max_sweeps: int = 1,
    delta: float = 0.1,
    config: HALSConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``max_sweeps`` fused HALS sweeps over the rows of H (k×n) given ``A = WᵀX`` and ``B = WᵀW``.

    Returns ``(H_new, sweeps)``: a new fp32 tensor strided like H (H is not modified; pass ``Wᵀ`` views
    for the W update and transpose back), and the number of sweeps each column block ran (int32, one per
    block of ``config.block_n`` columns: the most over the block's columns). The early stop (``δ``) is
    the same per-column rule as the torch sweep (fastnmf.updates.hals_sweeps_): after a sweep s ≥ 2 a
    column whose change is at most δ² times its first sweep's change stops and keeps its values (see the
    module docstring), so H_new does not depend on ``config.block_n``. ``delta = 0`` applies exactly
    ``max_sweeps`` sweeps (a column stops early only at a fixed point). H, A and B are float32, any
    strides. ``step_j`` comes from ``fastnmf.safeguard.hals_step_sizes``.
    """
    op = "hals_sweeps"
    k, n = _check(op, H, A, B)
    l1, l2 = check_scalar(op, "l1", l1), check_scalar(op, "l2", l2)
    delta = check_scalar(op, "delta", delta)
    if delta < 0.0:
        raise ValueError(f"{op}: delta = {delta} must be ≥ 0.")
    if int(max_sweeps) != max_sweeps or max_sweeps < 1:
        raise ValueError(f"{op}: max_sweeps = {max_sweeps!r} must be an integer ≥ 1.")
    max_sweeps = int(max_sweeps)
    cfg = config or hals_sweep_config(n, k, H.device)
    if cfg.block_k < padded_rank(k):
        raise ValueError(f"{op}: config.block_k = {cfg.block_k} is below the padded rank {padded_rank(k)}.")
    out = launch.new_output(H)
    programs = triton.cdiv(n, cfg.block_n)
    sweeps = launch.new_workspace(programs, device=H.device, dtype=torch.int32)
    if n == 0:
        return out, sweeps
    steps = hals_step_sizes(B, l2).contiguous()  # on the device: no host synchronisation
    if l2:
        B = B + l2 * torch.eye(k, dtype=B.dtype, device=B.device)  # B' (k×k), as the torch sweep
    with launch.on_device(H.device):  # the kernel runs on its tensors' GPU, not the current one
        compiled = _hals_sweep_kernel[(programs,)](
            H, A, B, steps, out, sweeps,
            n, k, max_sweeps,
            *H.stride(), *A.stride(), *B.stride(), *out.stride(),
            l1, factor_floor(torch.float32), delta * delta,
            EARLY_STOP=max_sweeps > 1,
            BLOCK_N=cfg.block_n,
            BLOCK_K=cfg.block_k,
            num_warps=cfg.num_warps,
        )
    occupancy.remember(occupancy.variant_key("hals_sweep", H.device, cfg), compiled, H.device)
    return out, sweeps
