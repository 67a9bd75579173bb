"""fastnmf.NMF: scikit-learn compatibility, numpy/torch round trips, and agreement with scikit-learn."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import NMF as SklearnNMF
from sklearn.decomposition._nmf import _beta_divergence, _initialize_nmf
from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import DEVICES
from fastnmf import NMF

# The default solver is "auto" (HALS for this Frobenius loss). With solver="mu", two checks fail:
# check_transformer_general and check_transformer_data_not_an_array need fit_transform(X) and transform(X)
# to agree to 1e-2, and MU needs ~10,000 iterations for that on their 30×3 data with k = 3 (measured max
# abs difference 0.038 at 500, 0.027 at 2000, 0.010 at 10,000). scikit-learn's own NMF passes with "cd".
@pytest.mark.slow  # ~50 checks, ~12 s on 2 cores: make test runs them, make test-fast does not
@parametrize_with_checks([NMF(max_iter=500)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    return load_digits().data


@pytest.mark.parametrize("beta_loss", ["frobenius", "kullback-leibler"])
def test_final_loss_matches_scikit_learn_mu_on_digits(digits, beta_loss):
    W0, H0 = _initialize_nmf(digits, 16, init="random", random_state=0)
    options = dict(n_components=16, init="custom", solver="mu", beta_loss=beta_loss, tol=0.0, max_iter=200)
    reference = SklearnNMF(**options)
    W_sk = reference.fit_transform(digits, W=W0.copy(), H=H0.copy())
    ours = NMF(**options)
    W = ours.fit_transform(digits, W=W0, H=H0)
    beta = 2 if beta_loss == "frobenius" else 1
    loss_sk = _beta_divergence(digits, W_sk, reference.components_, beta)
    loss = _beta_divergence(digits, W, ours.components_, beta)
    assert abs(loss - loss_sk) <= 0.005 * loss_sk, (loss, loss_sk)
    assert ours.n_iter_ == 200
    assert ours.reconstruction_err_ == pytest.approx(np.sqrt(2 * loss), rel=1e-9)


def test_fit_records_history_and_attributes(digits):
    model = NMF(8, init="nndsvda", max_iter=60, check_every=20, tol=0.0).fit(digits)
    assert model.components_.shape == (8, 64) and model.n_components_ == 8 and model.n_features_in_ == 64
    assert model.n_iter_ == 60 and len(model.loss_history_) == 4  # iterations 0, 20, 40, 60
    assert all(b <= a for a, b in zip(model.loss_history_, model.loss_history_[1:]))
    assert list(model.get_feature_names_out()) == [f"nmf{i}" for i in range(8)]


def test_tol_stops_early(digits):
    model = NMF(8, max_iter=2000, tol=1e-3, random_state=0).fit(digits)
    assert model.n_iter_ < 2000 and model.n_iter_ % model.check_every == 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_in_torch_out(device, dtype):
    X = torch.rand(30, 12, dtype=dtype, device=device)
    model = NMF(4, max_iter=20, random_state=0)
    W = model.fit_transform(X)
    for result in (W, model.components_, model.transform(X), model.inverse_transform(W)):
        assert isinstance(result, torch.Tensor) and result.dtype == dtype and result.device.type == device
    assert model.inverse_transform(W).shape == X.shape


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_torch_input_gives_float32_factors(half):
    X = torch.rand(20, 10).to(half)
    W = NMF(3, max_iter=30, random_state=0).fit_transform(X)
    assert W.dtype == torch.float32 and torch.isfinite(W).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_dtype_is_preserved_and_float32_agrees_with_float64(digits, dtype):
    # MU: its path is a smooth function of the data (Newton's per-column choices flip with rounding; its float32
    # loss is checked in test_newton).
    W64 = NMF(6, max_iter=50, random_state=0, beta_loss="kullback-leibler", solver="mu").fit_transform(digits)
    W = NMF(6, max_iter=50, random_state=0, beta_loss="kullback-leibler", solver="mu").fit_transform(
        digits.astype(dtype))
    assert W.dtype == dtype
    np.testing.assert_allclose(W, W64, rtol=0, atol=1e-3 * np.abs(W64).max())


def test_integer_input_is_converted_like_scikit_learn(digits):
    W = NMF(4, max_iter=10, random_state=0).fit_transform(digits.astype(np.int64))
    assert W.dtype == np.float64


def test_same_seed_same_result(digits):
    first = NMF(5, init="random", random_state=3, max_iter=30).fit_transform(digits)
    second = NMF(5, init="random", random_state=3, max_iter=30).fit_transform(digits)
    np.testing.assert_array_equal(first, second)


def test_inputs_are_never_modified(digits):
    X = digits.copy()
    W0, H0 = _initialize_nmf(X, 4, init="random", random_state=0)
    W_copy, H_copy = W0.copy(), H0.copy()
    model = NMF(4, init="custom", max_iter=10)
    model.fit_transform(X, W=W0, H=H0)
    model.transform(X)
    np.testing.assert_array_equal(X, digits)
    np.testing.assert_array_equal(W0, W_copy)
    np.testing.assert_array_equal(H0, H_copy)


@pytest.mark.parametrize("shape,k", [((1, 5), 1), ((6, 1), 1), ((5, 4), 7), ((9, 9), 9)], ids=str)
def test_odd_shapes(shape, k):
    X = np.random.RandomState(0).rand(*shape)
    model = NMF(k, max_iter=20)
    W = model.fit_transform(X)
    assert W.shape == (shape[0], k) and model.components_.shape == (k, shape[1])
    assert np.isfinite(W).all() and (W >= 0).all()


@pytest.mark.parametrize("beta_loss", ["frobenius", "kullback-leibler", "itakura-saito", 0.5])
def test_all_zero_input_is_handled(beta_loss):
    W = NMF(2, init="random", beta_loss=beta_loss, max_iter=5, random_state=0).fit_transform(np.zeros((4, 3)))
    assert np.isfinite(W).all()


def test_n_components_auto_and_none():
    X = np.random.RandomState(0).rand(10, 6)
    assert NMF(max_iter=5).fit(X).n_components_ == 6
    assert NMF(None, max_iter=5).fit(X).n_components_ == 6
    H = np.full((3, 6), 0.5)
    W = np.full((10, 3), 0.5)
    assert NMF(init="custom", max_iter=5).fit(X, W=W, H=H).n_components_ == 3


def test_transform_rejects_wrong_feature_count():
    model = NMF(2, max_iter=5).fit(np.random.RandomState(0).rand(10, 6))
    with pytest.raises(ValueError, match="X has 5 features, but NMF is expecting 6 features"):
        model.transform(np.random.RandomState(0).rand(3, 5))


def test_verbose_shows_a_progress_bar_with_the_loss(capsys):
    NMF(2, max_iter=20, verbose=1, random_state=0).fit(np.random.RandomState(0).rand(10, 6))
    assert "loss=" in capsys.readouterr().err


# --- scikit-learn parity where users feel it ----------------------------------------------------------


def test_components_have_exact_zeros_like_scikit_learns():
    X = load_digits().data
    ours = NMF(16, random_state=0).fit(X)
    theirs = SklearnNMF(16, random_state=0).fit(X)
    # Measured: 760 exact zeros in both (of 1024); before the change fastnmf had none (smallest 1.5e-154).
    zeros = int((ours.components_ == 0).sum())
    assert zeros > 0.9 * int((theirs.components_ == 0).sum())
    assert (ours.components_[ours.components_ > 0] >= np.sqrt(np.finfo(np.float64).tiny)).all()
    assert int((ours.transform(X) == 0).sum()) > 0


def test_reaching_max_iter_before_tol_warns_like_scikit_learn():
    from sklearn.exceptions import ConvergenceWarning

    X = np.abs(np.random.RandomState(0).randn(30, 8))
    with pytest.warns(ConvergenceWarning, match="Maximum number of iterations 3 reached"):
        NMF(2, max_iter=3, tol=1e-4, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        NMF(2, max_iter=3, tol=0.0, random_state=0).fit(X)  # tol = 0: a fixed number of iterations, no warning
        NMF(2, max_iter=2000, tol=1e-2, random_state=0).fit(X)  # converged before max_iter
