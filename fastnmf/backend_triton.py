"""Triton backends: the fused kernels of ``fastnmf.kernels`` behind the :class:`fastnmf.ops.Backend` contract.

:func:`make_backend` (dense X): same signatures as ``fastnmf.backend_torch``; β = 2 goes to the Gram-based
Frobenius kernel, every other β to the flash-attention-shaped β kernel. HALS (β = 2) forms ``A = WᵀX`` with
the Triton GEMM (X read in its storage dtype, so fp16/bf16 X works), ``B = WᵀW`` with torch, and runs the
fused sweep kernel. The W updates are the H updates on transposed views (``Backend.mu_update_w``/
``hals_update_w``), which the kernels read through their strides, without copies.

:func:`make_sparse_backend` (sparse X, a :class:`fastnmf.sparse.SparseMatrix`): the fused sparse KL kernel
for β = 1, ``fastnmf.backend_sparse`` (torch sparse products on the same device) for everything else.
"""

from __future__ import annotations

import torch

from . import backend_sparse, backend_torch, kernels
from .kernels.launch import check_factorization, check_precision
from .ops import SPARSE_BACKEND, Backend

__all__ = ["make_backend", "make_sparse_backend"]


def make_backend(precision: str) -> Backend:
    """The Triton backend whose kernels run every tl.dot with ``input_precision=precision``
    ("ieee", "tf32" or "tf32x3")."""
    check_precision(precision)

    def mu_update_h(X, W, H, *, beta, l1=0.0, l2=0.0, eps_r):
        """One multiplicative update of H for ``X ≈ WH`` (see ``backend_torch.mu_update_h``); a new tensor."""
        if float(beta) == 2.0:
            return kernels.mu_frobenius_update_h(X, W, H, l1=l1, l2=l2, precision=precision)
        return kernels.mu_beta_update_h(X, W, H, beta=beta, eps_r=eps_r, l1=l1, l2=l2, precision=precision)

    def objective(X, W, H, *, beta, eps_r):
        """``D_β(X | WH)`` as a 0-d float64 tensor (see ``fastnmf.losses.beta_divergence``)."""
        return kernels.factorization_divergence(X, W, H, beta=beta, eps_r=eps_r, precision=precision)

    def hals_update_h(X, W, H, *, l1=0.0, l2=0.0, max_sweeps=1, delta=0.1):
        """HALS update of H for ``X ≈ WH`` (β = 2); returns ``(H_new, fit)``, H untouched — the contract of
        ``backend_torch.hals_update_h``, with ``fit = −⟨A, H_new⟩ + ½⟨B, H_new H_newᵀ⟩`` in float64.

        One difference: the fused sweep applies the early stop (``delta``) to each block of columns on its
        own, not to the whole of H (``fastnmf.kernels.hals``); ``delta = 0`` or ``max_sweeps = 1`` give the
        torch backend's iterate up to rounding. Ranks above ``kernels.MAX_HALS_RANK`` sweep with torch on
        the same products.
        """
        k = check_factorization("hals_update_h", X, W, H)[2]
        A = kernels.matmul_tn(W, X, precision=precision)  # k×n fp32; X in its storage dtype
        B = W.T @ W
        if k <= kernels.MAX_HALS_RANK:
            H_new, _ = kernels.hals_sweeps(H, A, B, l1=l1, l2=l2, max_sweeps=max_sweeps, delta=delta)
        else:
            H_new = H.clone()
            backend_torch.hals_sweeps_(H_new, A, B, l1=l1, l2=l2, max_sweeps=max_sweeps, delta=delta)
        fit = -torch.sum(A * H_new, dtype=torch.float64) + 0.5 * torch.sum(B * (H_new @ H_new.T), dtype=torch.float64)
        return H_new, fit

    return Backend(
        "triton",
        mu_update_h=mu_update_h,
        objective=objective,
        hals_update_h=hals_update_h,
        native_x_dtypes=(torch.float32, torch.float16, torch.bfloat16),
    )


def make_sparse_backend(precision: str) -> Backend:
    """The Triton backend for a sparse X (:class:`fastnmf.sparse.SparseMatrix`), named ``"triton-sparse"``.

    - MU, β = 1 (KL): the fused kernel ``kernels.mu_sparse_kl_update_h`` — per column of X, ``(WH)_ij`` and
      ``x_ij / (WH)_ij`` at the stored entries in registers, accumulated into ``Wᵀ(X / WH)`` without storing
      the sampled values; W updates on ``X.T`` (the CSR by rows). It has no tl.dot, so ``precision`` does
      not apply to it; ranks above ``kernels.configs.MAX_BETA_RANK`` use the torch sparse update.
    - MU for every other β, the objective and HALS: ``fastnmf.backend_sparse`` — torch sparse products
      (SDDMM, SpMM, Grams, dense column blocks for β ∉ {1, 2}) on X's device, CPU or CUDA.

    X's values may be float32, float16 or bfloat16: the kernel reads them as stored, the torch sparse ops
    convert them to the factors' dtype.
    """
    check_precision(precision)

    def mu_update_h(X, W, H, *, beta, l1=0.0, l2=0.0, eps_r):
        """One multiplicative update of H for sparse ``X ≈ WH`` (see ``backend_sparse.mu_update_h``)."""
        if float(beta) == 1.0 and W.shape[1] <= kernels.configs.MAX_BETA_RANK:
            return kernels.mu_sparse_kl_update_h(X, W, H, eps_r=eps_r, l1=l1, l2=l2)
        return backend_sparse.mu_update_h(X, W, H, beta=beta, l1=l1, l2=l2, eps_r=eps_r)

    return Backend(
        "triton-sparse",
        mu_update_h=mu_update_h,
        objective=backend_sparse.objective,
        hals_update_h=backend_sparse.hals_update_h,
        native_x_dtypes=(torch.float32, torch.float16, torch.bfloat16),
        hals_row_overhead=SPARSE_BACKEND.hals_row_overhead,  # the torch sweeps of backend_sparse
    )
