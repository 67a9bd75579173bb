"""The one objective on every layout: equal to the dense β-divergence, blocked or not."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fastnmf.layouts import DenseMatrix, WeightedMatrix, base
from fastnmf.losses import beta_divergence
from fastnmf.objective import objective
from fastnmf.validation import as_tensor

BETAS = [-0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]


def _problem(dtype=torch.float64, seed=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(23, 7, generator=g, dtype=dtype) * (torch.rand(23, 7, generator=g) > 0.4)
    return X, torch.rand(23, 2, generator=g, dtype=dtype), torch.rand(2, 7, generator=g, dtype=dtype)


@pytest.mark.parametrize("beta", BETAS)
def test_dense_objective_over_row_blocks_equals_the_divergence(monkeypatch, beta):
    monkeypatch.setattr(base, "BLOCK_ENTRIES", 10)  # forces many row blocks
    X, W, H = _problem(torch.float32)
    expected = beta_divergence(X.double(), (W @ H).double(), beta, eps_r=1e-6)
    torch.testing.assert_close(objective(DenseMatrix(X), W, H, beta=beta, eps_r=1e-6), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("beta", BETAS)
def test_sparse_and_weighted_objectives_equal_the_dense_one(monkeypatch, beta):
    monkeypatch.setattr(base, "BLOCK_ENTRIES", 16)
    X, W, H = _problem()
    eps_r = 1e-9
    dense = objective(DenseMatrix(X), W, H, beta=beta, eps_r=eps_r)
    X_sparse, _ = as_tensor(sp.csr_matrix(X.numpy()))
    assert float(objective(X_sparse, W, H, beta=beta, eps_r=eps_r)) == pytest.approx(float(dense), rel=1e-10)
    # Weights of one (dense weights: column blocks) are the unweighted objective.
    ones = WeightedMatrix(X, torch.ones_like(X))
    assert float(objective(ones, W, H, beta=beta, eps_r=eps_r)) == pytest.approx(float(dense), rel=1e-10)


def test_objective_is_float64_on_the_data_device():
    X, W, H = _problem(torch.float32)
    value = objective(DenseMatrix(X), W, H, beta=1.0, eps_r=1e-6)
    assert value.dtype == torch.float64 and value.ndim == 0 and value.device == X.device
    assert np.isfinite(float(value))
