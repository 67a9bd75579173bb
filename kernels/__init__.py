"""Fused Triton kernels for the NMF hot loop, MU and HALS (installed as ``fastnmf.kernels``).

Public launchers (each checks shapes, dtypes and devices, allocates, builds the grid and launches):

- :func:`mu_frobenius_update_h` — β = 2: ``WᵀX`` streamed once, ``(WᵀW)H`` from the k×k Gram, epilogue fused;
- :func:`mu_beta_update_h` — any β (fast paths 0, 1, 2): ``WH`` formed in registers, never in memory;
- :func:`mu_sparse_kl_update_h` — KL (β = 1) for a sparse X (:class:`fastnmf.layouts.SparseMatrix`): one
  program per column of X walks its stored entries, ``(WH)_ij`` and ``x_ij / (WH)_ij`` only in registers;
- :func:`factorization_divergence` — ``D_β(X | WH)`` in tiles, float64 partial sums;
- :func:`matmul_tn` — ``WᵀX`` with X read in its storage dtype (fp16/bf16 X, fp32 W), fp32 accumulation;
- :func:`hals_sweeps` — HALS (β = 2): all k row updates and the inner sweeps of a column block on chip.

Every launcher has a ``*_cost(m, n, k, x_itemsize, ...) -> (bytes, flops)`` formula beside it, for the
benchmark's roofline (``hals_sweeps_cost(n, k, sweeps)``: the sweep never reads X;
``mu_sparse_kl_cost(nnz, m, n, k, value_itemsize)``: the stored entries instead of m·n). Block sizes come from
:mod:`fastnmf.kernels.configs`. The W update (MU or HALS) is the H update of the transposed problem: pass
``X.T, H.T, W.T`` and transpose the result: views, read through their strides (``SparseMatrix.T`` swaps its
two CSR copies; the sparse KL launcher makes a row-major copy of the gathered ``Hᵀ``, see its docstring).

Under the Triton interpreter (``TRITON_INTERPRET=1``, read when this package is imported) the kernels
run on CPU tensors.
"""

from .configs import MAX_HALS_RANK, HALSConfig, MUConfig, ObjectiveConfig, SparseMUConfig, padded_rank
from .gemm import matmul_tn, matmul_tn_cost
from .hals import hals_sweeps, hals_sweeps_cost
from .mu_beta import mu_beta_cost, mu_beta_update_h
from .mu_finalize import mu_finalize_cost
from .mu_frobenius import mu_frobenius_cost, mu_frobenius_update_h
from .mu_sparse_kl import mu_sparse_kl_cost, mu_sparse_kl_update_h
from .objective import factorization_divergence, factorization_divergence_cost

__all__ = [
    "MUConfig",
    "ObjectiveConfig",
    "HALSConfig",
    "SparseMUConfig",
    "MAX_HALS_RANK",
    "padded_rank",
    "mu_frobenius_update_h",
    "mu_frobenius_cost",
    "mu_beta_update_h",
    "mu_beta_cost",
    "mu_sparse_kl_update_h",
    "mu_sparse_kl_cost",
    "mu_finalize_cost",
    "factorization_divergence",
    "factorization_divergence_cost",
    "matmul_tn",
    "matmul_tn_cost",
    "hals_sweeps",
    "hals_sweeps_cost",
]
