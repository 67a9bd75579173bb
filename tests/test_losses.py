"""β-divergence, MU exponent, penalty, and the loss parser."""

import math

import numpy as np
import pytest
import torch
from sklearn.decomposition._nmf import _beta_divergence as sklearn_beta_divergence

from fastnmf import losses


def _elementwise(x, r, beta):
    """d_β(x | r) for one pair of positive numbers, straight from the definition."""
    if beta == 0:
        return x / r - math.log(x / r) - 1
    if beta == 1:
        return x * math.log(x / r) - x + r
    return (x**beta + (beta - 1) * r**beta - beta * x * r ** (beta - 1)) / (beta * (beta - 1))


@pytest.mark.parametrize("beta", [-1.2, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
def test_beta_divergence_matches_its_definition(beta):
    g = torch.Generator().manual_seed(0)
    X, R = torch.rand(6, 5, generator=g, dtype=torch.float64) + 0.1, torch.rand(6, 5, generator=g, dtype=torch.float64) + 0.1
    expected = sum(_elementwise(x, r, beta) for x, r in zip(X.flatten().tolist(), R.flatten().tolist()))
    assert float(losses.beta_divergence(X, R, beta)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0, 3.0])
def test_beta_divergence_agrees_with_scikit_learn_including_zeros(beta):
    rng = np.random.RandomState(0)
    X = np.abs(rng.randn(20, 10))
    X[X < 0.3] = 0.0  # exact zeros exercise the conventions
    W, H = np.abs(rng.randn(20, 3)), np.abs(rng.randn(3, 10))
    ours = float(losses.beta_divergence(torch.from_numpy(X), torch.from_numpy(W @ H), beta))
    if beta == 0.0:
        # scikit-learn subtracts 1 for every entry, zeros included; fastnmf drops the x = 0 terms.
        ours -= int((X == 0).sum())
    assert ours == pytest.approx(sklearn_beta_divergence(X, W, H, beta), rel=1e-10)


def test_beta_two_is_half_the_squared_frobenius_norm():
    X, R = torch.rand(4, 4, dtype=torch.float64), torch.rand(4, 4, dtype=torch.float64)
    assert float(losses.beta_divergence(X, R, 2.0)) == pytest.approx(0.5 * float(((X - R) ** 2).sum()))


def test_kl_treats_zero_log_zero_as_zero():
    X = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    R = torch.tensor([[2.0, 1.0]], dtype=torch.float64)
    assert float(losses.beta_divergence(X, R, 1.0)) == pytest.approx(2.0)


def test_mu_exponent_follows_fevotte_idier():
    assert losses.mu_exponent(0.0) == 0.5
    assert losses.mu_exponent(-1.0) == pytest.approx(1 / 3)
    assert losses.mu_exponent(1.0) == losses.mu_exponent(1.7) == losses.mu_exponent(2.0) == 1.0
    assert losses.mu_exponent(3.0) == 0.5


def test_parse_beta_loss():
    assert losses.parse_beta_loss("frobenius") == 2.0
    assert losses.parse_beta_loss("kullback-leibler") == 1.0
    assert losses.parse_beta_loss("itakura-saito") == 0.0
    assert losses.parse_beta_loss(1.5) == 1.5
    with pytest.raises(ValueError, match="Invalid beta_loss 'kl'"):
        losses.parse_beta_loss("kl")
    with pytest.raises(ValueError, match="Invalid beta_loss nan"):
        losses.parse_beta_loss(float("nan"))
