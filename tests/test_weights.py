"""Entry weights and missing values: Σ M_ij d_β(X_ij | (WH)_ij), for dense and sparse X and weights."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fastnmf import NMF, non_negative_factorization
from fastnmf.layouts import base
from fastnmf.losses import divergence
from fastnmf.objective import objective
from fastnmf.reference import gradient_parts, multiplicative_update, reconstruct_nmf
from fastnmf.validation import as_tensor
from fastnmf.updates import MURule
from fastnmf.weights import weighted_data

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

M, N, K = 29, 21, 3
BETAS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]


def _data(seed=0, zeros=0.3):
    rng = np.random.RandomState(seed)
    X = rng.gamma(2.0, size=(M, N)) * (rng.rand(M, N) >= zeros)
    weights = rng.rand(M, N) * (rng.rand(M, N) < 0.7)  # 30 % of the entries left out
    return X, weights


def _fit(X, beta, **options):
    base = dict(n_components=K, init="random", random_state=0, max_iter=20, tol=0.0, beta_loss=beta, solver="mu")
    return non_negative_factorization(X, **{**base, **options})[:2]


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(base, "BLOCK_ENTRIES", 64)  # 2 columns of 29 rows per block


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("layout", ["dense-dense", "dense-sparse", "sparse-dense", "sparse-sparse"])
def test_weights_of_one_give_the_unweighted_fit(layout, beta, small_blocks):
    X, _ = _data()
    x_layout, w_layout = layout.split("-")
    ones = np.ones_like(X)
    X_in = sp.csr_matrix(X) if x_layout == "sparse" else X
    W_in = sp.csc_matrix(ones) if w_layout == "sparse" else ones
    W_plain, H_plain = _fit(X, beta)
    W_weighted, H_weighted = _fit(X_in, beta, weights=W_in)
    np.testing.assert_allclose(W_weighted, W_plain, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(H_weighted, H_plain, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_entries_of_weight_zero_can_hold_anything(beta, small_blocks):
    X, weights = _data(seed=1)
    X_clean = np.where(weights > 0, X, 0.0)
    # Huge, negative and infinite values where the weight is 0 (a third of those entries each).
    garbage = np.choose(np.arange(M * N).reshape(M, N) % 3, [1e30, -7.0, np.inf])
    X_garbage = np.where(weights > 0, X, garbage)
    expected = _fit(X_clean, beta, weights=weights)
    for X_in, W_in in [(X_garbage, weights), (X_garbage, sp.csr_matrix(weights)),
                       (sp.csr_matrix(X_garbage), weights), (sp.csr_matrix(X_garbage), sp.coo_matrix(weights))]:
        W_fit, H_fit = _fit(X_in, beta, weights=W_in)
        np.testing.assert_allclose(W_fit, expected[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(H_fit, expected[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_missing_values_are_entries_of_weight_zero(beta, small_blocks):
    X, _ = _data(seed=2)
    missing = np.random.RandomState(3).rand(M, N) < 0.2
    X_nan = np.where(missing, np.nan, X)
    expected = _fit(np.where(missing, 0.0, X), beta, weights=(~missing).astype(float))
    # Dense X, sparse X with NaN stored, and NaN together with explicit weights (NaN wins: weight 0).
    coo = sp.coo_matrix(np.where(missing, 1.0, X))
    coo.data[missing[coo.row, coo.col]] = np.nan
    weights = np.where(missing, 5.0, 1.0)
    for X_in, options in [(X_nan, {}), (coo, {}), (torch.from_numpy(X_nan), {}), (X_nan, dict(weights=weights)),
                          (coo.tocsr(), dict(weights=sp.csr_matrix(weights)))]:
        W_fit, H_fit = _fit(X_in, beta, missing_values=np.nan, **options)
        W_fit = W_fit.numpy() if isinstance(W_fit, torch.Tensor) else W_fit
        np.testing.assert_allclose(W_fit, expected[0], rtol=1e-9, atol=1e-12)


def test_missing_values_without_nan_is_the_plain_fit():
    X, _ = _data()
    data = weighted_data(as_tensor(X, check_values=False)[0], None, np.nan)
    assert isinstance(data, torch.Tensor)  # nothing to weight: the unweighted backend runs
    np.testing.assert_array_equal(_fit(X, 1.0, missing_values=np.nan)[0], _fit(X, 1.0)[0])


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("layout", ["dense", "sparse", "missing-in-sparse-x"])
def test_weighted_mu_objective_never_increases(layout, beta, small_blocks):
    X, weights = _data(seed=4, zeros=0.0 if beta <= 0 else 0.3)
    fit_options, missing_values = dict(weights=weights), None
    if layout == "sparse":
        fit_options = dict(weights=sp.csr_matrix(weights))
    elif layout == "missing-in-sparse-x":
        X = sp.coo_matrix(X)
        X.data[::4] = np.nan
        fit_options, missing_values = {}, np.nan
    model = NMF(K, beta_loss=beta, solver="mu", init="random", max_iter=40, tol=0.0, random_state=0,
                check_every=1, alpha_W=0.01, l1_ratio=0.5, missing_values=missing_values)
    model.fit(X, **fit_options)
    history = np.array(model.loss_history_)
    assert len(history) == 41 and np.isfinite(history).all()
    assert np.all(np.diff(history) <= 1e-12 * np.abs(history[:-1])), history


@pytest.mark.parametrize("beta", BETAS)
def test_objective_is_the_weighted_divergence(beta, small_blocks):
    X, weights = _data(seed=5, zeros=0.0)
    rng = np.random.RandomState(6)
    W, H = torch.from_numpy(rng.rand(M, K)), torch.from_numpy(rng.rand(K, N))
    expected = float(torch.sum(torch.from_numpy(weights) * divergence(torch.from_numpy(X), W @ H, beta)))
    for weights_in in (weights, sp.csr_matrix(weights)):
        data = weighted_data(as_tensor(X)[0], weights_in)
        assert float(objective(data, W, H, beta=beta, eps_r=1e-12)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("beta", BETAS + [-0.5])
@pytest.mark.parametrize("kind", ["dense", "sparse", "complement"])
def test_reference_weighted_gradient_parts_equal_the_closed_forms(kind, beta, small_blocks):
    X, weights = _data(seed=7)
    if kind == "complement":  # a sparse X whose NaN entries are missing: weights 1 except there
        coo = sp.coo_matrix(X)
        coo.data[::3] = np.nan
        missing = np.zeros((M, N), dtype=bool)
        missing[coo.row[::3], coo.col[::3]] = True
        data = weighted_data(as_tensor(coo, check_values=False)[0], None, np.nan)
        X_ref, M_ref = np.where(missing, 0.0, coo.toarray()), (~missing).astype(float)
    else:
        data = weighted_data(as_tensor(X)[0], sp.csr_matrix(weights) if kind == "sparse" else weights)
        X_ref, M_ref = X, weights
    rng = np.random.RandomState(8)
    W, H = torch.from_numpy(rng.rand(M, K)), torch.from_numpy(rng.rand(K, N))
    X_ref, M_ref = torch.from_numpy(X_ref), torch.from_numpy(M_ref)
    eps_r = 1e-12
    (num_w, den_w), (num_h, den_h) = gradient_parts(reconstruct_nmf, [W, H], X_ref, beta, eps_r=eps_r, weights=M_ref)
    rule = MURule(beta, 0.1, 0.2, eps_r=eps_r)
    closed_h = rule.statistics(data, W, H)
    closed_w = rule.statistics(data.T, H.T, W.T)
    for reference, closed in [(num_h, closed_h.numerator), (den_h, closed_h.denominator),
                              (num_w, closed_w.numerator.T), (den_w, closed_w.denominator.T)]:
        torch.testing.assert_close(closed, reference, rtol=1e-10, atol=1e-10 * float(reference.abs().max()))
    # The whole update, penalties and safeguard included.
    expected = multiplicative_update(reconstruct_nmf, [W, H.clone()], X_ref, beta, 1, l1=0.1, l2=0.2, eps_r=eps_r,
                                     weights=M_ref)
    updated, _ = rule.update(data, W, H)
    torch.testing.assert_close(updated, expected, rtol=1e-10, atol=0)


def test_reference_ignores_whatever_x_holds_at_weight_zero():
    X, weights = _data(seed=9)
    X_garbage = torch.from_numpy(np.where(weights > 0, X, np.nan))
    W, H = torch.rand(M, K, dtype=torch.float64), torch.rand(K, N, dtype=torch.float64)
    clean = gradient_parts(reconstruct_nmf, [W, H], torch.from_numpy(np.where(weights > 0, X, 0.0)), 1.0,
                           weights=torch.from_numpy(weights))
    dirty = gradient_parts(reconstruct_nmf, [W, H], X_garbage, 1.0, weights=torch.from_numpy(weights))
    for (a, b), (c, d) in zip(clean, dirty):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, d)


def test_estimator_fit_transform_and_transform_with_missing_values():
    X, _ = _data(seed=10)
    X[3, 4] = X[7, 0] = np.nan
    model = NMF(K, missing_values=np.nan, beta_loss="kullback-leibler", max_iter=50, random_state=0)
    W = model.fit_transform(X)
    assert np.isfinite(W).all() and np.isfinite(model.components_).all() and model.n_iter_ >= 1
    assert np.isfinite(model.transform(X)).all()
    # solver="auto" picks MU for weighted Frobenius (HALS has no weighted form).
    weights = np.ones_like(X)
    W_auto = NMF(K, init="random", random_state=0, max_iter=10, tol=0.0).fit_transform(np.nan_to_num(X), weights=weights)
    W_mu, _ = _fit(np.nan_to_num(X), 2.0, weights=weights, max_iter=10)
    np.testing.assert_allclose(W_auto, W_mu, rtol=1e-12)


def test_masked_entries_are_predicted_from_the_others():
    # An exactly rank-2 positive matrix with 20 % of its entries missing: the fit recovers them.
    rng = np.random.RandomState(11)
    truth = (rng.rand(40, 2) + 0.1) @ (rng.rand(2, 30) + 0.1)
    missing = rng.rand(*truth.shape) < 0.2
    model = NMF(2, missing_values=np.nan, init="random", solver="mu", max_iter=1000, tol=0.0, random_state=0)
    W = model.fit_transform(np.where(missing, np.nan, truth))
    predicted = (W @ model.components_)[missing]
    assert np.max(np.abs(predicted - truth[missing]) / truth[missing]) < 1e-5


@pytest.mark.parametrize(
    "X,options,error,match",
    [
        (np.ones((4, 3)), dict(weights=np.ones((3, 4))), ValueError,
         r"weights has shape \(3, 4\) but X has shape \(4, 3\)"),
        (np.ones((4, 3)), dict(weights=-np.eye(4, 3)), ValueError,
         r"Negative values in data passed to NMF \(weights\): 3 negative entries, the smallest -1 at \(0, 0\)"),
        (np.ones((4, 3)), dict(weights=sp.csr_matrix(([-2.0], ([1], [2])), shape=(4, 3))), ValueError,
         r"Negative values in data passed to NMF \(weights\): 1 negative entry, the smallest -2 at \(1, 2\)"),
        (np.ones((4, 3)), dict(weights=np.full((4, 3), np.nan)), ValueError, r"Input weights contains NaN"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), {}, ValueError, r"Input X contains NaN"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), dict(weights=np.ones((2, 2))), ValueError,
         r"first nan at \(0, 1\)\. NMF needs finite values\. Pass missing_values=np\.nan"),
        (sp.coo_matrix(([1.0, np.nan], ([0, 1], [1, 0])), shape=(2, 2)), dict(weights=np.ones((2, 2))), ValueError,
         r"first nan at \(1, 0\).*Pass missing_values=np\.nan"),
        (np.array([[1.0, -3.0], [0.0, 1.0]]), dict(weights=np.ones((2, 2))), ValueError,
         r"Negative values in data passed to NMF \(X\): 1 negative entry, the smallest -3 at \(0, 1\)"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), dict(missing_values=np.nan), ValueError, r"the first inf at \(0, 1\)"),
        (np.ones((2, 2)), dict(missing_values=-1), ValueError, r"Invalid missing_values=-1: expected None or np\.nan"),
        (np.ones((2, 2)), dict(weights=np.ones((2, 2)), solver="hals"), ValueError,
         r"solver='hals' does not support entry weights or missing values; use solver='mu'"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), dict(missing_values=np.nan, solver="hals"), ValueError,
         r"solver='hals' does not support entry weights"),
        (np.ones((2, 2), dtype=np.float32), dict(weights=np.ones((2, 2)), backend="triton"), ValueError,
         r"backend='triton' has no kernels for entry weights or missing values yet"),
    ],
    ids=["shape", "negative", "negative-sparse", "nan-weights", "nan-x", "nan-x-with-weights", "nan-sparse-x",
         "negative-x-where-weighted", "inf-x-missing", "missing-values-not-nan", "hals", "hals-missing", "triton"],
)
def test_bad_weights_and_missing_values(X, options, error, match):
    with pytest.raises(error, match=match):
        non_negative_factorization(X, n_components=1, max_iter=2, **options)


@pytest.mark.parametrize("beta", BETAS)
def test_a_fully_missing_row_and_column_hit_the_safeguard_not_nan(beta):
    # Their numerators and denominators are exactly 0: the denominator floor turns 0/0 into 0, and the
    # factor floor keeps those entries at φ (fastnmf.safeguard).
    X, _ = _data(seed=12, zeros=0.0)
    X[4], X[:, 6] = np.nan, np.nan
    W, H = _fit(X, beta, missing_values=np.nan, max_iter=5)
    assert np.isfinite(W).all() and np.isfinite(H).all()
    # Entries held at the floor come back to the user as exact zeros (scikit-learn parity).
    np.testing.assert_array_equal(W[4], 0.0)
    np.testing.assert_array_equal(H[:, 6], 0.0)


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_missing_values_of_sparse_x_never_visit_every_entry(beta, monkeypatch):
    # Sparse X with NaN holes at β ∈ {1, 2}: the fit and its objective cost O((nnz + holes)·k) — no dense
    # column block of X or of the weights is ever built — and equal the dense-weights fit.
    from fastnmf.layouts import weighted

    X, _ = _data(seed=4, zeros=0.6)
    missing = np.random.RandomState(5).rand(M, N) < 0.15  # holes at stored entries and at zeros alike
    coo = sp.coo_matrix(np.where(missing, 1.0, X))
    coo.data[missing[coo.row, coo.col]] = np.nan
    expected = _fit(np.where(missing, 0.0, X), beta, weights=(~missing).astype(float), max_iter=40)
    data = weighted_data(as_tensor(coo.tocsr(), check_values=False)[0], None, np.nan)
    assert data.sparse_complement and data.X.nnz == int(((X != 0) & ~missing).sum())

    def no_dense_blocks(*args, **kwargs):
        raise AssertionError("a dense column block was built")

    monkeypatch.setattr(weighted.WeightedMatrix, "column_block", no_dense_blocks)
    W_fit, H_fit = _fit(coo.tocsr(), beta, missing_values=np.nan, max_iter=40)
    np.testing.assert_allclose(W_fit, expected[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(H_fit, expected[1], rtol=1e-9, atol=1e-12)
    W, H = torch.as_tensor(W_fit), torch.as_tensor(H_fit)
    held = torch.as_tensor(~missing, dtype=torch.float64)
    r = (W @ H).clamp_min(1e-300)
    exact = float((held * divergence(torch.as_tensor(np.where(missing, 0.0, X)), r, beta)).sum())
    assert float(objective(data, W, H, beta=beta, eps_r=0.0)) == pytest.approx(exact, rel=1e-10)
