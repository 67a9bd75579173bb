"""Fused Triton kernels for the multiplicative-update hot loop (installed as ``fastnmf.kernels``).

Public launchers (each checks shapes, dtypes and devices, allocates, builds the grid and launches):

- :func:`mu_frobenius_update_h` — β = 2: ``WᵀX`` streamed once, ``(WᵀW)H`` from the k×k Gram, epilogue fused;
- :func:`mu_beta_update_h` — any β (fast paths 0, 1, 2): ``WH`` formed in registers, never in memory;
- :func:`factorization_divergence` — ``D_β(X | WH)`` in tiles, float64 partial sums.

Every launcher has a ``*_cost(m, n, k, x_itemsize, ...) -> (bytes, flops)`` formula beside it, for the
benchmark's roofline. Block sizes come from :mod:`fastnmf.kernels.configs`. The W update is the H update
of the transposed problem: pass ``X.T, H.T, W.T`` and transpose the result (views, no copies).

Under the Triton interpreter (``TRITON_INTERPRET=1``, read when this package is imported) the kernels
run on CPU tensors.
"""

from .configs import MUConfig, ObjectiveConfig, padded_rank
from .mu_beta import mu_beta_cost, mu_beta_update_h
from .mu_finalize import mu_finalize_cost
from .mu_frobenius import mu_frobenius_cost, mu_frobenius_update_h
from .objective import factorization_divergence, factorization_divergence_cost

__all__ = [
    "MUConfig",
    "ObjectiveConfig",
    "padded_rank",
    "mu_frobenius_update_h",
    "mu_frobenius_cost",
    "mu_beta_update_h",
    "mu_beta_cost",
    "mu_finalize_cost",
    "factorization_divergence",
    "factorization_divergence_cost",
]
