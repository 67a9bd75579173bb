"""The Triton implementation: the fused kernels of ``fastnmf.kernels`` as update rules.

Dense X (:func:`make_dense_backend`): MU β = 2 is the Gram-based Frobenius kernel, every other β the
flash-attention-shaped β kernel (``WH`` never in memory) up to rank ``MAX_FUSED_BETA_RANK`` (128) and the
torch rule above it; HALS forms ``A = WᵀX`` with the Triton GEMM (X
read in its storage dtype, so fp16/bf16 X works), ``B = WᵀW`` with torch, and runs the fused sweep kernel
(the same per-column early stop as the torch sweep). The W updates are the H updates on transposed views
(``Layout.update_w``), which the kernels read through their strides, without copies.

Sparse X (:func:`make_sparse_backend`): the fused sparse KL kernel for β = 1; the torch rules (SDDMM,
SpMM, Grams, blocked passes) for every other β, for HALS and for the objective.

Every rule keeps ``statistics``/``apply`` of its torch parent, so a layout that owns its pass can still
use it; only ``update`` is fused.
"""

from __future__ import annotations

import torch

from .. import kernels
from ..kernels.launch import check_factorization, check_precision
from ..objective import objective as torch_objective
from ..updates import HALSRule, HALSStatistics, MURule
from .contract import Backend
from .torch_backend import ROW_OVERHEAD

__all__ = ["make_dense_backend", "make_sparse_backend"]

_HALF_X = (torch.float32, torch.float16, torch.bfloat16)

# The dense β kernel keeps the whole padded rank of a column tile on chip: above 64 its tiles shrink to
# 16×16 (W re-read for every 16 columns of X: up to 32× X's bytes at k = 512) and at 256 and 512 every tile
# spills (the offline sm_90 compiles in kernels/configs.py, _BETA_TILES). Above this rank the β update
# runs the torch rule (two GEMMs and the entrywise terms) on the same device instead.
MAX_FUSED_BETA_RANK = 128

# The fused HALS sweep's cost per row of H, in flop-equivalents of the X product (Gillis & Glineur's ρ,
# fastnmf.solvers.inner_sweep_limit): each of the k row updates of a column block is a dependent step
# (a reduction over the rank and a barrier), ~0.5 µs of latency against ~50 TFLOP/s of product rate ≈
# 2.5e7. Estimated, not measured: with 0 the rule allowed 760 sweeps at 50000×20000, k = 32 (now 39);
# bench.gpu_check's hals_sweeps section measures the sweep's time against the product's.
FUSED_SWEEP_ROW_OVERHEAD = {"cuda": 2.5e7}


def make_dense_backend(precision: str) -> Backend:
    """Kernels that run every tl.dot with ``input_precision=precision`` ("ieee", "tf32" or "tf32x3")."""
    check_precision(precision)

    class FusedMU(MURule):
        def update(self, X, W, H):
            if self.beta == 2.0:
                return kernels.mu_frobenius_update_h(X.tensor, W, H, l1=self.l1, l2=self.l2, precision=precision), None
            if W.shape[1] > MAX_FUSED_BETA_RANK:
                return super().update(X.astype(W.dtype), W, H)  # the torch rule reads X in the factors' dtype
            return kernels.mu_beta_update_h(X.tensor, W, H, beta=self.beta, eps_r=self.eps_r, l1=self.l1, l2=self.l2,
                                            precision=precision), None

    class FusedHALS(HALSRule):
        """Ranks above ``kernels.MAX_HALS_RANK`` sweep with torch on the same products."""

        def statistics(self, X, W, H):
            check_factorization("hals_update_h", X.tensor, W, H)
            return HALSStatistics(kernels.matmul_tn(W, X.tensor, precision=precision), W.T @ W)  # A: k×n fp32

        def sweep(self, H, A, B):
            if H.shape[0] > kernels.MAX_HALS_RANK:
                return super().sweep(H, A, B)
            H_new, _ = kernels.hals_sweeps(H, A, B, l1=self.l1, l2=self.l2, max_sweeps=self.max_sweeps,
                                           delta=self.delta)
            return H_new  # strided like H

    def objective(X, W, H, *, beta, eps_r):
        # Always full fp32 products, whatever ``precision`` the updates use: the objective feeds the tol test,
        # and tf32's 10-bit mantissa would put ~1e-3 relative noise into a decrease measured against 1e-4.
        return kernels.factorization_divergence(X.tensor, W, H, beta=beta, eps_r=eps_r, precision="ieee")

    return Backend("triton", mu_rule=FusedMU, hals_rule=FusedHALS, objective=objective, native_x_dtypes=_HALF_X,
                   hals_row_overhead=FUSED_SWEEP_ROW_OVERHEAD)


def make_sparse_backend(precision: str) -> Backend:
    """Sparse X on a GPU (or the interpreter): values may be float32, float16 or bfloat16 — the kernel reads
    them as stored, the torch sparse ops convert them to the factors' dtype. The KL kernel has no tl.dot,
    so ``precision`` does not apply to it; ranks above ``kernels.configs.MAX_BETA_RANK`` use the torch rule."""
    check_precision(precision)

    class FusedSparseKL(MURule):
        def update(self, X, W, H):
            if self.beta == 1.0 and W.shape[1] <= kernels.configs.MAX_BETA_RANK:
                return kernels.mu_sparse_kl_update_h(X, W, H, eps_r=self.eps_r, l1=self.l1, l2=self.l2), None
            return super().update(X, W, H)

    return Backend("triton-sparse", mu_rule=FusedSparseKL, hals_rule=HALSRule, objective=torch_objective,
                   native_x_dtypes=_HALF_X, hals_row_overhead=ROW_OVERHEAD)  # HALS: the torch sweeps
