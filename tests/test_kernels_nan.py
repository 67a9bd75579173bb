"""A NaN in a factor stays NaN through every fused kernel (as on the torch backend), so the solver's
objective check raises FloatingPointError instead of a NaN silently becoming the floor φ.

Under the interpreter numpy's maximum already propagates NaN; compiled on a GPU, ``tl.maximum`` is maxnum
and would not — these tests guard the kernels' ``floor_keeping_nan`` there (the same suite runs compiled).
"""

import math

import pytest
import torch

from conftest import HAS_CUDA
from fastnmf import kernels
from fastnmf.kernels.testing import eps_r_for, make_problem
from fastnmf.layouts import SparseMatrix

pytestmark = pytest.mark.interpreter
DEVICE = "cuda" if HAS_CUDA else "cpu"


def _poisoned():
    X, W, H = make_problem(40, 30, 4, device=DEVICE)
    W = W.clone()
    W[3, 1] = math.nan
    return X, W, H


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.0, 0.5])
def test_mu_kernels_propagate_nan(beta):
    X, W, H = _poisoned()
    if beta == 2.0:
        H_new = kernels.mu_frobenius_update_h(X, W, H)
    else:
        H_new = kernels.mu_beta_update_h(X, W, H, beta=beta, eps_r=eps_r_for(X))
    assert bool(torch.isnan(H_new).any())


def test_hals_sweep_and_objective_propagate_nan():
    X, W, H = _poisoned()
    A, B = kernels.matmul_tn(W, X), W.T @ W
    H_new, _ = kernels.hals_sweeps(H, A, B, max_sweeps=2)
    assert bool(torch.isnan(H_new).any())
    assert math.isnan(float(kernels.factorization_divergence(X, W, H, beta=1.0, eps_r=eps_r_for(X))))


def test_sparse_kl_kernel_propagates_nan():
    X, W, H = _poisoned()
    rows, cols = torch.nonzero(X > 0, as_tuple=True)
    X_sparse = SparseMatrix.from_coo(rows, cols, X[rows, cols], X.shape)
    H_new = kernels.mu_sparse_kl_update_h(X_sparse, W, H, eps_r=eps_r_for(X))
    assert bool(torch.isnan(H_new).any())
