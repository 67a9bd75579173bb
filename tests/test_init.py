"""Initialization: identical to scikit-learn's for the same seed, seeded, non-negative."""

import numpy as np
import pytest
import torch
from sklearn.decomposition._nmf import _initialize_nmf

from fastnmf.init import default_init, initialize


@pytest.mark.parametrize("init", ["random", "nndsvd", "nndsvda", "nndsvdar"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_start_as_scikit_learn(init, dtype):
    X = np.abs(np.random.RandomState(1).randn(30, 20)).astype(dtype)
    W_sk, H_sk = _initialize_nmf(X, 5, init=init, random_state=3)
    W, H = initialize(torch.from_numpy(X), 5, init, 3, torch.from_numpy(X).dtype)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(W.numpy(), W_sk, rtol=0, atol=tolerance * np.abs(W_sk).max())
    np.testing.assert_allclose(H.numpy(), H_sk, rtol=0, atol=tolerance * np.abs(H_sk).max())


@pytest.mark.parametrize("init", ["random", "nndsvd", "nndsvda", "nndsvdar"])
def test_shapes_sign_and_seed(init):
    X = torch.rand(25, 12, dtype=torch.float64)
    W, H = initialize(X, 4, init, 7, torch.float64)
    assert W.shape == (25, 4) and H.shape == (4, 12)
    assert bool((W >= 0).all()) and bool((H >= 0).all())
    W2, H2 = initialize(X, 4, init, 7, torch.float64)
    assert torch.equal(W, W2) and torch.equal(H, H2)


def test_nndsvd_rejects_a_rank_above_min_shape():
    with pytest.raises(ValueError, match=r"n_components=6 for X of shape \(5, 9\)"):
        initialize(torch.rand(5, 9), 6, "nndsvd", 0, torch.float32)


def test_rank_one_matrix_nndsvd_is_exact():
    u, v = torch.rand(8, 1, dtype=torch.float64) + 0.1, torch.rand(1, 6, dtype=torch.float64) + 0.1
    W, H = initialize(u @ v, 1, "nndsvd", 0, torch.float64)
    torch.testing.assert_close(W @ H, u @ v, rtol=1e-10, atol=1e-10)


def test_default_init_follows_scikit_learn():
    assert default_init(5, 10, 20) == "nndsvda"
    assert default_init(11, 10, 20) == "random"
