"""Full fits on the Triton backend (interpreted here, compiled on a GPU) follow the torch backend."""

import numpy as np
import pytest
import torch

from conftest import HAS_CUDA
from fastnmf import NMF

DEVICE = "cuda" if HAS_CUDA else "cpu"


def _data(m=50, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    W, H = torch.rand(m, 4, generator=g), torch.rand(4, n, generator=g)
    return (W @ H + 0.05 * torch.rand(m, n, generator=g)).to(DEVICE)


@pytest.mark.parametrize("beta_loss", ["frobenius", "kullback-leibler", 0.5, "itakura-saito"])
def test_loss_curve_matches_the_torch_backend(beta_loss):
    X = _data()
    options = dict(n_components=4, solver="mu", beta_loss=beta_loss, max_iter=30, tol=0.0, check_every=5,
                   init="random", random_state=0, alpha_W=0.01, l1_ratio=0.5)
    torch_fit = NMF(backend="torch", **options).fit(X)
    triton_fit = NMF(backend="triton", **options).fit(X)
    assert len(triton_fit.loss_history_) == len(torch_fit.loss_history_) == 7
    np.testing.assert_allclose(triton_fit.loss_history_, torch_fit.loss_history_, rtol=1e-4)
    assert triton_fit.components_.dtype == torch.float32


def test_half_precision_x_tracks_float32_on_the_triton_backend():
    X = _data()
    options = dict(n_components=4, solver="mu", beta_loss="kullback-leibler", max_iter=20, tol=0.0, check_every=5,
                   init="random", random_state=0)
    reference = NMF(backend="torch", **options).fit(X.half().float())
    half = NMF(backend="triton", **options).fit(X.half())
    np.testing.assert_allclose(half.loss_history_, reference.loss_history_, rtol=1e-2)
