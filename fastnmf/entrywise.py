"""The β-divergence entry by entry, for objectives summed over selected entries (sparse X, entry weights).

Same conventions as :func:`fastnmf.losses.beta_divergence` (its sum over all entries equals
``entrywise.divergence(X, R, β).sum()``, tested): β = 2 is half the squared error; the IS term is dropped
where x = 0; ``x^β`` is dropped where x = 0 for β ≤ 0; ``0 · log 0 = 0``. ``R`` must already be floored
(the safeguard rule's ``max(R, eps_r)`` for β < 2). Compute in float64: the general-β formula cancels.
"""

from __future__ import annotations

import torch

__all__ = ["divergence", "zero_data_divergence"]


def divergence(x: torch.Tensor, r: torch.Tensor, beta: float) -> torch.Tensor:
    """``d_β(x | r)`` for each entry (same shape as the broadcast of x and r)."""
    if beta == 2.0:
        return 0.5 * (x - r).square()
    if beta == 1.0:
        return torch.xlogy(x, x / r) - x + r
    positive = x > 0
    if beta == 0.0:
        ratio = torch.where(positive, x, 1.0) / r
        return torch.where(positive, ratio - torch.log(ratio) - 1.0, 0.0)
    x_pow = torch.where(positive, x, 1.0).pow(beta) * positive if beta <= 0 else x.pow(beta)
    return (x_pow + (beta - 1.0) * r.pow(beta) - beta * x * r.pow(beta - 1.0)) / (beta * (beta - 1.0))


def zero_data_divergence(r: torch.Tensor, beta: float) -> torch.Tensor:
    """``d_β(0 | r)`` for each entry: ``r^β / β``, and 0 for Itakura–Saito (its x = 0 terms are dropped)."""
    if beta == 0.0:
        return torch.zeros_like(r)
    if beta == 2.0:
        return 0.5 * r.square()
    if beta == 1.0:
        return r.clone()
    return r.pow(beta) / beta
