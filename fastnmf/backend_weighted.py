"""Torch backend for weighted β-NMF (entry weights, missing values), on any device.

Minimizes ``Σ_ij M_ij d_β(X_ij | (WH)_ij)`` for data prepared by :func:`fastnmf.weights.weighted_data`.
The multiplicative update of H is the gradient split of DESIGN.md §2 with the weights inside:

.. math::  H ← H ∘ \\left( \\frac{W^T (M ∘ X ∘ (WH)^{β-2})}{W^T (M ∘ (WH)^{β-1})} \\right)^{γ(β)}

(for β = 2 the denominator is ``Wᵀ(M ∘ WH)``: the weights break the Gram trick), with the safeguard rule of
``fastnmf.safeguard`` (reconstruction floor for β < 2, denominator floor, factor floor) — the same rule as
every other backend. For β = 1 the denominator ``WᵀM`` needs no reconstruction. As with every
majorization–minimization MU, the weighted objective never increases.

Two ways to evaluate it, chosen by the kind of weights:

- sparse weights (a pattern of nnz entries, X kept at the pattern): ``WH`` at the pattern (SDDMM), then two
  sparse–dense products — 6·nnz·k flops per half update, memory O(nnz + (m+n)k);
- dense weights (a tensor, or all-ones-but-missing for a sparse X): m×b column blocks of ``WH``, ``X`` and
  ``M`` (``fastnmf.sparse.BLOCK_ENTRIES`` entries each) — 6·m·n·k flops per half update, never an m×n
  temporary.

The objective is summed in float64 over the same entries (``fastnmf.entrywise``, the conventions of
``fastnmf.losses``). HALS has no weighted form here: ``solver="hals"`` with weights is refused upstream.
"""

from __future__ import annotations

import torch

from .backend_torch import multiplicative_step
from .entrywise import divergence
from .ops import Backend
from .sparse import column_blocks
from .weights import WeightedMatrix

__all__ = ["mu_update_h", "objective", "numerator_denominator", "BACKEND"]


def _pattern_parts(X: WeightedMatrix, W, H, beta, eps_r):
    S = X.X
    r = S.sampled_product(W, H)
    if beta < 2.0:
        r.clamp_min_(eps_r)
    x, m = S.values.to(r.dtype), X.M.values.to(r.dtype)
    if beta == 2.0:
        return S.left_product(W, m * x), S.left_product(W, m * r)
    if beta == 1.0:
        return S.left_product(W, m * x / r), S.left_product(W, m)
    return S.left_product(W, m * x * r.pow(beta - 2.0)), S.left_product(W, m * r.pow(beta - 1.0))


def _block_parts(X: WeightedMatrix, W, H, beta, eps_r):
    m, n = X.shape
    numerator = torch.empty(H.shape, dtype=H.dtype, device=H.device)
    denominator = torch.empty(H.shape, dtype=H.dtype, device=H.device)
    for block in column_blocks(m, n):
        X_block, M_block = X.column_block(block, W.dtype)
        R = W @ H[:, block]
        if beta < 2.0:
            R.clamp_min_(eps_r)
        if beta == 2.0:
            data, model = M_block * X_block, M_block * R
        elif beta == 1.0:
            data, model = M_block * X_block / R, M_block
        else:
            data, model = M_block * X_block * R.pow(beta - 2.0), M_block * R.pow(beta - 1.0)
        numerator[:, block] = W.T @ data
        denominator[:, block] = W.T @ model
    return numerator, denominator


def numerator_denominator(X: WeightedMatrix, W, H, *, beta: float, eps_r: float):
    """``(Wᵀ(M∘X∘R^(β−2)), Wᵀ(M∘R^(β−1)))`` with ``R = max(WH, eps_r)`` (floor for β < 2 only)."""
    parts = _pattern_parts if X.on_pattern else _block_parts
    return parts(X, W, H, float(beta), eps_r)


@torch.no_grad()
def mu_update_h(X: WeightedMatrix, W, H, *, beta: float, l1: float = 0.0, l2: float = 0.0, eps_r: float):
    """One weighted multiplicative update of H for ``X ≈ WH``; a new tensor (costs: module docstring)."""
    numerator, denominator = numerator_denominator(X, W, H, beta=beta, eps_r=eps_r)
    return multiplicative_step(numerator, denominator, H, beta=beta, l1=l1, l2=l2)


@torch.no_grad()
def objective(X: WeightedMatrix, W, H, *, beta: float, eps_r: float) -> torch.Tensor:
    """``Σ M_ij d_β(X_ij | (WH)_ij)`` as a 0-d float64 tensor."""
    if X.on_pattern:
        r = X.X.sampled_product(W.double(), H.double())
        if beta < 2.0:
            r.clamp_min_(eps_r)
        return torch.sum(X.M.values.double() * divergence(X.X.values.double(), r, beta))
    m, n = X.shape
    total = torch.zeros((), dtype=torch.float64, device=W.device)
    for block in column_blocks(m, n):
        X_block, M_block = X.column_block(block, torch.float64)
        # WH in the factors' dtype, then float64 for the powers — as fastnmf.losses does.
        R = (W @ H[:, block]).double()
        if beta < 2.0:
            R.clamp_min_(eps_r)
        total += torch.sum(M_block * divergence(X_block, R, beta))
    return total


def _no_weighted_hals(*args, **kwargs):
    raise ValueError("HALS has no weighted form in fastnmf: use solver='mu' with entry weights or missing values.")


BACKEND = Backend("torch-weighted", mu_update_h, objective, hals_update_h=_no_weighted_hals)
