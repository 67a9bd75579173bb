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
    k×n with weights), the Hessian diagonal ``(W∘W)ᵀ(m∘x/r²)`` (k×n) and ``Σ_i m_i x_i log r_i`` per column
    (1×n) at the current H."""

    numerator: torch.Tensor
    denominator: torch.Tensor
    curvature: torch.Tensor
    log_fit: torch.Tensor


def _column_sums(block, W_rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``1ᵀV`` (1 × the block's columns) through the block's own product, so one helper serves dense and
    sparse blocks alike (a rank-one ``wt_dot`` costs one pass over the values, like a sum)."""
    return block.wt_dot(W_rows.new_ones((W_rows.shape[0], 1)), values)


def _scratch_like(workspace: Workspace, r: torch.Tensor) -> torch.Tensor:
    """A buffer of r's shape and memory layout (the W update's r is a transposed view), reused per shape."""
    if r.dim() == 2 and r.stride(0) < r.stride(1):
        return workspace.get(r.T.shape, r.dtype, r.device).T
    return workspace.get(r.shape, r.dtype, r.device)


class NewtonKLRule:
    """Diagonalized Newton update of H for the KL divergence, with penalties l1, l2 (module docstring).

    ``scratch``: a :class:`fastnmf.layouts.dense.Workspace` for the one m×n buffer the first pass needs
    besides the reconstruction; the solver shares one between the W and H rules (they run one at a time).
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, *, eps_r: float, scratch: Workspace | None = None):
        self.l1, self.l2, self.eps_r = float(l1), float(l2), float(eps_r)
        self.scratch = Workspace() if scratch is None else scratch

    # --- the first pass -------------------------------------------------------------------------------

    def statistics(self, X, W: torch.Tensor, H: torch.Tensor) -> NewtonStatistics:
        k, n = W.shape[1], H.shape[1]
        numerators, curvatures, log_fits, denominators = [], [], [], []
        for rows, columns, block in X.blocks():
            W_rows = W[rows]
            r = block.reconstruction(W_rows, H[:, columns]).clamp_min_(self.eps_r)
            x = block.x.to(r.dtype)
            weight = None if block.weight is None else block.weight.to(r.dtype)
            values = _scratch_like(self.scratch, r)
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
        denominator = (accumulate_columns(denominators, (k, n), W) if X.weighted else X.column_sums(W))
        return NewtonStatistics(accumulate_columns(numerators, (k, n), W), denominator,
                                accumulate_columns(curvatures, (k, n), W), accumulate_columns(log_fits, (1, n), W))

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

    def column_objective(self, H: torch.Tensor, denominator: torch.Tensor, log_fit: torch.Tensor) -> torch.Tensor:
        """f per column (float64): ``(Wᵀm + l1 + ½ l2 h)·h − log_fit``."""
        H64 = H.double()
        linear = denominator.double() + self.l1
        if self.l2:
            linear = linear + 0.5 * self.l2 * H64
        return (linear * H64).sum(dim=0) - log_fit.double().reshape(-1)

    # --- the second pass ------------------------------------------------------------------------------

    def log_fit(self, X, W: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        """``Σ_i m_i x_i log max((WH)_i, eps_r)`` per column (1×n): f's data term at a candidate H."""
        n = H.shape[1]
        parts = []
        for rows, columns, block in X.blocks():
            W_rows = W[rows]
            values = block.reconstruction(W_rows, H[:, columns]).clamp_min_(self.eps_r).log_()
            values.mul_(block.x.to(values.dtype))
            if block.weight is not None:
                values.mul_(block.weight.to(values.dtype))
            parts.append((columns, _column_sums(block, W_rows, values)))
        return accumulate_columns(parts, (1, n), W)

    def choose(self, H: torch.Tensor, statistics: NewtonStatistics, H_mu: torch.Tensor, H_newton: torch.Tensor,
               newton_log_fit: torch.Tensor) -> torch.Tensor:
        """Per column, Newton where it is below the current f, else MU."""
        s = statistics
        current = self.column_objective(H, s.denominator, s.log_fit)
        newton = self.column_objective(H_newton, s.denominator, newton_log_fit)
        return torch.where((newton < current).unsqueeze(0), H_newton, H_mu)

    def update(self, X, W: torch.Tensor, H: torch.Tensor):
        """``(H_new, None)``: one diagonalized Newton update of H (H is not modified); two passes over X."""
        statistics = self.statistics(X, W, H)
        H_mu, H_newton = self.candidates(H, statistics)
        return self.choose(H, statistics, H_mu, H_newton, self.log_fit(X, W, H_newton)), None
