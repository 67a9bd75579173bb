"""Torch backend: the closed-form multiplicative updates (DESIGN.md §2), on any device.

Every update is written for H (the right factor); the W update is the same function applied to the
transposed problem ``Xᵀ ≈ Hᵀ Wᵀ`` with transposed views (``fastnmf.ops.Backend.update_w``).
"""

from __future__ import annotations

import torch

from .losses import factorization_divergence, mu_exponent
from .safeguard import apply_factor_floor_, safe_ratio

__all__ = ["mu_update_h", "objective"]


def _numerator_denominator(X, W, H, beta, eps_r):
    if beta == 2.0:
        # Gram trick: (WᵀW)H with a k×k Gram, never Wᵀ(WH).
        return W.T @ X, (W.T @ W) @ H
    R = W @ H
    if beta < 2.0:
        R.clamp_min_(eps_r)
    if beta == 1.0:
        # The KL denominator is Wᵀ1: a column sum broadcast over the columns, never a GEMM with ones.
        return W.T @ (X / R), W.sum(dim=0).unsqueeze(1)
    if beta == 0.0:
        inverse = R.reciprocal_()  # R^−1, then X·R^−2 = X·(R^−1)²: no pow on the fast path.
        return W.T @ (X * inverse.square()), W.T @ inverse
    return W.T @ (X * R.pow(beta - 2.0)), W.T @ R.pow_(beta - 1.0)


@torch.no_grad()
def mu_update_h(
    X: torch.Tensor,
    W: torch.Tensor,
    H: torch.Tensor,
    *,
    beta: float,
    l1: float = 0.0,
    l2: float = 0.0,
    eps_r: float,
) -> torch.Tensor:
    """One multiplicative update of H for ``X ≈ WH``; returns a new tensor (H is not modified).

    ``H_new = max(H ∘ (num / max(den + l1 + l2·H, tiny))^γ(β), φ)`` with the numerator and denominator of
    DESIGN.md §2 and the safeguard rule of ``fastnmf.safeguard``.
    """
    numerator, denominator = _numerator_denominator(X, W, H, beta, eps_r)
    if l1:
        denominator = denominator + l1
    if l2:
        denominator = denominator + l2 * H
    ratio = safe_ratio(numerator, denominator)
    gamma = mu_exponent(beta)
    if gamma != 1.0:
        ratio.pow_(gamma)
    return apply_factor_floor_(ratio.mul_(H))


@torch.no_grad()
def objective(X: torch.Tensor, W: torch.Tensor, H: torch.Tensor, *, beta: float, eps_r: float) -> torch.Tensor:
    """``D_β(X | WH)`` as a 0-d float64 tensor, over row blocks (no m×n temporary)."""
    return factorization_divergence(X, W, H, beta, eps_r=eps_r)
