"""The executable specification: multiplicative updates from autograd, for any non-negative model.

This answers the question fastnmf started from (docs/maths.md, section "The gradient split, and why it
gives the multiplicative update"): Lee & Seung's rule needs the positive and negative parts of the loss
gradient separately, and autograd can give them.

For the β-divergence ``D_β(X | R)`` with ``R = reconstruct(*factors)``,

.. math::  \\partial D / \\partial R = R^{β-1} - X \\circ R^{β-2} = P - N,  \\qquad P, N \\ge 0.

Back-propagating ``P`` and ``N`` through the reconstruction *separately* (two vector–Jacobian products)
gives, for every factor θ, ``∇⁺ = J_θᵀ P`` and ``∇⁻ = J_θᵀ N``; both are ≥ 0 when the model is
multilinear in non-negative factors (NMF, convolutive NMF, CP/Tucker tensors). The update is
``θ ← θ ∘ (∇⁻ / ∇⁺)^γ(β)`` (Févotte & Idier 2011); for β = 2 and ``R = WH`` it is exactly Lee & Seung's
``H ← H ∘ WᵀX / (WᵀW H)``. No matrix product is derived by hand, so the same code serves every model.

Entry weights M (weighted β-NMF, missing values as weight 0) enter through the same split: the gradient of
``Σ M_ij d_β(X_ij | R_ij)`` is ``M ∘ P − M ∘ N``, so back-propagating ``M ∘ P`` and ``M ∘ N`` gives the
weighted numerator and denominator (e.g. ``Wᵀ(M ∘ X)`` over ``Wᵀ(M ∘ WH)`` for β = 2).

Slow on purpose and at home in float64 on the CPU; the torch and Triton backends are tested against it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .losses import beta_divergence, mu_exponent
from .safeguard import apply_factor_floor_, reconstruction_floor, safe_ratio

__all__ = [
    "gradient_parts",
    "multiplicative_update",
    "beta_divergence",
    "reconstruct_nmf",
    "reconstruct_nmfd",
    "reconstruct_cp",
]

Reconstruction = Callable[..., torch.Tensor]


def _default_eps_r(X: torch.Tensor) -> float:
    return reconstruction_floor(float(X.max()) if X.numel() else 0.0, X.dtype)


def _parts(reconstruct, factors, X, beta, eps_r, wanted, weights=None):
    leaves = [f.detach().requires_grad_(True) for f in factors]
    with torch.enable_grad():
        R = reconstruct(*leaves)
    if R.shape != X.shape:
        raise ValueError(f"reconstruct(*factors) has shape {tuple(R.shape)} but X has shape {tuple(X.shape)}.")
    if weights is not None and weights.shape != X.shape:
        raise ValueError(f"weights has shape {tuple(weights.shape)} but X has shape {tuple(X.shape)}.")
    if weights is not None:
        X = torch.where(weights > 0, X, 0.0)  # an entry of weight 0 counts for nothing, whatever X holds
    if eps_r is None:
        eps_r = _default_eps_r(X)
    R_safe = R.detach().clamp_min(eps_r) if beta < 2.0 else R.detach()
    positive = R_safe.pow(beta - 1.0)  # P = R^(β−1): back-propagates to ∇⁺ (the denominator)
    negative = X * R_safe.pow(beta - 2.0)  # N = X ∘ R^(β−2): back-propagates to ∇⁻ (the numerator)
    if weights is not None:
        positive, negative = weights * positive, weights * negative
    inputs = [leaves[i] for i in wanted]
    grad_pos = torch.autograd.grad(R, inputs, grad_outputs=positive, retain_graph=True, allow_unused=True)
    grad_neg = torch.autograd.grad(R, inputs, grad_outputs=negative, allow_unused=True)
    parts = []
    for leaf, neg, pos in zip(inputs, grad_neg, grad_pos):
        # A factor that R does not depend on has zero gradient parts.
        neg = torch.zeros_like(leaf) if neg is None else neg
        pos = torch.zeros_like(leaf) if pos is None else pos
        parts.append((neg, pos))
    return parts


def gradient_parts(
    reconstruct: Reconstruction,
    factors: Sequence[torch.Tensor],
    X: torch.Tensor,
    beta: float,
    *,
    eps_r: float | None = None,
    weights: torch.Tensor | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each factor, ``(numerator, denominator) = (∇⁻, ∇⁺)`` of ``∂D_β(X | reconstruct(*factors))``
    (of ``∂ Σ M_ij d_β(X_ij | R_ij)`` with ``weights`` M).

    Parameters
    ----------
    reconstruct : callable
        ``R = reconstruct(*factors)``, differentiable, with ``R.shape == X.shape``.
    factors : sequence of tensors
        Non-negative factors (not modified).
    X : tensor
        Non-negative data.
    beta : float
        β of the divergence (2 Frobenius, 1 KL, 0 Itakura–Saito, any real).
    eps_r : float, optional
        Reconstruction floor of the safeguard rule (``fastnmf.safeguard``); default ``eps(dtype)·max(X)``
        (over the entries of positive weight).
    weights : tensor, optional
        Non-negative entry weights M of X's shape: ``M ∘ P`` and ``M ∘ N`` are back-propagated. Entries of
        weight 0 are ignored, whatever X holds there.
    """
    return _parts(reconstruct, factors, X, float(beta), eps_r, range(len(factors)), weights)


@torch.no_grad()
def multiplicative_update(
    reconstruct: Reconstruction,
    factors: Sequence[torch.Tensor],
    X: torch.Tensor,
    beta: float,
    index: int,
    *,
    l1: float = 0.0,
    l2: float = 0.0,
    eps_r: float | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Update ``factors[index]`` **in place** with ``θ ← max(θ ∘ (∇⁻ / (∇⁺ + l1 + l2·θ))^γ(β), φ)``.

    ``l1``/``l2`` are the L1 and L2 penalty weights of this factor (penalty ``l1‖θ‖₁ + ½ l2‖θ‖²``);
    the division and the floor ``φ`` follow the safeguard rule (``fastnmf.safeguard``); ``weights`` as in
    :func:`gradient_parts`. Returns the factor.
    """
    theta = factors[index]
    (numerator, denominator), = _parts(reconstruct, factors, X, float(beta), eps_r, [index], weights)
    if l1:
        denominator = denominator + l1
    if l2:
        denominator = denominator + l2 * theta
    ratio = safe_ratio(numerator, denominator)
    gamma = mu_exponent(float(beta))
    if gamma != 1.0:
        ratio = ratio.pow(gamma)
    theta.mul_(ratio)
    return apply_factor_floor_(theta)


# --- Models the reference is demonstrated and tested on ------------------------------------------------


def reconstruct_nmf(W: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """Plain NMF: ``R = W H`` with W (m×k), H (k×n)."""
    return W @ H


def reconstruct_nmfd(W: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """Convolutive NMF (NMFD, Smaragdis 2004): ``R = Σ_t W_t · shift(H, t)``.

    W has shape (T, m, k) — one m×k basis per lag — and H (k, n); ``shift(H, t)`` moves the columns of H
    t places to the right, filling with zeros.
    """
    n = H.shape[1]
    R = W[0] @ H
    for t in range(1, W.shape[0]):
        if t >= n:
            break
        R = R + torch.nn.functional.pad(W[t] @ H[:, : n - t], (t, 0))
    return R


def reconstruct_cp(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Rank-k CP (PARAFAC) model of a 3-way tensor: ``R_ijl = Σ_r A_ir B_jr C_lr``."""
    return torch.einsum("ir,jr,lr->ijl", A, B, C)
