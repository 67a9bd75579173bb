"""The one MU (fastnmf.updates) on dense X: closed forms against the autograd reference, after one step."""

import pytest
import torch

from conftest import DEVICES
from fastnmf import reference as ref
from fastnmf.layouts import DenseMatrix
from fastnmf.objective import objective
from fastnmf.losses import beta_divergence
from fastnmf.updates import (HALSRule, MURule, hals_batched_sweeps_, hals_sweeps_, multiplicative_step,
                             multiplicative_step_)
from fastnmf.safeguard import factor_floor, hals_step_sizes, reconstruction_floor

BETAS = [-1.2, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
SHAPES = [(1, 1, 1), (17, 13, 4), (40, 9, 12), (5, 30, 20)]


def mu_update_h(X, W, H, *, beta, l1=0.0, l2=0.0, eps_r):
    return MURule(beta, l1, l2, eps_r=eps_r).update(DenseMatrix(X), W, H)[0]


def _problem(m, n, k, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(m, n, generator=g, dtype=torch.float64)
    W = torch.rand(m, k, generator=g, dtype=torch.float64) + 0.05
    H = torch.rand(k, n, generator=g, dtype=torch.float64) + 0.05
    return [t.to(device=device, dtype=dtype) for t in (X, W, H)]


def _reference_step(X, W, H, beta, index, l1, l2, eps_r):
    factors = [W.double().cpu().clone(), H.double().cpu().clone()]
    ref.multiplicative_update(ref.reconstruct_nmf, factors, X.double().cpu(), beta, index, l1=l1, l2=l2, eps_r=eps_r)
    return factors[index]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("regularized", [False, True], ids=["plain", "l1l2"])
def test_one_step_matches_reference(device, dtype, tolerance, beta, regularized):
    l1, l2 = (0.3, 0.2) if regularized else (0.0, 0.0)
    for m, n, k in SHAPES:
        X, W, H = _problem(m, n, k, dtype, device)
        eps_r = reconstruction_floor(float(X.max()), dtype)
        H_new = mu_update_h(X, W, H, beta=beta, l1=l1, l2=l2, eps_r=eps_r)
        W_new = mu_update_h(X.T, H.T, W.T, beta=beta, l1=l1, l2=l2, eps_r=eps_r).T
        for new, index in ((H_new, 1), (W_new, 0)):
            expected = _reference_step(X, W, H, beta, index, l1, l2, eps_r)
            error = float((new.double().cpu() - expected).abs().max() / expected.abs().max())
            assert new.dtype == dtype and new.device.type == device
            assert error <= tolerance, f"shape {(m, n, k)}, factor {'WH'[index]}: relative error {error:.2e}"


@pytest.mark.parametrize("beta", BETAS)
def test_inputs_are_not_modified(beta):
    X, W, H = _problem(11, 7, 3, torch.float64, "cpu")
    copies = [t.clone() for t in (X, W, H)]
    mu_update_h(X, W, H, beta=beta, l1=0.1, l2=0.1, eps_r=1e-12)
    for before, after in zip(copies, (X, W, H)):
        assert torch.equal(before, after)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("beta", BETAS)
def test_zero_column_of_w_and_zero_row_of_x_trigger_the_safeguard(dtype, beta):
    X, W, H = _problem(12, 9, 3, dtype, "cpu")
    W[:, 1] = 0.0
    X[4] = 0.0
    eps_r = reconstruction_floor(float(X.max()), dtype)
    H_new = mu_update_h(X, W, H, beta=beta, eps_r=eps_r)
    W_new = mu_update_h(X.T, H_new.T, W.T, beta=beta, eps_r=eps_r).T
    for new in (H_new, W_new):
        assert bool(torch.isfinite(new).all())
        assert float(new.min()) >= factor_floor(dtype)
    # The zero column of W gives a zero numerator row: that row of H goes to the floor, not NaN.
    assert torch.equal(H_new[1], torch.full_like(H_new[1], factor_floor(dtype)))


def test_objective_matches_dense_divergence():
    X, W, H = _problem(33, 21, 5, torch.float64, "cpu")
    for beta in BETAS:
        expected = beta_divergence(X, W @ H, beta, eps_r=1e-9)
        got = objective(DenseMatrix(X), W, H, beta=beta, eps_r=1e-9)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


def test_hals_fit_term_only_when_asked_for():
    X, W, H = _problem(13, 9, 3, torch.float64, "cpu")
    H_plain, fit = HALSRule(max_sweeps=2).update(DenseMatrix(X), W, H)
    assert fit is None
    H_with, fit = HALSRule(max_sweeps=2, fit=True).update(DenseMatrix(X), W, H)
    assert torch.equal(H_plain, H_with)
    expected = float(beta_divergence(X, W @ H_with, 2.0)) - 0.5 * float((X * X).sum())
    assert float(fit) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_the_in_place_objective_is_the_float64_sum_of_the_formula_and_leaves_x_alone(dtype, beta):
    X, W, H = _problem(301, 47, 6, dtype, "cpu")
    X[X < 0.3] = 0.0  # KL's 0·log 0 = 0
    X_before = X.clone()
    got = objective(DenseMatrix(X), W, H, beta=beta, eps_r=1e-9)
    expected = beta_divergence(X.double(), (W @ H).double(), beta, eps_r=1e-9)
    torch.testing.assert_close(got, expected, rtol=1e-7 if dtype == torch.float32 else 1e-13, atol=0)
    assert torch.equal(X, X_before)
    W[3, 2] = float("nan")
    assert torch.isnan(objective(DenseMatrix(X), W, H, beta=beta, eps_r=1e-9))
    W[3, 2] = float("inf")
    assert not torch.isfinite(objective(DenseMatrix(X), W, H, beta=beta, eps_r=1e-9))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("beta, l1, l2", [(2.0, 0.0, 0.0), (2.0, 0.3, 0.2), (1.0, 0.1, 0.0), (0.5, 0.0, 0.4)])
def test_the_in_place_mu_step_is_multiplicative_step(dtype, beta, l1, l2):
    g = torch.Generator().manual_seed(3)
    numerator, denominator, H = (torch.rand(5, 11, generator=g, dtype=dtype) for _ in range(3))
    denominator[0, 0] = 0.0  # the safeguarded division
    expected = multiplicative_step(numerator, denominator, H, beta=beta, l1=l1, l2=l2)
    H_in_place = H.clone()
    returned = multiplicative_step_(numerator.clone(), denominator.clone(), H_in_place, beta=beta, l1=l1, l2=l2)
    assert returned is H_in_place and torch.equal(H_in_place, expected)


@pytest.mark.parametrize("max_sweeps", [1, 6])
@pytest.mark.parametrize("l1, l2", [(0.0, 0.0), (0.05, 0.1)])
def test_batched_hals_sweeps_give_each_problem_its_own_sweeps(max_sweeps, l1, l2):
    problems = []
    for seed in range(3):
        X, W, H = _problem(30, 17, 4, torch.float64, "cpu", seed=seed)
        if seed == 1:
            W[:, 2] = 0.0  # a numerically zero term
        problems.append((H, W.T @ X, W.T @ W))
    alone = []
    for H, A, B in problems:
        H = H.clone()
        hals_sweeps_(H, A, B, l1=l1, l2=l2, max_sweeps=max_sweeps, delta=0.3)
        alone.append(H)
    H, A, B = (torch.stack(parts) for parts in zip(*problems))
    hals_batched_sweeps_(H, A, B, l1=l1, l2=l2, max_sweeps=max_sweeps, delta=0.3)
    for batched, single in zip(H.unbind(0), alone):
        torch.testing.assert_close(batched, single, rtol=1e-12, atol=1e-14)
    steps = hals_step_sizes(B, l2)
    assert steps.shape == (3, 4)
    if not l2:  # without l2 the zero term has no curvature
        assert steps[1, 2] == 0.0 and torch.equal(H[1, 2], problems[1][0][2])
    torch.testing.assert_close(steps[0], hals_step_sizes(B[0], l2))

