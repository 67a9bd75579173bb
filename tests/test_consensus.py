"""fastnmf.consensus (cNMF's method) recovers planted programs; fastnmf.select_k finds the planted rank."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

import fastnmf


def planted(k=6, shape=(500, 150), seed=0, depth=1500):
    rng = np.random.RandomState(seed)
    programs = rng.gamma(0.3, 1.0, (k, shape[1]))
    programs /= programs.sum(axis=1, keepdims=True)
    usage = rng.dirichlet(np.full(k, 0.3), shape[0]) * depth
    return rng.poisson(usage @ programs).astype(np.float64), programs


def matched_cosines(found, truth):
    a = found / np.linalg.norm(found, axis=1, keepdims=True)
    b = truth / np.linalg.norm(truth, axis=1, keepdims=True)
    cosines = a @ b.T
    rows, columns = linear_sum_assignment(-cosines)
    return cosines[rows, columns]


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_consensus_recovers_planted_programs(storage):
    X, programs = planted()
    data = X if storage == "dense" else sp.csr_matrix(X)
    ensemble = fastnmf.fit_ensemble(data, [6], 6, beta_loss=1.0, tol=1e-5, max_iter=300, random_state=0)
    result = fastnmf.consensus(ensemble, 6)
    assert result.components.shape == (6, 150) and result.usages.shape == (500, 6)
    assert np.all(matched_cosines(np.asarray(result.components), programs) >= 0.95)
    assert result.stability > 0.8 and result.kept <= result.pooled == 36
    np.testing.assert_allclose(np.asarray(result.components).sum(axis=1), 1.0)
    assert result.error == pytest.approx(fastnmf.factorization_loss(data, result.usages, result.components, 1.0))


@pytest.mark.slow
def test_select_k_reports_every_statistic_and_plots(tmp_path):
    X, _ = planted(k=4, shape=(200, 80))
    selection = fastnmf.select_k(X, [3, 4, 5], n_replicates=3, beta_loss=1.0, random_state=0)
    table = selection.to_dict()
    assert table["ks"] == [3, 4, 5] and selection.suggested_k == 4
    for name in ("stability", "consensus_error", "cophenetic", "dispersion", "cv_error"):
        assert len(table[name]) == 3 and np.all(np.isfinite(table[name]))
    selection.plot(tmp_path / "k.png")
    assert (tmp_path / "k.png").read_bytes()[:4] == b"\x89PNG"


def _planted_rank_hits(beta, seeds, storage=np.asarray):
    """select_k on planted rank-4 counts for each seed; the selections and how often the CV error is lowest at 4."""
    selections = []
    for seed in seeds:
        X, _ = planted(k=4, shape=(200, 80), seed=seed, depth=500)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            selections.append(fastnmf.select_k(storage(X), [2, 3, 4, 5, 6], n_replicates=3, beta_loss=beta,
                                               random_state=seed))
    hits = sum(int(s.ks[int(np.argmin(s.cv_error))] == 4) for s in selections)
    return selections, hits


@pytest.mark.slow
@pytest.mark.parametrize("beta", [2.0, 1.0])
def test_cross_validation_is_lowest_at_the_planted_rank(beta):
    _, hits = _planted_rank_hits(beta, range(10))
    assert hits >= 9


@pytest.mark.slow
@pytest.mark.parametrize("beta", [2.0, 1.0])
def test_cross_validation_on_sparse_x_holds_out_entries_and_finds_the_planted_rank(beta):
    # Sparse X: the held-out entries are missing values of a sparse fit (O((nnz + held-out)·k)); the error is
    # finite and, on most seeds, lowest at the planted rank, as on dense X.
    selections, hits = _planted_rank_hits(beta, range(4), storage=sp.csr_matrix)
    for selection in selections:
        assert np.all(np.isfinite(selection.cv_error)) and not selection.notes
    assert hits >= 3
    masks = fastnmf.selection._sparse_masks((200, 80), 0.1, 2, 0)
    assert all(0.08 < mask.size / 16000 < 0.11 and np.all(np.diff(mask) > 0) for mask in masks)
