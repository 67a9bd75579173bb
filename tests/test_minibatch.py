"""fastnmf.MiniBatchNMF: scikit-learn's online algorithm (the same batches, steps and stopping), any β, on
any source of rows — it reaches scikit-learn's full-data loss within 1 % (here: to round-off)."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition import MiniBatchNMF as SklearnMiniBatchNMF

from low_rank import low_rank_counts
import fastnmf

OPTIONS = dict(n_components=5, batch_size=100, random_state=0, max_iter=20, tol=0.0)


def counts(shape=(600, 80), seed=0):
    return low_rank_counts(shape, 5, seed)


def full_loss(X, W, H, beta):
    return fastnmf.factorization_loss(X, W, H, beta)


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.5])
@pytest.mark.parametrize("init", ["random", pytest.param("nndsvda", marks=pytest.mark.slow)])
def test_reaches_scikit_learns_full_data_loss(beta, init):
    X = counts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = SklearnMiniBatchNMF(beta_loss=beta, init=init, **OPTIONS)
        W_theirs = theirs.fit_transform(X)
    ours = fastnmf.MiniBatchNMF(beta_loss=beta, init=init, **OPTIONS)
    W_ours = ours.fit_transform(X)
    assert ours.n_steps_ == theirs.n_steps_ and ours.n_iter_ == theirs.n_iter_
    reference = full_loss(X, W_theirs, theirs.components_, beta)
    assert full_loss(X, W_ours, ours.components_, beta) == pytest.approx(reference, rel=1e-2)
    assert ours.reconstruction_err_ == pytest.approx(np.sqrt(2 * full_loss(X, W_ours, ours.components_, beta)), rel=1e-6)


@pytest.mark.slow
def test_fresh_restarts_and_penalties_follow_scikit_learn():
    X = counts()
    options = dict(OPTIONS, beta_loss=1.0, init="random", fresh_restarts=True, alpha_W=0.001, l1_ratio=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = SklearnMiniBatchNMF(**options)
        W_theirs = theirs.fit_transform(X)
    ours = fastnmf.MiniBatchNMF(**options)
    W_ours = ours.fit_transform(X)
    reference = full_loss(X, W_theirs, theirs.components_, 1.0)
    assert full_loss(X, W_ours, ours.components_, 1.0) == pytest.approx(reference, rel=1e-2)


def test_partial_fit_then_transform():
    X = counts()
    model = fastnmf.MiniBatchNMF(beta_loss=1.0, init="random", **{k: v for k, v in OPTIONS.items() if k != "max_iter"})
    for start in range(0, 600, 150):
        model.partial_fit(X[start:start + 150])
    assert model.n_steps_ == 4 and model.components_.shape == (5, 80)
    W = model.transform(X)
    assert W.shape == (600, 5) and np.all(W >= 0)
    with pytest.raises(ValueError, match="80"):
        model.partial_fit(X[:, :10])


@pytest.mark.slow
def test_streamed_sources_give_the_in_memory_result(tmp_path):
    X = counts()
    path = tmp_path / "x.npy"
    np.save(path, X)
    reference = fastnmf.MiniBatchNMF(beta_loss=1.0, init="random", **OPTIONS)
    W = reference.fit_transform(X)
    for given in (np.load(path, mmap_mode="r"), sp.csr_matrix(X), fastnmf.Chunks(lambda a, b: X[a:b], X.shape)):
        model = fastnmf.MiniBatchNMF(beta_loss=1.0, init="random", **OPTIONS)
        np.testing.assert_allclose(model.fit_transform(given), W, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(model.components_, reference.components_, rtol=1e-9, atol=1e-12)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="Invalid batch_size=0"):
        fastnmf.MiniBatchNMF(3, batch_size=0).fit(counts())
    with pytest.raises(ValueError, match="Invalid forget_factor=2"):
        fastnmf.MiniBatchNMF(3, forget_factor=2).fit(counts())
    X = counts()
    X[3, 4] = -1
    with pytest.raises(ValueError, match="Negative values"):
        fastnmf.MiniBatchNMF(3).fit(X)
