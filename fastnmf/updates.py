"""The update rules, written once against the layout primitives (``fastnmf.layouts``): one MU, one HALS.

Every rule updates the right factor H of ``X ≈ WH`` in two steps, so that a layout can own the pass over
its data (docs/architecture.md, section "Update rules"):

- ``rule.statistics(X, W, H)`` — what the update needs from X: for MU the numerator and denominator
  (or, for the unweighted Frobenius loss, the k×k Gram ``WᵀW`` that gives the denominator ``(WᵀW)H``),
  for HALS ``A = WᵀX`` and ``B = WᵀW``. Statistics are **additive over the rows of X** (and their columns
  map to columns of H), so a streamed layout sums them chunk by chunk and a sharded one all-reduces them;
- ``rule.apply(H, statistics)`` — the step itself, which needs nothing of X; returns ``(H_new, fit)``.

``rule.update(X, W, H)`` does both; a backend's rule may replace it by a fused kernel (``fastnmf.backends``).
The W update is the H update of ``Xᵀ ≈ Hᵀ Wᵀ`` (``Layout.update_w``). The maths: docs/maths.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from .layouts.base import accumulate_columns
from .losses import mu_exponent
from .safeguard import apply_factor_floor_, denominator_floor, factor_floor, hals_step_sizes, safe_ratio

__all__ = [
    "beta_terms", "multiplicative_step", "multiplicative_step_", "MUStatistics", "MURule", "HALSStatistics",
    "HALSRule", "hals_sweeps_", "hals_batched_sweeps_", "hals_fit",
]


def beta_terms(x: torch.Tensor, r: torch.Tensor, beta: float):
    """``(N, P) = (x ∘ r^(β−2), r^(β−1))``: the negative and positive parts of ``∂d_β(x | r)/∂r``, the
    same N and P that ``fastnmf.reference.gradient_parts`` back-propagates. ``r`` (already floored) is
    consumed: it may be overwritten. P is None for β = 1, where it is 1 everywhere."""
    if beta == 2.0:
        return x, r
    if beta == 1.0:
        # In place: one m×n temporary fewer per update; each fresh one costs its page faults on the CPU.
        return torch.div(x, r, out=r), None
    if beta == 0.0:
        inverse = r.reciprocal_()  # r^−1, then x·r^−2 = x·(r^−1)²: no pow on the fast path
        return x * inverse.square(), inverse
    return x * r.pow(beta - 2.0), r.pow_(beta - 1.0)


def multiplicative_step(numerator, denominator, H, *, beta: float, l1: float, l2: float) -> torch.Tensor:
    """``max(H ∘ (num / max(den + l1 + l2·H, tiny))^γ(β), φ)``: the MU step given its numerator and
    denominator, with the safeguard rule (``fastnmf.safeguard``); a new tensor."""
    if l1:
        denominator = denominator + l1
    if l2:
        denominator = denominator + l2 * H
    ratio = safe_ratio(numerator, denominator)
    gamma = mu_exponent(beta)
    if gamma != 1.0:
        ratio.pow_(gamma)
    return apply_factor_floor_(ratio.mul_(H))


def multiplicative_step_(numerator, denominator, H, *, beta: float, l1: float, l2: float) -> torch.Tensor:
    """:func:`multiplicative_step` into ``H`` (returned), consuming ``numerator`` and ``denominator`` (both
    overwritten): the same arithmetic, no temporaries — for callers that own those buffers (the stacked
    batch of ``fastnmf.ensemble_stacked``)."""
    if l1:
        denominator.add_(l1)
    if l2:
        denominator.add_(l2 * H)
    ratio = numerator.div_(denominator.clamp_min_(denominator_floor(numerator.dtype)))
    gamma = mu_exponent(beta)
    if gamma != 1.0:
        ratio.pow_(gamma)
    return apply_factor_floor_(H.mul_(ratio))


def _add(a, b):
    return b if a is None else a if b is None else a + b


@dataclass(frozen=True)
class MUStatistics:
    """The MU numerator (k×n) and denominator (k×n, or k×1 for KL's column sums) — or, for the unweighted
    Frobenius loss, the Gram ``WᵀW`` from which the denominator is ``(WᵀW)H``. Added chunk by chunk."""

    numerator: torch.Tensor
    denominator: torch.Tensor | None = None
    gram: torch.Tensor | None = None
    #: fields with one column per column of H (a sharded layout scatters them; it sums the others whole —
    #: a k×1 denominator broadcasts over the columns).
    per_column: ClassVar[tuple[str, ...]] = ("numerator", "denominator")

    def __add__(self, other: "MUStatistics") -> "MUStatistics":
        return MUStatistics(self.numerator + other.numerator, _add(self.denominator, other.denominator),
                            _add(self.gram, other.gram))


class MURule:
    """Multiplicative update of H, any β (Lee & Seung; Févotte & Idier 2011), with penalties l1, l2."""

    def __init__(self, beta: float, l1: float = 0.0, l2: float = 0.0, *, eps_r: float):
        self.beta, self.l1, self.l2, self.eps_r = float(beta), float(l1), float(l2), float(eps_r)

    def statistics(self, X, W: torch.Tensor, H: torch.Tensor) -> MUStatistics:
        beta, k, n = self.beta, W.shape[1], H.shape[1]
        if beta == 2.0 and not X.weighted:
            return MUStatistics(X.wt_x(W), gram=X.gram(W))  # the Gram trick: never Wᵀ(WH)
        # Where every entry that counts is stored in the blocks, the denominator Wᵀ(M∘P) is summed there
        # too; otherwise (sparse X) P = r^(β−1) does not vanish at the zeros of X: a pass over every entry.
        denominator_in_blocks = X.weighted or (not X.implicit_zeros and beta != 1.0)
        numerators, denominators = [], []
        for rows, columns, block in X.blocks():
            W_rows = W[rows]
            r = block.reconstruction(W_rows, H[:, columns])
            if beta < 2.0:
                r.clamp_min_(self.eps_r)
            N, P = beta_terms(block.x.to(r.dtype), r, beta)
            weight = None if block.weight is None else block.weight.to(r.dtype)
            if weight is not None:
                N, P = N * weight, weight if P is None else P * weight
            numerators.append((columns, block.wt_dot(W_rows, N)))
            if denominator_in_blocks:
                denominators.append((columns, block.wt_dot(W_rows, P)))
        numerator = accumulate_columns(numerators, (k, n), W)
        if denominator_in_blocks:
            return MUStatistics(numerator, accumulate_columns(denominators, (k, n), W))
        if beta == 1.0:
            return MUStatistics(numerator, X.column_sums(W))  # Wᵀ1: never a GEMM with a ones-matrix
        floor = self.eps_r if beta < 2.0 else None  # the reconstruction floor is for β < 2 only
        return MUStatistics(numerator, X.power_products(W, H, beta - 1.0, floor))

    def apply(self, H: torch.Tensor, statistics: MUStatistics):
        denominator = statistics.denominator if statistics.gram is None else statistics.gram @ H
        return multiplicative_step(statistics.numerator, denominator, H, beta=self.beta, l1=self.l1, l2=self.l2), None

    def update(self, X, W: torch.Tensor, H: torch.Tensor):
        """``(H_new, None)``: one multiplicative update of H (H is not modified)."""
        return self.apply(H, self.statistics(X, W, H))


# --- HALS (β = 2) -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HALSStatistics:
    """``A = WᵀX`` (k×n) and ``B = WᵀW`` (k×k), added chunk by chunk."""

    A: torch.Tensor
    B: torch.Tensor
    per_column: ClassVar[tuple[str, ...]] = ("A",)

    def __add__(self, other: "HALSStatistics") -> "HALSStatistics":
        return HALSStatistics(self.A + other.A, self.B + other.B)


@torch.no_grad()
def hals_sweeps_(
    H: torch.Tensor, A: torch.Tensor, B: torch.Tensor, *, l1: float = 0.0, l2: float = 0.0,
    max_sweeps: int = 1, delta: float = 0.1,
) -> int:
    """Coordinate-descent sweeps over the rows of H, in place, given ``A = WᵀX`` and ``B = WᵀW``.

    Row j minimizes ``½‖X − WH‖² + l1·ΣH_j + ½ l2‖H_j‖²`` with the other rows fixed (Cichocki & Phan
    2009): ``H_j ← max(H_j + (A_j − (BH)_j − l1 − l2·H_j) / (B_jj + l2), φ)``. Up to ``max_sweeps``
    sweeps reuse A and B (Gillis & Glineur 2012). **Early stop per column**: each column c of H is its
    own least-squares problem, and it stops after the first sweep s ≥ 2 whose change
    ``‖ΔH_:,c‖² ≤ δ²·‖ΔH_:,c‖²`` of its first sweep, keeping that sweep's values — so the result does not
    depend on how the columns (or, for the W update, the rows of X) are split across blocks, chunks or
    ranks; the fused kernel applies the same rule. Rows of numerically zero terms are left as they are
    (``fastnmf.safeguard.hals_step_sizes``). Returns the number of sweeps done.
    """
    floor = factor_floor(H.dtype)
    # Fold the penalties into the products once: with B' = B + l2·I and A' = A − l1, the row gradient is
    # (B'H)_j − A'_j — one addmv per row instead of four ops (the sweep is launch-bound for small k).
    steps = hals_step_sizes(B, l2).tolist()
    if l2:
        B = B + l2 * torch.eye(B.shape[0], dtype=B.dtype, device=B.device)
    if l1:
        A = A - l1
    if H.device.type == "cpu" and H.is_contiguous() and not H.requires_grad:
        return _numpy_sweeps_(H.numpy(), A.contiguous().numpy(), B.contiguous().numpy(), steps, floor, max_sweeps, delta)
    H_t = H.T
    # Row views made once: indexing A[j], B[j], H[j] inside the loop cost three more launches per row.
    rows = [(H_j, A_j, B_j, step) for H_j, A_j, B_j, step in zip(H.unbind(0), A.unbind(0), B.unbind(0), steps)
            if step != 0.0]
    first_change = active = None
    for sweep in range(1, max_sweeps + 1):
        before = H.clone() if max_sweeps > 1 else None
        for H_j, A_j, B_j, step in rows:
            gradient = torch.addmv(A_j, H_t, B_j, beta=-1.0)  # (B'H)_j − A'_j, rows before j updated
            H_j.sub_(gradient, alpha=step).clamp_min_(floor)
        if before is None:
            return 1
        change = torch.sum((H - before).square(), dim=0, dtype=torch.float64)  # per column
        if first_change is None:
            first_change, active = change, torch.ones_like(change, dtype=torch.bool)
            continue
        H.copy_(torch.where(active, H, before))  # columns stopped earlier keep their values
        active &= change > delta * delta * first_change
        # One host synchronisation per sweep: the price of the early stop on the torch backend.
        if not bool(active.any()):
            return sweep
    return max_sweeps


def _numpy_sweeps_(H, A, B, steps, floor: float, max_sweeps: int, delta: float) -> int:
    """:func:`hals_sweeps_` on numpy views of CPU tensors (H in place; A, B with the penalties folded in): the
    same arithmetic and early stop. The sweep is a chain of small dependent operations, and numpy's cost
    per operation is a fraction of torch's (docs/benchmarks.md, "HALS sweeps on the CPU": one sweep of 16×64
    in 110 µs against 160–220, whole plain-HALS digits iterations 0.53–0.68 ms against 0.66–1.07)."""
    rows = [(H[j], A[j], B[j], step) for j, step in enumerate(steps) if step != 0.0]
    first_change = active = None
    for sweep in range(1, max_sweeps + 1):
        before = H.copy() if max_sweeps > 1 else None
        for H_j, A_j, B_j, step in rows:
            gradient = B_j @ H  # (B'H)_j, rows before j updated
            gradient -= A_j
            gradient *= step
            H_j -= gradient
            np.maximum(H_j, floor, out=H_j)
        if before is None:
            return 1
        change = np.square(H - before).sum(axis=0, dtype=np.float64)  # per column
        if first_change is None:
            first_change, active = change, np.ones(change.shape, dtype=bool)
            continue
        H[...] = np.where(active, H, before)  # columns stopped earlier keep their values
        active &= change > delta * delta * first_change
        if not active.any():
            return sweep
    return max_sweeps


def hals_batched_sweeps_(
    H: torch.Tensor, A: torch.Tensor, B: torch.Tensor, *, l1: float = 0.0, l2: float = 0.0,
    max_sweeps: int = 1, delta: float = 0.1,
) -> None:
    """:func:`hals_sweeps_` for a batch of independent problems of one rank, in place: H and A are b×k×c, B is
    b×k×k. Each problem ends with the values it has swept alone — the early stop is per column, so a problem
    whose columns have all stopped keeps its values while the others go on — with one launch per row for
    the whole batch instead of one per problem (fit_ensemble's HALS: the sweeps are launch-bound at small k).
    Rows of numerically zero terms get a zero step, which leaves them as they are."""
    floor = factor_floor(H.dtype)
    steps = hals_step_sizes(B, l2).unsqueeze(-1)  # b×k×1
    if l2:
        B = B + l2 * torch.eye(B.shape[-1], dtype=B.dtype, device=B.device)
    if l1:
        A = A - l1
    first_change = active = None
    for _ in range(max_sweeps):
        before = H.clone() if max_sweeps > 1 else None
        for j in range(H.shape[1]):
            row = H[:, j:j + 1]
            gradient = torch.baddbmm(A[:, j:j + 1], B[:, j:j + 1], H, beta=-1.0)  # (B'H)_j − A'_j
            row.sub_(gradient.mul_(steps[:, j:j + 1])).clamp_min_(floor)
        if before is None:
            return
        change = torch.sum((H - before).square(), dim=1, dtype=torch.float64)  # b×c: per column
        if first_change is None:
            first_change, active = change, torch.ones_like(change, dtype=torch.bool)
            continue
        H.copy_(torch.where(active.unsqueeze(1), H, before))  # columns stopped earlier keep their values
        active &= change > delta * delta * first_change
        if not bool(active.any()):
            return


def hals_fit(statistics: HALSStatistics, H_new: torch.Tensor) -> torch.Tensor:
    """``−⟨A, H_new⟩ + ½⟨B, H_new H_newᵀ⟩`` (float64) = ``½‖X − W H_new‖² − ½‖X‖²``: the objective of the
    new pair for free, from the products the update already needed (additive over chunks of X's rows)."""
    A, B = statistics.A, statistics.B
    return -torch.sum(A * H_new, dtype=torch.float64) + 0.5 * torch.sum(B * (H_new @ H_new.T), dtype=torch.float64)


class HALSRule:
    """HALS update of H (β = 2; Cichocki & Phan 2009), up to ``max_sweeps`` inner sweeps per product.

    ``fit=True``: ``apply`` also returns ``½‖X − W H_new‖² − ½‖X‖²`` (:func:`hals_fit`; what extrapolation
    decides with), else None — a k×k·n product and two reductions saved per half-update when unused.
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, *, max_sweeps: int = 1, delta: float = 0.1,
                 fit: bool = False):
        self.l1, self.l2, self.max_sweeps, self.delta = float(l1), float(l2), int(max_sweeps), float(delta)
        self.fit = bool(fit)

    def statistics(self, X, W: torch.Tensor, H: torch.Tensor) -> HALSStatistics:
        return HALSStatistics(X.wt_x(W), X.gram(W))

    def sweep(self, H: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """The sweeps on a row-major copy of H (H untouched)."""
        # Row-major, whatever H's layout: the W update's H is Wᵀ, a column-major view, and sweeping its
        # strided rows took 2.5 instead of 1.7 ms per sweep (4000×2000, k=32, 2 cores).
        H_new = H.clone(memory_format=torch.contiguous_format)
        hals_sweeps_(H_new, A.contiguous(), B, l1=self.l1, l2=self.l2, max_sweeps=self.max_sweeps, delta=self.delta)
        return H_new

    def apply(self, H: torch.Tensor, statistics: HALSStatistics):
        H_new = self.sweep(H, statistics.A, statistics.B)
        if H_new.stride() != H.stride():
            H_new = torch.empty_like(H).copy_(H_new)  # back to H's layout (W stays row-major): one k×n copy
        return H_new, hals_fit(statistics, H_new) if self.fit else None

    def update(self, X, W: torch.Tensor, H: torch.Tensor):
        """``(H_new, fit)`` (``fit``: see the class docstring); H is not modified."""
        return self.apply(H, self.statistics(X, W, H))
