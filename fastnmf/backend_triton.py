"""Triton backend: the fused kernels of ``fastnmf.kernels`` behind the :class:`fastnmf.ops.Backend` contract.

Same signatures as ``fastnmf.backend_torch``; β = 2 goes to the Gram-based Frobenius kernel, every other β
to the flash-attention-shaped β kernel. The W update is ``mu_update_h`` on transposed views
(``Backend.mu_update_w``), which the kernels read through their strides, without copies.
"""

from __future__ import annotations

import torch

from . import kernels
from .kernels.launch import check_precision
from .ops import Backend

__all__ = ["make_backend"]


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

    return Backend(
        "triton",
        mu_update_h=mu_update_h,
        objective=objective,
        native_x_dtypes=(torch.float32, torch.float16, torch.bfloat16),
    )
