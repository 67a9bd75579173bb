"""The one objective: ``D_β(X | WH)`` (or ``Σ M_ij d_β``) for any layout, float64, no m×n temporary.

Summed over the layout's bounded blocks (``Layout.blocks(bounded=True)``) with the one formula of
``fastnmf.losses.divergence``. When the layout has implicit zeros (sparse X), their share is
``Σ_all d_β(0 | r) − Σ_stored d_β(0 | r)``: closed forms for β ∈ {1, 2} (``colsum(W)·rowsum(H)``,
``½⟨WᵀW, HHᵀ⟩``), 0 for Itakura–Saito (its x = 0 terms are dropped), a blocked pass over WH otherwise
(``Layout.zero_divergence_sum``). The reconstruction floor ``eps_r`` applies where the divergence divides
by or raises r to a power (β < 2); at the zeros of X for β = 1 the term is ``(WH)_ij`` itself, unfloored,
which differs from the floored dense objective by at most ``eps_r`` per entry. A sparse X with a few
entries left out (``WeightedMatrix.sparse_complement``) at β ∈ {1, 2}: the sparse objective minus the left-out
entries' terms (``WeightedMatrix.complement_objective``).
"""

from __future__ import annotations

import torch

from .losses import divergence, zero_data_divergence

__all__ = ["objective"]


@torch.no_grad()
def objective(X, W: torch.Tensor, H: torch.Tensor, *, beta: float, eps_r: float) -> torch.Tensor:
    """``D_β(X | WH)`` as a 0-d float64 tensor on X's device (how: module docstring)."""
    beta = float(beta)
    if getattr(X, "sparse_complement", False) and beta in (1.0, 2.0):
        return X.complement_objective(W, H, beta, eps_r)  # O((nnz + holes)·k), not the blocked pass over m·n
    if X.nnz is not None:
        # Stored entries only: float64 costs O(nnz·k), and the zeros' share cancels against the stored one.
        W, H = W.double(), H.double()
    total = torch.zeros((), dtype=torch.float64, device=W.device)
    stored_zero_share = torch.zeros((), dtype=torch.float64, device=W.device)
    for rows, columns, block in X.blocks(bounded=True):
        r = block.reconstruction(W[rows], H[:, columns])
        x = block.x
        if beta not in (0.0, 1.0, 2.0):
            # Powers in float64: x^β and r^β overflow float32 long before the fit does (fuzzing found β = 3
            # with X ~ 4e6 giving an infinite objective), and the general-β formula cancels.
            x, r = x.double(), r.double()
        else:
            x = x.to(r.dtype)
        if beta in (1.0, 2.0) and not X.implicit_zeros:
            total += _divergence_sum_in_place(x, r, beta, eps_r, block.weight)
            continue
        floored = r.clamp_min(eps_r) if beta < 2.0 and eps_r > 0.0 else r
        terms = divergence(x, floored, beta)
        if block.weight is not None:
            terms = terms * block.weight.to(terms.dtype)
        total += _sum_float64(terms)
        if X.implicit_zeros:
            # The closed forms of Layout.zero_divergence_sum use the unfloored r for β ∈ {1, 2}.
            at_zero = r if beta in (1.0, 2.0) else floored
            stored_zero_share += torch.sum(zero_data_divergence(at_zero, beta), dtype=torch.float64)
    if X.implicit_zeros:
        total += X.zero_divergence_sum(W, H, beta, eps_r) - stored_zero_share
    return total


def _sum_float64(terms: torch.Tensor) -> torch.Tensor:
    """``Σ terms`` as float64. Float32 blocks: torch's (cascaded) float32 sums along the last dimension, then
    float64 over those — 1.5e-9 relative to the exact sum at 2000×500, far inside the terms' own float32
    rounding — instead of a float64 copy of the whole block (a fresh 8 MB tensor per objective at 2000×500:
    0.5 ms of page faults in a fit)."""
    if terms.dtype == torch.float32 and terms.dim() == 2:
        return torch.sum(terms.sum(dim=-1), dtype=torch.float64)
    return torch.sum(terms, dtype=torch.float64)


def _divergence_sum_in_place(x, r, beta: float, eps_r: float, weight) -> torch.Tensor:
    """``Σ w·d_β(x | r)`` for β ∈ {1, 2} computed in place on the reconstruction r (consumed, as in
    ``updates.beta_terms``), as float64. No m×n temporaries: each fresh one cost ~1 ms of page faults at
    2000×500 on 2 cores, and torch's xlogy runs 6× slower than a log — the unweighted KL objective took 9.0
    ms there, 3.1 ms this way. The values of ``losses.divergence`` up to the order of the sums."""
    if beta == 2.0:
        terms = r.sub_(x).square_().mul_(0.5)  # ½(r − x)² = ½(x − r)², and ×½ is exact
    else:
        if eps_r > 0.0:
            r.clamp_min_(eps_r)
        if weight is not None:
            terms = divergence(x, r, beta)
        else:
            # x·log(x/r) − x, with x/r = 0 raised to 1 where x = 0 (xlogy's 0·log 0 = 0; adding the mask is 5×
            # faster than masked_fill_), then + Σ r, which keeps the sum non-finite for a NaN or inf in r.
            total_r = _sum_float64(r)
            terms = torch.div(x, r, out=r).add_(x == 0).log_().mul_(x).sub_(x)
            return total_r + _sum_float64(terms)
    if weight is not None:
        terms = terms.mul_(weight.to(terms.dtype))
    return _sum_float64(terms)
