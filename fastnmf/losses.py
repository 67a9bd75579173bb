"""The β-divergence family, the MU exponent, and the regularization penalty (plain PyTorch).

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
    "beta_divergence",
    "factorization_divergence",
    "regularization_penalty",
]

BETA_LOSS_NAMES = {"frobenius": 2.0, "kullback-leibler": 1.0, "itakura-saito": 0.0}

# Row blocks of the reconstruction are formed this many entries at a time (32 MiB in float64), so the
# objective never needs an m×n temporary.
_OBJECTIVE_BLOCK_ENTRIES = 1 << 22


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


def beta_divergence(X: torch.Tensor, R: torch.Tensor, beta: float, *, eps_r: float = 0.0) -> torch.Tensor:
    """``D_β(X | R) = Σ d_β(X_ij | R_ij)`` as a 0-d float64 tensor on X's device.

    ``eps_r`` > 0 applies the reconstruction floor of the safeguard rule (``R ← max(R, eps_r)`` for β < 2).
    """
    if eps_r > 0.0 and beta < 2.0:
        R = R.clamp_min(eps_r)
    X = X.to(R.dtype)
    if beta == 2.0:
        return 0.5 * torch.sum((X - R).square(), dtype=torch.float64)
    positive = X > 0
    if beta == 1.0:
        # Σ x log(x/r) − x + r; xlogy gives 0 · log 0 = 0.
        return torch.sum(torch.xlogy(X, X / R) - X + R, dtype=torch.float64)
    if beta == 0.0:
        ratio = X[positive] / R[positive]
        return torch.sum(ratio - torch.log(ratio) - 1.0, dtype=torch.float64)
    x_pow = torch.where(positive, X, 1.0).pow(beta) * positive if beta <= 0 else X.pow(beta)
    terms = x_pow + (beta - 1.0) * R.pow(beta) - beta * X * R.pow(beta - 1.0)
    return torch.sum(terms, dtype=torch.float64) / (beta * (beta - 1.0))


def factorization_divergence(
    X: torch.Tensor, W: torch.Tensor, H: torch.Tensor, beta: float, *, eps_r: float = 0.0
) -> torch.Tensor:
    """``D_β(X | WH)`` computed over row blocks of ``WH``: never an m×n temporary, exact (no cancellation)."""
    m, n = X.shape
    rows = max(1, _OBJECTIVE_BLOCK_ENTRIES // max(n, 1))
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    for start in range(0, m, rows):
        block = slice(start, start + rows)
        if beta == 2.0:
            # X − WH in one GEMM call (addmm with alpha=−1): one temporary per block instead of three.
            residual = torch.addmm(X[block].to(W.dtype), W[block], H, alpha=-1.0)
            total += 0.5 * torch.linalg.vector_norm(residual, dtype=torch.float64).square()
        elif beta in (0.0, 1.0):
            # Ratios and logs stay in range: data far from 1 is rescaled first (fastnmf.scaling).
            total += beta_divergence(X[block], W[block] @ H, beta, eps_r=eps_r)
        else:
            # Powers in float64: x^β and r^β overflow float32 long before the fit does (fuzzing found
            # β = 3 with X ~ 4e6 giving an infinite objective), and the general-β formula cancels.
            total += beta_divergence(X[block].double(), (W[block] @ H).double(), beta, eps_r=eps_r)
    return total


def regularization_penalty(
    W: torch.Tensor, H: torch.Tensor, l1_w: float, l2_w: float, l1_h: float, l2_h: float
) -> torch.Tensor:
    """``l1_w‖W‖₁ + ½ l2_w‖W‖² + l1_h‖H‖₁ + ½ l2_h‖H‖²`` (factors are non-negative, so ‖·‖₁ is a sum).

    The ½ makes its gradient ``l2·W``, which is exactly what the MU denominator adds (scikit-learn's rule).
    """
    total = torch.zeros((), dtype=torch.float64, device=W.device)
    for factor, l1, l2 in ((W, l1_w, l2_w), (H, l1_h, l2_h)):
        if l1:
            total += l1 * factor.sum(dtype=torch.float64)
        if l2:
            total += 0.5 * l2 * factor.square().sum(dtype=torch.float64)
    return total
