"""The diagonalized Newton KL rule (fastnmf.newton) and solver="newton": the step against its formula, the
choice per column, layouts, monotone decrease, degenerate shapes, and the errors where it does not run."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fastnmf import NMF, non_negative_factorization
from fastnmf.layouts import DenseMatrix, WeightedMatrix
from fastnmf.losses import beta_divergence
from fastnmf.newton import NewtonKLRule
from fastnmf.safeguard import factor_floor
from fastnmf.validation import as_tensor

from low_rank import low_rank_counts

EPS_R = 1e-12


def _problem(m=30, n=20, k=4, seed=0, dtype=torch.float64):
    X = torch.from_numpy(low_rank_counts((m, n), k, seed)).to(dtype)
    generator = torch.Generator().manual_seed(seed)
    W = torch.rand(m, k, generator=generator, dtype=dtype) + 0.1
    H = torch.rand(k, n, generator=generator, dtype=dtype) + 0.1
    return X, W, H


def _kl(X, W, H) -> float:
    """KL of numpy X against W H (float64, the floor of the tests' rules)."""
    R = torch.as_tensor(np.asarray(W, dtype=np.float64) @ np.asarray(H, dtype=np.float64))
    return float(beta_divergence(torch.as_tensor(np.asarray(X, dtype=np.float64)), R, 1.0, eps_r=EPS_R))


def _column_kl(X, W, H):
    """KL of each column of X against W h_j, written out (float64)."""
    R = (W @ H).clamp_min(EPS_R)
    return (torch.xlogy(X, X / R) - X + R).sum(dim=0)


def test_the_newton_candidate_is_the_diagonal_newton_step():
    X, W, H = _problem()
    rule = NewtonKLRule(eps_r=EPS_R)
    statistics = rule.statistics(DenseMatrix(X), W, H)
    H_mu, H_newton = rule.candidates(H, statistics)
    R = (W @ H).clamp_min(EPS_R)
    gradient = W.sum(0)[:, None] - W.T @ (X / R)
    curvature = (W * W).T @ (X / R**2)
    torch.testing.assert_close(H_newton, (H - gradient / curvature).clamp_min(factor_floor(H.dtype)))
    torch.testing.assert_close(H_mu, H * (W.T @ (X / R)) / W.sum(0)[:, None])


def _change_of_f(rule, X, W, H, H_trial):
    """f(H_trial) − f(H) per column as the rule computes it (its two passes)."""
    statistics = rule.statistics(X, W, H)
    gain = rule.log_gain(X, W, H_trial, statistics)
    return rule.linear_change(H, H_trial, statistics.denominator) - gain.reshape(-1)


def test_the_change_of_the_column_objective_is_the_change_of_its_kl():
    X, W, H = _problem()
    H_trial = H * torch.rand(H.shape, generator=torch.Generator().manual_seed(1), dtype=H.dtype) * 2
    expected = _column_kl(X, W, H_trial) - _column_kl(X, W, H)
    rule = NewtonKLRule(eps_r=EPS_R)
    torch.testing.assert_close(_change_of_f(rule, DenseMatrix(X), W, H, H_trial), expected)


def test_x_in_several_parts_gives_the_change_from_two_sums(monkeypatch):
    from fastnmf.layouts import base

    X, W, H = _problem(m=20, n=9)
    H_trial = H * 1.5
    M = torch.ones_like(X)
    rule = NewtonKLRule(eps_r=EPS_R)
    whole = _change_of_f(rule, WeightedMatrix(X, M), W, H, H_trial)
    monkeypatch.setattr(base, "BLOCK_ENTRIES", 60)  # column blocks of 3: r does not outlive its block
    parts = WeightedMatrix(X, M)
    assert len(list(parts.blocks())) == 3 and rule.statistics(parts, W, H).reconstruction is None
    torch.testing.assert_close(_change_of_f(rule, parts, W, H, H_trial), whole)
    torch.testing.assert_close(rule.update(parts, W, H)[0], rule.update(DenseMatrix(X), W, H)[0])


def test_each_column_takes_newton_where_it_lowers_the_objective_else_mu():
    X, W, H = _problem(seed=3)
    rule = NewtonKLRule(eps_r=EPS_R)
    statistics = rule.statistics(DenseMatrix(X), W, H)
    H_mu, H_newton = rule.candidates(H, statistics)
    H_new, fit = rule.update(DenseMatrix(X), W, H)
    assert fit is None
    newton_better = _column_kl(X, W, H_newton) < _column_kl(X, W, H)
    assert newton_better.any() and not newton_better.all()  # the test data has both kinds of columns
    torch.testing.assert_close(H_new, torch.where(newton_better, H_newton, H_mu), rtol=0, atol=0)
    assert bool((_column_kl(X, W, H_new) <= _column_kl(X, W, H) * (1 + 1e-12)).all())


def test_penalties_enter_the_step_and_the_objective():
    X, W, H = _problem(seed=1)
    l1, l2 = 0.3, 0.7
    rule = NewtonKLRule(l1, l2, eps_r=EPS_R)
    statistics = rule.statistics(DenseMatrix(X), W, H)
    _, H_newton = rule.candidates(H, statistics)
    R = (W @ H).clamp_min(EPS_R)
    gradient = W.sum(0)[:, None] + l1 + l2 * H - W.T @ (X / R)
    curvature = (W * W).T @ (X / R**2) + l2
    torch.testing.assert_close(H_newton, (H - gradient / curvature).clamp_min(factor_floor(H.dtype)))

    def penalized(H_):
        return _column_kl(X, W, H_) + l1 * H_.sum(0) + 0.5 * l2 * (H_ * H_).sum(0)

    H_new, _ = rule.update(DenseMatrix(X), W, H)
    assert bool((penalized(H_new) <= penalized(H) * (1 + 1e-12)).all())


def test_dense_sparse_and_weighted_layouts_give_the_same_update():
    X, W, H = _problem(m=25, n=17, seed=2)
    X[X < 1] = 0.0
    rule = NewtonKLRule(eps_r=EPS_R)
    dense, _ = rule.update(DenseMatrix(X), W, H)
    sparse_x, _ = as_tensor(sp.csr_matrix(X.numpy()))
    sparse, _ = rule.update(sparse_x, W, H)
    torch.testing.assert_close(sparse, dense)
    weighted, _ = rule.update(WeightedMatrix(X, torch.ones_like(X)), W, H)
    torch.testing.assert_close(weighted, dense)
    # W's update is H's on the transpose, for every layout.
    dense_w, _ = DenseMatrix(X).update_w(rule, W, H)
    sparse_w, _ = sparse_x.update_w(rule, W, H)
    torch.testing.assert_close(sparse_w, dense_w)


def test_weights_leave_out_the_entries_of_weight_zero():
    X, W, H = _problem(m=20, n=12, seed=4)
    M = (torch.rand(X.shape, generator=torch.Generator().manual_seed(0)) < 0.7).to(X.dtype)
    rule = NewtonKLRule(eps_r=EPS_R)
    H_new, _ = rule.update(WeightedMatrix(X * M, M), W, H)
    garbage = X * M + (1 - M) * 1e3  # what X holds where the weight is 0 must not matter
    H_other, _ = rule.update(WeightedMatrix(garbage, M), W, H)
    torch.testing.assert_close(H_new, H_other, rtol=0, atol=0)
    statistics = rule.statistics(WeightedMatrix(X * M, M), W, H)
    torch.testing.assert_close(statistics.denominator, W.T @ M)


@pytest.mark.parametrize("kind", ["dense", "csr", "weighted"])
@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_objective_never_increases_over_40_newton_iterations(kind, alpha):
    X = low_rank_counts((40, 30), 5, seed=7)
    weights = None
    if kind == "csr":
        X = sp.csr_matrix(X)
    elif kind == "weighted":
        weights = (np.random.RandomState(0).rand(*X.shape) < 0.8).astype(float)
    model = NMF(5, solver="newton", beta_loss="kullback-leibler", init="random", max_iter=40, tol=0.0,
                check_every=1, random_state=0, alpha_W=alpha, l1_ratio=0.5)
    model.fit(X, weights=weights)
    history = np.array(model.loss_history_)
    assert np.all(np.diff(history) <= 1e-10 * history[:-1]), history


def test_newton_reaches_a_lower_kl_than_mu_in_the_same_iterations():
    X = low_rank_counts((200, 120), 8, seed=5)
    options = dict(n_components=8, beta_loss="kullback-leibler", init="random", max_iter=30, tol=0.0, random_state=0)
    mu = NMF(solver="mu", **options).fit(X).loss_history_[-1]
    newton = NMF(solver="newton", **options).fit(X).loss_history_[-1]
    assert newton < 0.9 * mu, (newton, mu)


@pytest.mark.parametrize("m,n,k", [(1, 7, 1), (7, 1, 1), (5, 4, 6), (6, 6, 6)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_odd_shapes_and_zero_rows_and_columns_stay_finite(m, n, k, dtype):
    X = low_rank_counts((m, n), 2, seed=1, dtype=dtype)
    if m > 1 and n > 1:
        X[0] = 0.0
        X[:, -1] = 0.0
    W, H, n_iter = non_negative_factorization(X, n_components=k, init="random", solver="newton",
                                              beta_loss="kullback-leibler", max_iter=25, tol=0.0, random_state=0)
    assert 1 <= n_iter <= 25 and W.dtype == dtype  # an exact fit (loss 0) stops early
    for factor in (W, H):
        assert np.isfinite(factor).all() and (factor >= 0).all()
    start = non_negative_factorization(X, n_components=k, init="random", solver="newton", beta_loss=1, max_iter=1,
                                       tol=0.0, random_state=0)
    assert _kl(X, W, H) <= _kl(X, start[0], start[1]) * (1 + 1e-5) + 1e-6


def test_all_zero_x_gives_zero_factors_without_nan():
    W, H, _ = non_negative_factorization(np.zeros((5, 4)), n_components=2, init="random", solver="newton",
                                         beta_loss="kullback-leibler", max_iter=5, tol=0.0, random_state=0)
    assert np.isfinite(W).all() and np.isfinite(H).all() and not (W @ H).any()


def test_transform_solves_w_for_fixed_h():
    X = low_rank_counts((60, 25), 3, seed=2)
    model = NMF(3, solver="newton", beta_loss="kullback-leibler", max_iter=300, tol=1e-8, random_state=0)
    W_fit = model.fit_transform(X)
    W = model.transform(X)  # from a fresh start, H fixed
    assert _kl(X, W, model.components_) <= 1.01 * _kl(X, W_fit, model.components_)


def test_float32_torch_input_on_the_cpu_keeps_its_dtype_and_device():
    X = torch.from_numpy(low_rank_counts((30, 20), 3, seed=0)).float()
    W, H, _ = non_negative_factorization(X, n_components=3, solver="newton", beta_loss=1, max_iter=10, tol=0.0,
                                         random_state=0)
    assert W.dtype == H.dtype == torch.float32 and W.device == X.device


@pytest.mark.parametrize("beta_loss", ["frobenius", "itakura-saito", 0.5])
def test_newton_rejects_other_losses_before_any_work(beta_loss):
    with pytest.raises(ValueError, match=r"solver='newton' minimizes the Kullback-Leibler divergence only "
                                         r"\(beta_loss=1\), got beta_loss="):
        NMF(2, solver="newton", beta_loss=beta_loss).fit(-np.ones((3, 3)))  # negative X: would fail later


def test_streamed_x_is_refused_before_reading_it():
    with pytest.raises(ValueError, match=r"solver='newton' does not support streamed X"):
        NMF(2, solver="newton", beta_loss=1, chunk_rows=2).fit(-np.ones((6, 3)))  # negative X: read later


def test_the_first_iterations_are_mu_iterations_and_a_resumed_fit_does_not_repeat_them():
    from fastnmf.solvers import _NEWTON_MU_WARMUP

    X = low_rank_counts((30, 20), 3, seed=3)
    options = dict(n_components=3, beta_loss="kullback-leibler", init="random", tol=0.0, random_state=0)
    mu = NMF(solver="mu", max_iter=_NEWTON_MU_WARMUP, **options).fit(X)
    newton = NMF(solver="newton", max_iter=_NEWTON_MU_WARMUP, **options).fit(X)
    np.testing.assert_array_equal(newton.components_, mu.components_)
    longer = NMF(solver="newton", max_iter=_NEWTON_MU_WARMUP + 1, **options).fit(X)
    assert not np.array_equal(longer.components_, NMF(solver="mu", max_iter=_NEWTON_MU_WARMUP + 1, **options)
                              .fit(X).components_)


def test_float32_reaches_the_float64_loss():
    from sklearn.datasets import load_digits

    X = load_digits().data
    options = dict(n_components=6, beta_loss="kullback-leibler", solver="newton", max_iter=50, tol=0.0, random_state=0)
    loss64 = NMF(**options).fit(X).loss_history_[-1]
    loss32 = NMF(**options).fit(X.astype(np.float32)).loss_history_[-1]
    assert abs(loss32 - loss64) <= 1e-3 * loss64


@pytest.mark.parametrize("kind", ["sparse-pattern", "sparse-missing"])
def test_sparse_weight_patterns_and_missing_values_decrease_monotonically(kind):
    X = low_rank_counts((30, 20), 3, seed=6)
    rng = np.random.RandomState(1)
    if kind == "sparse-pattern":  # observed entries only (a ratings matrix): weight 1 on the pattern
        pattern = sp.csr_matrix((rng.rand(*X.shape) < 0.5).astype(float))
        data, options = X, dict(weights=pattern)
    else:  # sparse X with a few NaN entries left out (missing_values): every other entry counts
        X[X < 1] = 0.0
        X[rng.rand(*X.shape) < 0.05] = np.nan
        data, options = sp.csr_matrix(X), {}
    model = NMF(3, solver="newton", beta_loss="kullback-leibler", init="random", max_iter=30, tol=0.0, check_every=1,
                random_state=0, missing_values=np.nan if kind == "sparse-missing" else None)
    model.fit(data, **options)
    history = np.array(model.loss_history_)
    assert np.isfinite(history).all() and history[-1] < 0.5 * history[0]
    assert np.all(np.diff(history) <= 1e-10 * history[:-1]), history
