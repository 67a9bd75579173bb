"""The one safeguard rule for zeros and divisions.

Every layer (the autograd reference, the torch backend, the Triton kernels) applies exactly this rule,
so their results agree to rounding. The rule has three parts:

1. **Reconstruction floor.** Wherever the reconstruction ``R = WH`` is divided by or raised to a power
   (all β < 2), it is replaced by ``max(R, eps_r)`` with ``eps_r = eps(dtype) · max(X)``: relative to the
   data, so the rule does not depend on the units of X.
2. **Denominator floor.** Every multiplicative-update denominator (Grams, column/row sums, β powers,
   plus the L1/L2 terms) is replaced by ``max(den, tiny(dtype))`` before dividing. A denominator is 0
   only when a whole column of W (or row of H) is 0, and then its numerator is 0 as well, so the ratio
   is 0 — never 0/0.
3. **Factor floor.** After every update (and after initialization) each factor entry is raised to at
   least ``phi = sqrt(tiny(dtype))`` (1.1e-19 in float32, 1.5e-154 in float64). Entries are never 0 and
   never subnormal: subnormal operands make x86 arithmetic 5–22× slower (measured on the digits data,
   where MU drives 22–30 % of all entries toward 0), and a positive lower bound is what makes MU provably
   convergent (Gillis & Glineur 2008, "Nonnegative factorization and the maximum edge biclique
   problem"). Clamping the MM minimizer to ``[phi, ∞)`` keeps the objective non-increasing, because the
   MM auxiliary function is convex and separable in each entry.

HALS (coordinate descent, β = 2) divides by the curvature ``B_jj + l2`` of each rank-one term instead of
an MU denominator; the same idea gives its rule (:func:`hals_step_sizes`): a term whose curvature is below
``max(eps(dtype) · max_j B_jj, tiny/eps)`` (a column of W at the floor φ, say) is numerically zero, so its
row is left as it is instead of being divided by ~φ² — which would send it to ~1/φ and overflow the next Gram.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "factor_floor",
    "denominator_floor",
    "reconstruction_floor",
    "safe_ratio",
    "apply_factor_floor_",
    "hals_step_sizes",
    "zero_term_threshold",
    "exact_zeros",
]


def _finfo(dtype: torch.dtype) -> torch.finfo:
    # Factors are never stored in half precision (docs/kernels.md): half X is paired with fp32 factors.
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return torch.finfo(dtype)


def factor_floor(dtype: torch.dtype) -> float:
    """Smallest value a factor entry may hold: ``sqrt(tiny)``, so that products of two entries stay normal."""
    return math.sqrt(_finfo(dtype).tiny)


def denominator_floor(dtype: torch.dtype) -> float:
    """Smallest value a multiplicative-update denominator may take: the smallest normal number."""
    return _finfo(dtype).tiny


def reconstruction_floor(x_max: float, dtype: torch.dtype) -> float:
    """``eps_r = eps(dtype) · max(X)``: the floor for ``WH`` wherever it is divided by or raised to a power.

    ``x_max`` is the largest entry of X (a Python float, computed once per fit). For an all-zero X any
    positive floor works; ``eps(dtype)`` is used.
    """
    eps = _finfo(dtype).eps
    if not math.isfinite(x_max) or x_max <= 0.0:
        return eps
    return max(eps * x_max, _finfo(dtype).tiny)


def safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / max(denominator, tiny)``: the division of every multiplicative update."""
    return numerator / denominator.clamp_min(denominator_floor(numerator.dtype))


def apply_factor_floor_(factor: torch.Tensor) -> torch.Tensor:
    """Raise every entry of ``factor`` to at least :func:`factor_floor`, in place."""
    return factor.clamp_min_(factor_floor(factor.dtype))


def zero_term_threshold(dtype: torch.dtype) -> float:
    """``tiny/eps``: a squared norm ``‖h_j‖²`` at or below it belongs to a factor row held at the floor φ
    (``n·φ² = n·tiny`` for n < 1/eps entries), so that rank-one term is numerically zero, even when it is
    the largest (k = 1: fuzzing found an extrapolated H at the floor giving W ~ 1/φ = 1e156)."""
    finfo = _finfo(dtype)
    return finfo.tiny / finfo.eps


def hals_step_sizes(gram: torch.Tensor, l2: float) -> torch.Tensor:
    """``1 / (B_jj + l2)`` for each rank-one term of HALS, and 0 (no update) for numerically zero terms.
    A batch of Grams (b×k×k) gives b×k steps, each problem's zero test against its own largest term."""
    curvature = gram.diagonal(dim1=-2, dim2=-1) + l2
    if curvature.numel() == 0:
        return curvature.clone()
    # On the device, no host synchronisation: the fused HALS sweep reads the steps from memory.
    largest = curvature.amax(dim=-1, keepdim=True)
    threshold = (_finfo(gram.dtype).eps * largest).clamp_min(zero_term_threshold(gram.dtype))
    degenerate = curvature <= threshold
    return torch.where(degenerate, torch.zeros_like(curvature), curvature.reciprocal())


def exact_zeros(factor: torch.Tensor) -> torch.Tensor:
    """``factor`` with the entries held at the factor floor φ (or below) set to 0: what users get back.

    The floor is internal to the iteration; a factor handed to the user shows the sparsity of the parts
    (scikit-learn's NMF returns exact zeros there). A new tensor; every start re-applies the floor, so a
    fit resumed from these zeros continues exactly as the uninterrupted one.
    """
    # clone keeps the strides (out-of-place masked_fill returns a row-major copy of a column-major H, and
    # a fit resumed from that layout rounds differently in the last bit).
    return factor.clone().masked_fill_(factor <= factor_floor(factor.dtype), 0.0)
