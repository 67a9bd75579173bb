"""non_negative_factorization: scikit-learn's property tests, rewritten for fastnmf."""

import numpy as np
import pytest
import torch
from sklearn.decomposition._nmf import _initialize_nmf

from fastnmf import non_negative_factorization
from fastnmf.losses import beta_divergence
from fastnmf.penalties import Penalties


@pytest.mark.parametrize("beta_loss", [-1.2, 0.0, 0.2, 1.0, 2.0, 2.5])
def test_objective_never_increases_over_30_single_steps(beta_loss):
    n_samples, n_features, n_components, alpha, l1_ratio = 20, 15, 10, 0.1, 0.5
    rng = np.random.RandomState(42)
    X = np.abs(rng.randn(n_samples, n_features))
    W, H = _initialize_nmf(X, n_components, init="random", random_state=42)
    previous = None
    for _ in range(30):
        W, H, _ = non_negative_factorization(
            X, W, H, n_components, init="custom", beta_loss=beta_loss, max_iter=1, alpha_W=alpha,
            l1_ratio=l1_ratio, tol=0.0,
        )
        # The objective MU decreases: the divergence plus scikit-learn's penalty scaling (½ on the L2 part).
        Wt, Ht = torch.from_numpy(W), torch.from_numpy(H)
        loss = float(
            beta_divergence(torch.from_numpy(X), Wt @ Ht, beta_loss)
            + Penalties(
                alpha * l1_ratio * n_features, alpha * (1 - l1_ratio) * n_features,
                alpha * l1_ratio * n_samples, alpha * (1 - l1_ratio) * n_samples,
            ).value(Wt, Ht)
        )
        if previous is not None:
            assert loss < previous
        previous = loss


def test_update_h_false_keeps_h_and_solves_w():
    rng = np.random.RandomState(0)
    W_true, H_true = rng.rand(30, 3), rng.rand(3, 8)
    X = W_true @ H_true
    W, H, _ = non_negative_factorization(X, H=H_true, n_components=3, update_H=False, max_iter=2000, tol=0.0)
    np.testing.assert_array_equal(H, H_true)
    assert np.abs(W @ H_true - X).max() < 1e-2 * X.max()


def test_output_is_non_negative_finite_and_of_the_input_dtype():
    X = np.abs(np.random.RandomState(0).randn(12, 7)).astype(np.float32)
    W, H, n_iter = non_negative_factorization(X, n_components=3, max_iter=15, random_state=0)
    assert W.dtype == H.dtype == np.float32 and n_iter == 15
    assert np.isfinite(W).all() and np.isfinite(H).all() and (W >= 0).all() and (H >= 0).all()


def test_given_w_h_with_another_init_warns_and_is_ignored():
    X = np.random.RandomState(0).rand(6, 5)
    # A RuntimeWarning, as scikit-learn's (parity).
    with pytest.warns(RuntimeWarning, match="init='random'; it is ignored"):
        non_negative_factorization(X, np.ones((6, 2)), np.ones((2, 5)), 2, init="random", max_iter=2, random_state=0)


def test_device_option_returns_numpy_for_numpy_input():
    X = np.random.RandomState(0).rand(6, 5)
    W, H, _ = non_negative_factorization(X, n_components=2, max_iter=3, device="cpu", random_state=0)
    assert isinstance(W, np.ndarray) and isinstance(H, np.ndarray)


@pytest.mark.parametrize("solver", ["mu", "hals"])
def test_callback_sees_every_iterate_and_stopping_early_equals_a_shorter_fit(solver):
    rng = np.random.default_rng(3)
    X = rng.random((30, 20))
    W0, H0 = rng.random((30, 4)) + 0.1, rng.random((4, 20)) + 0.1
    seen = []

    def record(n_iter, W, H):
        assert isinstance(W, torch.Tensor) and W.shape == (30, 4) and H.shape == (4, 20)
        seen.append((n_iter, W.clone(), H.clone()))
        return n_iter == 7

    W, H, n_iter = non_negative_factorization(X, W0, H0, init="custom", solver=solver, tol=0.0, max_iter=50,
                                              check_every=5, callback=record)
    assert n_iter == 7 and [it for it, _, _ in seen] == list(range(0, 8))
    np.testing.assert_array_equal(seen[0][1].numpy(), W0)
    W7, H7, n7 = non_negative_factorization(X, W0, H0, init="custom", solver=solver, tol=0.0, max_iter=7,
                                            check_every=5)
    assert n7 == 7
    np.testing.assert_array_equal(W, W7)
    np.testing.assert_array_equal(H, H7)
    np.testing.assert_array_equal(seen[-1][1].numpy(), W7)
    W3, _, _ = non_negative_factorization(X, W0, H0, init="custom", solver=solver, tol=0.0, max_iter=3)
    np.testing.assert_array_equal(seen[3][1].numpy(), W3)


def test_callback_gets_factors_in_the_users_units_when_data_is_rescaled():
    # 1e20 is outside [2^-32, 2^32]: the solver works on X / 4^e (fastnmf.scaling); the callback must not.
    rng = np.random.default_rng(0)
    X = rng.random((12, 9)) * 1e20
    last = {}
    W, H, _ = non_negative_factorization(X, n_components=3, init="random", random_state=0, solver="mu",
                                         max_iter=4, tol=0.0, callback=lambda i, W, H: last.update(W=W.clone(), H=H.clone()))
    np.testing.assert_allclose(last["W"].numpy(), W, rtol=1e-12)
    np.testing.assert_allclose(last["H"].numpy(), H, rtol=1e-12)


def test_callback_that_is_not_callable_is_rejected_before_any_work():
    with pytest.raises(TypeError, match="callback must be callable.*int: 3"):
        non_negative_factorization(np.ones((3, 3)), n_components=1, callback=3)


def test_callback_returning_true_at_the_start_runs_no_iteration():
    X = np.random.default_rng(1).random((8, 6))
    W0, H0 = np.full((8, 2), 0.5), np.full((2, 6), 0.5)
    W, H, n_iter = non_negative_factorization(X, W0, H0, init="custom", solver="mu", callback=lambda i, W, H: True)
    assert n_iter == 0
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(H, H0)


def test_factorization_loss_rejects_bad_factors_before_any_work():
    from fastnmf import factorization_loss

    X = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"W must be 2-D .* got shape \(4,\)"):
        factorization_loss(X, np.ones(4), np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"wrong shape .*\(H\): expected \(2, 3\), got \(2, 4\)"):
        factorization_loss(X, np.ones((4, 2)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="Negative"):
        factorization_loss(X, -np.ones((4, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="Invalid beta_loss"):
        factorization_loss(X, np.ones((4, 2)), np.ones((2, 3)), beta_loss="euclid")
    # Frobenius is ½‖X − WH‖², KL infinite where X > 0 and WH = 0.
    assert factorization_loss(X, np.ones((4, 1)), np.full((1, 3), 0.5)) == pytest.approx(0.5 * 12 * 0.25)
    assert factorization_loss(X, np.zeros((4, 1)), np.ones((1, 3)), 1.0) == float("inf")
