"""Checkpoints of a running ensemble: a resumed batch ends exactly as the one never stopped; the file is
refused for other data, other weights or when damaged."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import fastnmf
from fastnmf import ensemble_checkpoints
from fastnmf.checkpoint import CheckpointError
from low_rank import low_rank_counts

OPTIONS = dict(tol=1e-4, max_iter=120, check_every=10, random_state=3)


def _snapshots(monkeypatch, folder):
    """Keep a copy of every checkpoint written, by iteration."""
    import shutil

    written = {}
    original = ensemble_checkpoints.write_ensemble_checkpoint

    def keep(path, **state):
        original(path, **state)
        copy = folder / f"at-{state['iteration']}.npz"
        shutil.copy(path, copy)
        written[state["iteration"]] = copy

    monkeypatch.setattr(fastnmf.ensemble, "write_ensemble_checkpoint", keep)
    return written


@pytest.mark.parametrize("beta, solver, storage", [(2.0, "hals", "dense"),
                                                   pytest.param(1.0, "mu", "csr", marks=pytest.mark.slow),
                                                   pytest.param(2.0, "mu", "dense", marks=pytest.mark.slow)])
def test_a_resumed_ensemble_ends_as_the_one_never_stopped(tmp_path, monkeypatch, beta, solver, storage):
    X = low_rank_counts((80, 30), 3, 1)
    X = sp.csr_matrix(X) if storage == "csr" else X
    options = dict(OPTIONS, beta_loss=beta, solver=solver, keep_W=storage == "dense")
    written = _snapshots(monkeypatch, tmp_path)
    whole = fastnmf.fit_ensemble(X, [2, 3], 3, checkpoint=tmp_path / "run.npz", checkpoint_every=0, **options)
    iterations = sorted(written)
    assert iterations and iterations[0] == 10
    # Resume from the first checkpoint after a problem finished: some problems are finished in it and some
    # still running, so both kinds are restored.
    n_iters = [whole.n_iter(*key) for key in whole.finished]
    middle = next(i for i in iterations if min(n_iters) <= i < max(n_iters))
    finished_then = [key for key in whole.finished if whole.n_iter(*key) <= middle]
    assert finished_then and len(finished_then) < len(whole.finished), (middle, [whole.n_iter(*k) for k in whole.finished])
    finished_later = []
    resumed = fastnmf.resume_ensemble(written[middle], X, on_finish=lambda k, r, result: finished_later.append((k, r)))
    assert sorted(finished_later) == sorted(set(whole.finished) - set(finished_then))
    assert resumed.finished == whole.finished
    for key in whole.finished:
        assert resumed.n_iter(*key) == whole.n_iter(*key)
        assert resumed.loss_history(*key) == whole.loss_history(*key)
        assert np.array_equal(np.asarray(resumed.H(*key)), np.asarray(whole.H(*key)))  # bit for bit
        if storage == "dense":
            assert np.array_equal(np.asarray(resumed.W(*key)), np.asarray(whole.W(*key)))


def test_a_checkpoint_is_refused_for_other_data_weights_or_damage(tmp_path, monkeypatch):
    X = low_rank_counts((60, 20), 3, 2)
    written = _snapshots(monkeypatch, tmp_path)
    fastnmf.fit_ensemble(X, 2, 2, checkpoint=tmp_path / "run.npz", checkpoint_every=0, **OPTIONS)
    path = written[min(written)]
    other = X.copy()
    other[0, 0] += 1.0
    with pytest.raises(CheckpointError, match=r"made for X of shape \(60, 20\).*this X has shape \(60, 20\)"):
        fastnmf.resume_ensemble(path, other)
    with pytest.raises(CheckpointError, match="made without weights"):
        fastnmf.resume_ensemble(path, X, weights=np.ones_like(X))
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or incomplete"):
        fastnmf.resume_ensemble(damaged, X)
    with pytest.raises(ValueError, match=r"Invalid checkpoint_every=-1"):
        fastnmf.fit_ensemble(X, 2, 2, checkpoint=tmp_path / "x.npz", checkpoint_every=-1)


def test_checkpoints_are_written_only_at_checks_and_at_most_every_checkpoint_every(tmp_path, monkeypatch):
    X = low_rank_counts((60, 20), 3, 2)
    written = _snapshots(monkeypatch, tmp_path)
    fastnmf.fit_ensemble(X, 2, 2, checkpoint=tmp_path / "run.npz", checkpoint_every=3600, **dict(OPTIONS, tol=0.0))
    assert written == {}  # an hour between writes: none in a short fit
    fastnmf.fit_ensemble(X, 2, 2, checkpoint=tmp_path / "run.npz", checkpoint_every=0, **dict(OPTIONS, tol=0.0))
    assert sorted(written) == list(range(10, 120, 10))  # every check but the last iteration (the result itself)
    state = ensemble_checkpoints.read_ensemble_checkpoint(tmp_path / "run.npz")
    assert state["meta"]["iteration"] == 110 and torch.is_tensor(torch.as_tensor(state["arrays"]["W_0"]))
