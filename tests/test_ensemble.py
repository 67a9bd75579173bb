"""fastnmf.fit_ensemble: every replicate equals its single fit — same start (replicate_seed), same n_iter with
its own tol test (replicates stop at different iterations and are frozen), same factors (float64)."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from low_rank import low_rank_counts
import fastnmf

CASES = [(2.0, "mu"), (2.0, "hals"), (1.0, "mu"), (0.5, "mu")]


def counts(shape=(90, 40), seed=0):
    return low_rank_counts(shape, 4, seed)


def alone(X, k, r, **options):
    if options.get("solver") == "hals":
        options = dict(options, extrapolate=False)  # the batch runs plain HALS (fit_ensemble's docstring)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fastnmf.non_negative_factorization(X, n_components=k, init="random", backend="torch",
                                                  random_state=fastnmf.replicate_seed(7, k, r), **options)


@pytest.mark.parametrize("beta, solver", CASES)
@pytest.mark.parametrize("storage", ["dense", pytest.param("csr", marks=pytest.mark.slow)])
def test_every_replicate_equals_its_single_fit(beta, solver, storage):
    X = counts() if storage == "dense" else sp.csr_matrix(counts())
    options = dict(beta_loss=beta, solver=solver, tol=1e-4, max_iter=300)
    ensemble = fastnmf.fit_ensemble(X, [2, 4], 3, random_state=7, **options)
    iterations = set()
    for k in (2, 4):
        for r in range(3):
            W, H, n_iter = alone(X, k, r, **options)
            assert ensemble.n_iter(k, r) == n_iter
            iterations.add(n_iter)
            np.testing.assert_allclose(ensemble.W(k, r), W, rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(ensemble.H(k, r), H, rtol=1e-10, atol=1e-13)
    assert len(iterations) > 1  # the replicates stopped at different iterations


def test_bf16_replicates_equal_their_bf16_single_fits():
    X = counts().astype(np.float32)
    options = dict(beta_loss=1.0, solver="mu", tol=1e-4, max_iter=200, precision="bf16")
    ensemble = fastnmf.fit_ensemble(X, [2, 3], 2, random_state=7, **options)
    for k, r in ensemble.finished:
        W, H, n_iter = alone(X, k, r, **options)
        assert ensemble.n_iter(k, r) == n_iter
        np.testing.assert_allclose(ensemble.H(k, r), H, rtol=1e-5, atol=1e-7)
    assert ensemble.options["precision"] == "bf16"  # what consensus refits the usages with


def test_adding_replicates_or_ranks_changes_nothing_that_was_there():
    X = counts()
    small = fastnmf.fit_ensemble(X, 3, 2, random_state=1, max_iter=40)
    large = fastnmf.fit_ensemble(X, [2, 3, 5], 4, random_state=1, max_iter=40)
    for r in range(2):  # the same fit; the stacked products of a larger batch round differently
        np.testing.assert_allclose(small.H(3, r), large.H(3, r), rtol=1e-10, atol=1e-13)
        assert small.n_iter(3, r) == large.n_iter(3, r)
    assert large.ranks == [2, 3, 5] and large.n_replicates == 4 and len(large.finished) == 12


def test_a_small_memory_budget_splits_the_batch_without_changing_the_fits():
    X = counts()
    whole = fastnmf.fit_ensemble(X, [2, 3], 3, random_state=2, max_iter=30)
    split = fastnmf.fit_ensemble(X, [2, 3], 3, random_state=2, max_iter=30, memory_budget=(90 + 40) * 8 * 3)
    for k, r in whole.finished:
        np.testing.assert_allclose(split.H(k, r), whole.H(k, r), rtol=1e-12)


def test_weights_and_keep_W():
    X = counts()
    weights = (np.random.RandomState(0).rand(*X.shape) > 0.2).astype(float)
    ensemble = fastnmf.fit_ensemble(X, 3, 2, random_state=7, beta_loss=1.0, weights=weights, max_iter=50, keep_W=False)
    W, H, _ = alone(X, 3, 1, beta_loss=1.0, weights=weights, max_iter=50)
    np.testing.assert_allclose(ensemble.H(3, 1), H, rtol=1e-10)
    with pytest.raises(ValueError, match="keep_W=False"):
        ensemble.W(3, 1)


def test_bad_input_is_refused_before_any_work():
    X = counts()
    with pytest.raises(ValueError, match="n_components is empty"):
        fastnmf.fit_ensemble(X, [], 3)
    with pytest.raises(ValueError, match="every rank must be an int ≥ 1"):
        fastnmf.fit_ensemble(X, [3, 0], 3)
    with pytest.raises(ValueError, match="n_replicates=0"):
        fastnmf.fit_ensemble(X, 3, 0)
    with pytest.raises(ValueError, match="solver='hals' for beta_loss=1"):
        fastnmf.fit_ensemble(X, 3, 2, solver="hals", beta_loss=1)
    with pytest.raises(ValueError, match="solver='newton' for beta_loss=1: an ensemble runs 'mu'"):
        fastnmf.fit_ensemble(-X, 3, 2, solver="newton", beta_loss=1)  # before the values are read
    with pytest.raises(ValueError, match="Negative values"):
        fastnmf.fit_ensemble(-X, 3, 2)
    ensemble = fastnmf.fit_ensemble(X, 3, 1, max_iter=5)
    with pytest.raises(KeyError, match="n_components=4"):
        ensemble.H(4, 0)
    with pytest.raises(ValueError, match="k=4 was not fitted"):
        fastnmf.consensus(ensemble, 4)
