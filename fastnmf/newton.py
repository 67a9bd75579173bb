"""The diagonalized Newton update for the KL divergence (β = 1), written against the layout primitives.

Van hamme, "The diagonalized Newton algorithm for nonnegative matrix factorization" (ICLR 2013 workshop):
each column h of H (W fixed) minimizes ``f(h) = (Wᵀm)·h − Σ_i m_i x_i log (Wh)_i`` (+ the penalties
``l1·Σh + ½ l2‖h‖²``), with ``m`` the entry weights (1 without weights; ``Wᵀm`` is ``Wᵀ1`` where the
zeros of a sparse X count). Two candidates per column:

- the Newton step with the diagonal of the Hessian,
  ``h_N = max(h − (Wᵀm + l1 + l2 h − Wᵀ(m∘x/r)) / ((W∘W)ᵀ(m∘x/r²) + l2), φ)`` with ``r = max(Wh, eps_r)``;
- the multiplicative (MU) step of ``fastnmf.updates``, which never increases f (it minimizes a majorizer).

The Newton step is kept in the columns where it lowers f below its value at the current h, and the MU step
elsewhere, so the objective never increases — the same guarantee as MU — while most columns take the
much longer Newton step (measured: 40 iterations to 1.01× of the reference on the CPU preset's Poisson
problem against MU's 275; docs/benchmarks.md, "KL solver candidates").

The price is a second pass over X per half-update: ``f(h_N)`` needs ``Σ_i m_i x_i log (W h_N)_i``. The
first pass gives the MU numerator, the curvature and ``f`` at the current h from one reconstruction. Both
passes are sums over the stored entries of each column, so they run on any in-memory layout (dense,
sparse, weighted); layouts that own their pass (streamed chunks, shards) are not offered this solver
(``fastnmf.backends``). f's linear term uses the unfloored ``Wh`` (it is ``(Wᵀm)·h``): the floored
objective differs by at most ``eps_r`` per entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .layouts.base import accumulate_columns
from .layouts.dense import Workspace
from .safeguard import apply_factor_floor_, denominator_floor
from .updates import multiplicative_step

__all__ = ["NewtonStatistics", "NewtonKLRule"]


@dataclass(frozen=True)
class NewtonStatistics:
    """What the first pass gives: the MU numerator ``Wᵀ(m∘x/r)`` (k×n), the denominator ``Wᵀm`` (k×1, or
    k×n with weights) and the Hessian diagonal ``(W∘W)ᵀ(m∘x/r²)`` (k×n) at the current H. For the second
    pass, either r itself (``reconstruction``: X in one stored part, which holds r until then) or, when X
    comes in several parts whose reconstructions share one buffer, ``Σ_i m_i x_i log r_i`` per column
    (``log_fit``, 1×n)."""

    numerator: torch.Tensor
    denominator: torch.Tensor
    curvature: torch.Tensor
    reconstruction: torch.Tensor | None = None
    log_fit: torch.Tensor | None = None


def _column_sums(block, W_rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``1ᵀV`` (1 × the block's columns). A dense block's values are its m×b rectangle: a sum over the rows
    (1.3 ms at 4000×2000 on 2 cores, against 2.0 for a ones-vector product); any other block through its
    own product with a ones column."""
    if values.dim() == 2:
        return values.sum(dim=0, keepdim=True)
    return block.wt_dot(W_rows.new_ones((W_rows.shape[0], 1)), values)


def _scratch_like(workspace: Workspace, r: torch.Tensor) -> torch.Tensor:
    """A buffer of r's shape and memory layout (the W update's r is a transposed view), reused per shape."""
    if r.dim() == 2 and r.stride(0) < r.stride(1):
        return workspace.get(r.T.shape, r.dtype, r.device).T
    return workspace.get(r.shape, r.dtype, r.device)


def _weighted_x(block, dtype: torch.dtype):
    x = block.x.to(dtype)
    return x, None if block.weight is None else block.weight.to(dtype)


class NewtonKLRule:
    """Diagonalized Newton update of H for the KL divergence, with penalties l1, l2 (module docstring).

    ``scratch``: a :class:`fastnmf.layouts.dense.Workspace` for the one m×n buffer the rule needs besides the
    layout's reconstruction; the solver shares one between the W and H rules (they run one at a time).
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, *, eps_r: float, scratch: Workspace | None = None):
        self.l1, self.l2, self.eps_r = float(l1), float(l2), float(eps_r)
        self.scratch = Workspace() if scratch is None else scratch

    # --- the first pass -------------------------------------------------------------------------------

    def statistics(self, X, W: torch.Tensor, H: torch.Tensor) -> NewtonStatistics:
        k, n = W.shape[1], H.shape[1]
        parts = list(X.blocks())
        keep = len(parts) == 1  # r stays valid until the second pass: nothing else writes its buffer
        numerators, curvatures, log_fits, denominators = [], [], [], []
        r = None
        for rows, columns, block in parts:
            W_rows = W[rows]
            r = block.reconstruction(W_rows, H[:, columns]).clamp_min_(self.eps_r)
            x, weight = _weighted_x(block, r.dtype)
            values = _scratch_like(self.scratch, r)
            if not keep:
                torch.log(r, out=values).mul_(x)
                if weight is not None:
                    values.mul_(weight)
                log_fits.append((columns, _column_sums(block, W_rows, values)))
            torch.div(x, r, out=values)
            if weight is not None:
                values.mul_(weight)
                denominators.append((columns, block.wt_dot(W_rows, weight)))
            numerators.append((columns, block.wt_dot(W_rows, values)))
            curvatures.append((columns, block.wt_dot(W_rows.square(), values.div_(r))))
        denominator = accumulate_columns(denominators, (k, n), W) if X.weighted else X.column_sums(W)
        return NewtonStatistics(accumulate_columns(numerators, (k, n), W), denominator,
                                accumulate_columns(curvatures, (k, n), W),
                                reconstruction=r if keep else None,
                                log_fit=None if keep else accumulate_columns(log_fits, (1, n), W))

    # --- the candidates (no pass over X) ------------------------------------------------------------------

    def candidates(self, H: torch.Tensor, statistics: NewtonStatistics) -> tuple[torch.Tensor, torch.Tensor]:
        """``(H_MU, H_Newton)``. Where the curvature is numerically zero (no data under a column of W) or the
        step is not finite, the Newton candidate is the MU one."""
        s = statistics
        H_mu = multiplicative_step(s.numerator, s.denominator, H, beta=1.0, l1=self.l1, l2=self.l2)
        gradient = s.denominator + self.l1 - s.numerator
        if self.l2:
            gradient = gradient + self.l2 * H
        curvature = s.curvature + self.l2 if self.l2 else s.curvature
        usable = curvature > denominator_floor(curvature.dtype)
        H_newton = H - gradient / torch.where(usable, curvature, 1.0)
        H_newton = torch.where(usable & torch.isfinite(H_newton), H_newton, H_mu)
        return H_mu, apply_factor_floor_(H_newton)

    # --- the second pass ------------------------------------------------------------------------------

    def log_gain(self, X, W: torch.Tensor, H_trial: torch.Tensor, statistics: NewtonStatistics) -> torch.Tensor:
        """``Σ_i m_i x_i (log r'_i − log r_i)`` per column (1×n, float64), r' = max(W H_trial, eps_r): how much
        f's data term drops from the current H to ``H_trial``. From the kept r, as the log of one ratio (no
        cancellation between two large sums); else as the difference of the two sums."""
        n = H_trial.shape[1]
        parts = []
        for rows, columns, block in X.blocks():
            W_rows = W[rows]
            # Into the rule's scratch: the layout's buffer still holds the kept r.
            values = block.reconstruction(W_rows, H_trial[:, columns], self.scratch).clamp_min_(self.eps_r)
            if statistics.reconstruction is not None:
                values.div_(statistics.reconstruction)
            values.log_()
            x, weight = _weighted_x(block, values.dtype)
            values.mul_(x)
            if weight is not None:
                values.mul_(weight)
            parts.append((columns, _column_sums(block, W_rows, values)))
        gain = accumulate_columns(parts, (1, n), W).double()
        return gain if statistics.log_fit is None else gain - statistics.log_fit.double()

    def linear_change(self, H: torch.Tensor, H_trial: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
        """The change of f's other terms, ``(Wᵀm + l1)·(h' − h) + ½ l2 (‖h'‖² − ‖h‖²)`` per column (float64)."""
        H64, trial64 = H.double(), H_trial.double()
        change = ((denominator.double() + self.l1) * (trial64 - H64)).sum(dim=0)
        if self.l2:
            change = change + 0.5 * self.l2 * (trial64.square() - H64.square()).sum(dim=0)
        return change

    def choose(self, H: torch.Tensor, statistics: NewtonStatistics, H_mu: torch.Tensor, H_newton: torch.Tensor,
               log_gain: torch.Tensor) -> torch.Tensor:
        """Per column, Newton where it lowers f (its change is negative), else MU."""
        change = self.linear_change(H, H_newton, statistics.denominator) - log_gain.reshape(-1)
        return torch.where((change < 0).unsqueeze(0), H_newton, H_mu)

    def update(self, X, W: torch.Tensor, H: torch.Tensor):
        """``(H_new, None)``: one diagonalized Newton update of H (H is not modified); two passes over X."""
        statistics = self.statistics(X, W, H)
        H_mu, H_newton = self.candidates(H, statistics)
        return self.choose(H, statistics, H_mu, H_newton, self.log_gain(X, W, H_newton, statistics)), None
