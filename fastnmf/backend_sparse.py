"""Torch backend for sparse X (:class:`fastnmf.sparse.SparseMatrix`), on any device.

The closed forms of DESIGN.md §2 with sparse products; memory stays O(nnz + (m+n)·k): no m×n array, only
bounded blocks (``fastnmf.sparse.BLOCK_ENTRIES`` = 2²² entries) where every entry must be visited.
Costs of one H update (the W update is the same on ``Xᵀ``), nnz = stored entries of X:

==========  ======================================  ==============================  =====================
β           numerator                               denominator                     flops
==========  ======================================  ==============================  =====================
2           ``WᵀX`` (SpMM)                          ``(WᵀW)H`` (k×k Gram)           2·nnz·k + 2(m+n)k²
1           ``Wᵀ(X / WH)`` (SDDMM + SpMM)           ``colsum(W)``                   4·nnz·k
other       ``Wᵀ(X ∘ (WH)^(β−2))`` (SDDMM + SpMM)   ``Wᵀ(WH)^(β−1)``, dense blocks  4·nnz·k + 4·m·n·k
==========  ======================================  ==============================  =====================

For β ∉ {1, 2} the zeros of X still weigh in the denominator through ``(WH)^(β−1)`` (and in the objective
through ``(WH)^β``), so those updates visit all m·n entries of WH, one m×b block of columns at a time
(``WH`` block → floor → power → ``Wᵀ·``): the cost of a dense update, without its m×n memory.

The objective, in float64 (every check):

- β = 2: ``½‖X‖² − ⟨X, WH⟩ + ½⟨WᵀW, HHᵀ⟩`` — the cross term at the stored entries (SDDMM), the Grams and
  all products in float64, because the three terms cancel when the fit is good;
- β = 1: ``Σ_stored (x log(x/r) − x + r) + colsum(W)·rowsum(H) − Σ_stored (WH)`` — the sum of WH from the
  column and row sums. The reconstruction floor is applied at the stored entries only: at the zeros of X
  the term is ``(WH)_ij`` itself, which differs from the floored dense objective by at most ``eps_r`` per
  entry;
- β = 0 (Itakura–Saito): the stored entries only (its x = 0 terms are dropped, ``fastnmf.losses``);
- other β: the stored entries, plus ``Σ (WH)^β / β`` over the zeros of X (a dense pass over blocks).
"""

from __future__ import annotations

import torch

from . import backend_torch
from .entrywise import divergence, zero_data_divergence
from .sparse import SparseMatrix, column_blocks

__all__ = ["mu_update_h", "objective", "hals_update_h", "power_products", "power_sum"]


def power_products(W: torch.Tensor, H: torch.Tensor, exponent: float, eps_r: float | None) -> torch.Tensor:
    """``Wᵀ max(WH, eps_r)^exponent`` (k×n) over column blocks of WH: 4·m·n·k flops, m×b memory.
    ``eps_r=None``: no reconstruction floor (β > 2, as in ``backend_torch``)."""
    m, n = W.shape[0], H.shape[1]
    out = torch.empty(H.shape, dtype=H.dtype, device=H.device)
    for block in column_blocks(m, n):
        R = W @ H[:, block]
        if eps_r is not None:
            R.clamp_min_(eps_r)
        out[:, block] = W.T @ (R.reciprocal_() if exponent == -1.0 else R.pow_(exponent))
    return out


def power_sum(W: torch.Tensor, H: torch.Tensor, beta: float, eps_r: float) -> torch.Tensor:
    """``Σ d_β(0 | max(WH, eps_r))`` over all m·n entries, float64, over column blocks of WH."""
    m, n = W.shape[0], H.shape[1]
    total = torch.zeros((), dtype=torch.float64, device=W.device)
    for block in column_blocks(m, n):
        # WH in the factors' dtype, then float64 for the powers — as fastnmf.losses does.
        R = (W @ H[:, block]).double()
        if beta < 2.0:
            R.clamp_min_(eps_r)
        total += zero_data_divergence(R, beta).sum()
    return total


def _numerator_denominator(X: SparseMatrix, W, H, beta, eps_r):
    if beta == 2.0:
        return X.left_product(W), (W.T @ W) @ H
    r = X.sampled_product(W, H)
    if beta < 2.0:
        r.clamp_min_(eps_r)
    x = X.values.to(r.dtype)
    if beta == 1.0:
        return X.left_product(W, x / r), W.sum(dim=0).unsqueeze(1)
    if beta == 0.0:
        inverse = r.reciprocal_()
        return X.left_product(W, x * inverse.square()), power_products(W, H, -1.0, eps_r)
    floor = eps_r if beta < 2.0 else None  # the safeguard's reconstruction floor is for β < 2 only
    return X.left_product(W, x * r.pow(beta - 2.0)), power_products(W, H, beta - 1.0, floor)


@torch.no_grad()
def mu_update_h(X: SparseMatrix, W, H, *, beta: float, l1: float = 0.0, l2: float = 0.0, eps_r: float):
    """One multiplicative update of H for sparse ``X ≈ WH``; a new tensor (costs: module docstring)."""
    numerator, denominator = _numerator_denominator(X, W, H, beta, eps_r)
    return backend_torch.multiplicative_step(numerator, denominator, H, beta=beta, l1=l1, l2=l2)


@torch.no_grad()
def objective(X: SparseMatrix, W, H, *, beta: float, eps_r: float) -> torch.Tensor:
    """``D_β(X | WH)`` as a 0-d float64 tensor (how, per β: module docstring)."""
    W64, H64 = W.double(), H.double()
    x = X.values.double()
    if beta == 2.0:
        cross = torch.dot(x, X.sampled_product(W64, H64))
        reconstruction = torch.sum((W64.T @ W64) * (H64 @ H64.T))
        return 0.5 * X.squared_norm() - cross + 0.5 * reconstruction
    r = X.sampled_product(W64, H64)
    r_floored = r.clamp_min(eps_r) if beta < 2.0 else r
    stored = divergence(x, r_floored, beta)
    if beta == 0.0:
        return stored.sum()
    if beta == 1.0:
        # Σ over the zeros of X of (WH)_ij = Σ_all WH − Σ_stored WH, with Σ_all WH = colsum(W)·rowsum(H).
        everything = torch.dot(W64.sum(dim=0), H64.sum(dim=1))
        return stored.sum() + everything - r.sum()
    zeros = power_sum(W, H, beta, eps_r) - zero_data_divergence(r_floored, beta).sum()
    return stored.sum() + zeros


@torch.no_grad()
def hals_update_h(X: SparseMatrix, W, H, *, l1: float = 0.0, l2: float = 0.0, max_sweeps: int = 1, delta: float = 0.1):
    """HALS update of H for sparse ``X ≈ WH`` (β = 2): the sweeps of ``backend_torch.hals_sweeps_`` on
    ``A = WᵀX`` (SpMM) and ``B = WᵀW``; returns ``(H_new, ½‖X − W H_new‖² − ½‖X‖²)`` like the dense one."""
    A = X.left_product(W).contiguous()
    B = W.T @ W
    H_new = H.clone()
    backend_torch.hals_sweeps_(H_new, A, B, l1=l1, l2=l2, max_sweeps=max_sweeps, delta=delta)
    fit = -torch.sum(A * H_new, dtype=torch.float64) + 0.5 * torch.sum(B * (H_new @ H_new.T), dtype=torch.float64)
    return H_new, fit
