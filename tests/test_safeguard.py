"""The safeguard rule in long runs: no NaN/Inf on data with zero columns, no subnormal factor entries."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from fastnmf import non_negative_factorization
from fastnmf import safeguard


def test_floors_are_normal_numbers():
    for dtype in (torch.float32, torch.float64):
        tiny = torch.finfo(dtype).tiny
        phi = safeguard.factor_floor(dtype)
        assert phi * phi >= tiny * (1 - 1e-6)  # products of two floored entries stay normal
        assert safeguard.denominator_floor(dtype) == tiny
    assert safeguard.factor_floor(torch.bfloat16) == safeguard.factor_floor(torch.float32)


def test_reconstruction_floor_scales_with_the_data():
    eps = torch.finfo(torch.float32).eps
    assert safeguard.reconstruction_floor(100.0, torch.float32) == pytest.approx(100 * eps)
    assert safeguard.reconstruction_floor(0.0, torch.float32) == eps


def test_safe_ratio_gives_zero_for_zero_over_zero():
    num, den = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 2.0])
    assert torch.equal(safeguard.safe_ratio(num, den), torch.tensor([0.0, 0.5]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_term_at_the_floor_is_zero_even_when_it_is_the_only_one(dtype):
    phi = safeguard.factor_floor(dtype)
    at_floor = torch.full((1, 1), 1000 * phi * phi, dtype=dtype)  # ‖h‖² of 1000 entries held at φ
    assert torch.equal(safeguard.hals_step_sizes(at_floor, 0.0), torch.zeros(1, dtype=dtype))
    small = torch.full((1, 1), 1e-20, dtype=dtype)  # small, but far from the floor: a real term
    torch.testing.assert_close(safeguard.hals_step_sizes(small, 0.0), torch.full((1,), 1e20, dtype=dtype))


def test_extrapolated_hals_on_one_non_zero_entry_keeps_factors_in_range():
    # Fuzzing found this: extrapolation sent H to the floor φ, the W update divided by ‖h‖² = 2φ² and
    # returned W = 1e156 (and H of exact zeros to the user).
    X = torch.tensor([[304.0019, 0.0], [0.0, 0.0]], dtype=torch.float64)
    for max_iter in (1, 2, 3, 50):
        W, H, _ = non_negative_factorization(X, n_components=1, solver="hals", extrapolate=True, max_iter=max_iter,
                                             tol=0.0, random_state=0)
        assert float(W.max()) < 1e10 and float(H.max()) < 1e10, (max_iter, W, H)
    assert float((X - W @ H).abs().max()) < 1e-6 * 304


@pytest.fixture(scope="module")
def digits32():
    X = load_digits().data.astype(np.float32)
    assert (X.sum(axis=0) == 0).any()  # the data has all-zero columns: the case that breaks peers' KL
    return X


def _is_subnormal(array: np.ndarray) -> np.ndarray:
    tiny = np.finfo(array.dtype).tiny
    return (array != 0) & (np.abs(array) < tiny)


@pytest.mark.slow  # 2000 iterations each
@pytest.mark.parametrize(
    "beta_loss,solver",
    [("frobenius", "mu"), ("frobenius", "hals"), ("kullback-leibler", "mu"), ("itakura-saito", "mu")],
)
def test_2000_float32_iterations_on_digits_stay_finite_and_normal(digits32, beta_loss, solver):
    X = digits32 + 1.0 if beta_loss == "itakura-saito" else digits32  # IS needs x > 0 to be defined
    if beta_loss == "itakura-saito":
        X[:, X.sum(axis=0) == X.shape[0]] = 0.0  # keep the zero columns: the safeguard must hold there
    W, H, n_iter = non_negative_factorization(
        X, n_components=16, init="random", beta_loss=beta_loss, solver=solver, max_iter=2000, tol=0.0,
        random_state=0, check_every=500, backend="torch", inner_iter=1,
    )
    assert n_iter == 2000
    for factor in (W, H):
        assert factor.dtype == np.float32
        assert np.isfinite(factor).all()
        assert not _is_subnormal(factor).any(), f"{_is_subnormal(factor).sum()} subnormal entries"
        # Entries the solver held at the floor come back as exact zeros (scikit-learn parity); every other
        # entry is at least the floor.
        assert ((factor == 0) | (factor >= safeguard.factor_floor(torch.float32))).all()
