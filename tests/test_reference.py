"""The autograd reference: its gradient split, its updates against textbook closed forms, other models."""

import pytest
import torch

from fastnmf import reference as ref
from fastnmf.losses import beta_divergence
from fastnmf.safeguard import factor_floor

BETAS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]


def _positive_problem(m=17, n=13, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(m, n, generator=g, dtype=torch.float64) + 0.1
    W = torch.rand(m, k, generator=g, dtype=torch.float64) + 0.1
    H = torch.rand(k, n, generator=g, dtype=torch.float64) + 0.1
    return X, W, H


def _textbook_h_update(X, W, H, beta):
    """Févotte & Idier (2011), Table 2, written out by hand (valid where no safeguard is active)."""
    R = W @ H
    if beta == 2.0:
        numerator, denominator = W.T @ X, W.T @ W @ H  # Lee & Seung 2001
    elif beta == 1.0:
        numerator, denominator = W.T @ (X / R), W.sum(0)[:, None].expand_as(H)
    else:
        numerator, denominator = W.T @ (X * R ** (beta - 2)), W.T @ R ** (beta - 1)
    gamma = 1 / (2 - beta) if beta < 1 else (1 / (beta - 1) if beta > 2 else 1.0)
    return H * (numerator / denominator) ** gamma


@pytest.mark.parametrize("beta", BETAS)
def test_reference_update_equals_closed_form_for_h_and_w(beta):
    X, W, H = _positive_problem()
    H_ref = H.clone()
    ref.multiplicative_update(ref.reconstruct_nmf, [W, H_ref], X, beta, 1)
    torch.testing.assert_close(H_ref, _textbook_h_update(X, W, H, beta), rtol=0, atol=1e-10)
    W_ref = W.clone()
    ref.multiplicative_update(ref.reconstruct_nmf, [W_ref, H], X, beta, 0)
    W_closed = _textbook_h_update(X.T, H.T, W.T, beta).T
    torch.testing.assert_close(W_ref, W_closed, rtol=0, atol=1e-10)


@pytest.mark.parametrize("beta", BETAS)
def test_gradient_parts_are_non_negative_and_split_the_gradient(beta):
    X, W, H = _positive_problem()
    parts = ref.gradient_parts(ref.reconstruct_nmf, [W, H], X, beta)
    leaves = [W.clone().requires_grad_(True), H.clone().requires_grad_(True)]
    beta_divergence(X, leaves[0] @ leaves[1], beta).backward()
    for (numerator, denominator), leaf in zip(parts, leaves):
        assert bool((numerator >= 0).all()) and bool((denominator >= 0).all())
        # ∇D = ∇⁺ − ∇⁻: the two parts really are the split of the gradient.
        torch.testing.assert_close(denominator - numerator, leaf.grad, rtol=1e-10, atol=1e-10)


def test_lee_seung_is_the_beta_2_case():
    X, W, H = _positive_problem()
    (num_w, den_w), (num_h, den_h) = ref.gradient_parts(ref.reconstruct_nmf, [W, H], X, 2.0)
    torch.testing.assert_close(num_h, W.T @ X)
    torch.testing.assert_close(den_h, W.T @ W @ H)
    torch.testing.assert_close(num_w, X @ H.T)
    torch.testing.assert_close(den_w, W @ H @ H.T)


def test_update_is_in_place_and_leaves_the_other_factors_alone():
    X, W, H = _positive_problem()
    W_before, H_before = W.clone(), H.clone()
    returned = ref.multiplicative_update(ref.reconstruct_nmf, [W, H], X, 1.0, 1)
    assert returned is H
    assert not torch.equal(H, H_before)
    assert torch.equal(W, W_before)


def test_reconstruction_of_the_wrong_shape_is_rejected():
    X, W, H = _positive_problem()
    with pytest.raises(ValueError, match=r"shape \(13, 13\) but X has shape \(17, 13\)"):
        ref.gradient_parts(lambda W, H: H.T @ H, [W, H], X, 2.0)


def _objective_decreases(reconstruct, factors, X, beta, steps=30):
    losses = [float(beta_divergence(X, reconstruct(*factors), beta))]
    for _ in range(steps):
        for index in range(len(factors)):
            ref.multiplicative_update(reconstruct, factors, X, beta, index)
        losses.append(float(beta_divergence(X, reconstruct(*factors), beta)))
    return losses


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_nmfd_objective_decreases(beta):
    g = torch.Generator().manual_seed(1)
    T, m, n, k = 3, 12, 40, 2
    truth_w, truth_h = torch.rand(T, m, k, generator=g, dtype=torch.float64), torch.rand(k, n, generator=g, dtype=torch.float64)
    X = ref.reconstruct_nmfd(truth_w, truth_h) + 0.01
    factors = [torch.rand(T, m, k, generator=g, dtype=torch.float64), torch.rand(k, n, generator=g, dtype=torch.float64)]
    losses = _objective_decreases(ref.reconstruct_nmfd, factors, X, beta)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_cp_tensor_objective_decreases(beta):
    g = torch.Generator().manual_seed(2)
    dims, rank = (9, 8, 7), 3
    truth = [torch.rand(d, rank, generator=g, dtype=torch.float64) for d in dims]
    X = ref.reconstruct_cp(*truth) + 0.01
    factors = [torch.rand(d, rank, generator=g, dtype=torch.float64) for d in dims]
    losses = _objective_decreases(ref.reconstruct_cp, factors, X, beta)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0]


def test_nmfd_with_one_lag_is_plain_nmf():
    X, W, H = _positive_problem()
    torch.testing.assert_close(ref.reconstruct_nmfd(W[None], H), W @ H)


def test_safeguard_zero_column_and_zero_row_give_no_nan():
    X, W, H = _positive_problem()
    W[:, 1] = 0.0
    X[3] = 0.0
    for beta in BETAS:
        for index in (0, 1):
            factors = [W.clone(), H.clone()]
            ref.multiplicative_update(ref.reconstruct_nmf, factors, X, beta, index)
            assert bool(torch.isfinite(factors[index]).all())
            assert float(factors[index].min()) >= factor_floor(torch.float64)
