"""The β-divergence family and the MU exponent (plain PyTorch): the one place the formulas live.

Conventions follow scikit-learn (``sklearn/decomposition/_nmf.py``): β = 2 is *half* the squared
Frobenius norm, β = 1 is the generalized Kullback–Leibler divergence, β = 0 is Itakura–Saito.
Terms that are infinite or undefined at ``x = 0`` (``x^β`` for β ≤ 0, and all of IS) are dropped for the
zero entries of X, as scikit-learn does; ``0 · log 0 = 0``.
"""

from __future__ import annotations

import math
from numbers import Real

import torch

__all__ = [
    "BETA_LOSS_NAMES",
    "parse_beta_loss",
    "mu_exponent",
    "divergence",
    "zero_data_divergence",
    "beta_divergence",
]

BETA_LOSS_NAMES = {"frobenius": 2.0, "kullback-leibler": 1.0, "itakura-saito": 0.0}

def parse_beta_loss(beta_loss) -> float:
    """Map ``"frobenius" | "kullback-leibler" | "itakura-saito" | real number`` to β."""
    if isinstance(beta_loss, str):
        if beta_loss not in BETA_LOSS_NAMES:
            raise ValueError(
                f"Invalid beta_loss {beta_loss!r}: expected one of {sorted(BETA_LOSS_NAMES)} or a real number."
            )
        return BETA_LOSS_NAMES[beta_loss]
    if isinstance(beta_loss, Real) and not isinstance(beta_loss, bool) and math.isfinite(float(beta_loss)):
        return float(beta_loss)
    raise ValueError(
        f"Invalid beta_loss {beta_loss!r}: expected one of {sorted(BETA_LOSS_NAMES)} or a finite real number."
    )


def mu_exponent(beta: float) -> float:
    """γ(β) of the multiplicative update ``θ ← θ ∘ (∇⁻/∇⁺)^γ`` (Févotte & Idier 2011, Table 2)."""
    if beta < 1.0:
        return 1.0 / (2.0 - beta)
    if beta > 2.0:
        return 1.0 / (beta - 1.0)
    return 1.0


def divergence(x: torch.Tensor, r: torch.Tensor, beta: float) -> torch.Tensor:
    """``d_β(x | r)`` entry by entry (the broadcast shape of x and r); r already floored where needed.

    The one formula of the family: every objective (dense, sparse, weighted, the kernels' tests) sums it.
    Compute in float64 for β ∉ {0, 1, 2}: the general formula cancels.
    """
    if beta == 2.0:
        return 0.5 * (x - r).square()
    if beta == 1.0:
        # x log(x/r) − x + r; xlogy gives 0 · log 0 = 0.
        return torch.xlogy(x, x / r) - x + r
    positive = x > 0
    if beta == 0.0:
        ratio = torch.where(positive, x, 1.0) / r
        return torch.where(positive, ratio - torch.log(ratio) - 1.0, 0.0)
    x_pow = torch.where(positive, x, 1.0).pow(beta) * positive if beta <= 0 else x.pow(beta)
    return (x_pow + (beta - 1.0) * r.pow(beta) - beta * x * r.pow(beta - 1.0)) / (beta * (beta - 1.0))


def zero_data_divergence(r: torch.Tensor, beta: float) -> torch.Tensor:
    """``d_β(0 | r)`` entry by entry: ``r^β / β``, and 0 for Itakura–Saito (its x = 0 terms are dropped)."""
    if beta == 0.0:
        return torch.zeros_like(r)
    if beta == 2.0:
        return 0.5 * r.square()
    if beta == 1.0:
        return r.clone()
    return r.pow(beta) / beta


def beta_divergence(X: torch.Tensor, R: torch.Tensor, beta: float, *, eps_r: float = 0.0) -> torch.Tensor:
    """``D_β(X | R) = Σ d_β(X_ij | R_ij)`` as a 0-d float64 tensor on X's device.

    ``eps_r`` > 0 applies the reconstruction floor of the safeguard rule (``R ← max(R, eps_r)`` for β < 2).
    """
    if eps_r > 0.0 and beta < 2.0:
        R = R.clamp_min(eps_r)
    return torch.sum(divergence(X.to(R.dtype), R, beta), dtype=torch.float64)
