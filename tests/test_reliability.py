"""Reliability: interrupts keep the work, checkpoints resume exactly, faults give actionable errors."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastnmf import NMF, checkpoint as checkpoint_module
from fastnmf import newton, solvers, updates
from fastnmf.checkpoint import CheckpointError

X_DATA = np.abs(np.random.RandomState(0).randn(40, 12)) + 0.01


_RULES = {"mu_update_h": updates.MURule, "hals_update_h": updates.HALSRule, "newton_update_h": newton.NewtonKLRule}


def _patch_op(monkeypatch, op, on_call):
    """Replace the half-update ``op`` (the ``update`` of the MU or HALS rule: two calls per iteration) by
    ``on_call(number, original, *args, **kwargs)``."""
    rule = _RULES[op]
    original = rule.update
    calls = {"count": 0}

    def patched(self, *args, **kwargs):
        calls["count"] += 1
        return on_call(calls["count"], lambda *a, **k: original(self, *a, **k), *args, **kwargs)

    monkeypatch.setattr(rule, "update", patched)


def _fail_on_call(monkeypatch, op, number, error):
    """A fault inside the loop: op ``op`` raises ``error`` on its ``number``-th call."""

    def on_call(count, original, *args, **kwargs):
        if count == number:
            raise error
        return original(*args, **kwargs)

    _patch_op(monkeypatch, op, on_call)


@pytest.mark.parametrize("solver,op,beta_loss", [("mu", "mu_update_h", "frobenius"),
                                                ("hals", "hals_update_h", "frobenius"),
                                                ("newton", "newton_update_h", "kullback-leibler")])
def test_ctrl_c_keeps_the_last_checked_iterate_and_the_estimator_stays_usable(monkeypatch, solver, op, beta_loss):
    warmup = solvers._NEWTON_MU_WARMUP if solver == "newton" else 0  # Newton's first iterations are MU's
    _fail_on_call(monkeypatch, op, 2 * (25 - warmup) + 1, KeyboardInterrupt())  # during iteration 26
    model = NMF(3, solver=solver, beta_loss=beta_loss, max_iter=100, tol=0.0, check_every=10, random_state=0)
    with pytest.warns(UserWarning, match=r"interrupted: keeping the last checked iterate \(iteration 20\)"):
        with pytest.raises(KeyboardInterrupt):
            model.fit(X_DATA)
    assert model.n_iter_ == 20 and len(model.loss_history_) == 3
    assert model.components_.shape == (3, 12) and np.isfinite(model.components_).all()
    assert model.transform(X_DATA).shape == (40, 3)


def test_non_finite_values_raise_floating_point_error_naming_the_iterations(monkeypatch):
    def poisoned(count, original, *args, **kwargs):
        H_new, fit = original(*args, **kwargs)
        return (H_new.fill_(float("nan")) if count == 15 else H_new), fit

    _patch_op(monkeypatch, "mu_update_h", poisoned)
    with pytest.raises(FloatingPointError, match="between iterations 0 and 10 .*beta_loss=1.0"):
        NMF(2, solver="mu", beta_loss=1, max_iter=50, tol=0.0, random_state=0).fit(X_DATA)


def test_gpu_out_of_memory_becomes_an_actionable_error(monkeypatch):
    _fail_on_call(monkeypatch, "mu_update_h", 3, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    with pytest.raises(MemoryError, match=r"Out of GPU memory: X is 40×12 torch.float64 .* k=2, beta_loss=1.0, "
                                          r"backend='torch'.*backend='triton'.*float16/bfloat16.*sparse"):
        NMF(2, solver="mu", beta_loss=1, max_iter=5, random_state=0).fit(X_DATA)


def test_out_of_memory_on_sparse_data_sizes_the_stored_entries():
    import scipy.sparse as sp

    from fastnmf.errors import out_of_memory_error
    from fastnmf.validation import as_tensor

    X, _ = as_tensor(sp.random(200, 100, density=0.05, format="csr", random_state=0))
    message = str(out_of_memory_error(X, 4, 1.0, "torch", 4))
    assert "X is 200×100 1000 stored entries of" in message and "pass X as a sparse matrix" not in message


@pytest.mark.parametrize("solver,extrapolate", [("mu", False), ("hals", False), ("hals", True), ("newton", False)],
                         ids=["mu", "hals", "hals-extrapolated", "newton"])
def test_checkpoint_and_resume_reach_the_uninterrupted_result(tmp_path, monkeypatch, solver, extrapolate):
    path = tmp_path / "fit.npz"
    beta_loss = "kullback-leibler" if solver == "newton" else "frobenius"
    options = dict(n_components=3, solver=solver, beta_loss=beta_loss, tol=0.0, check_every=10, random_state=0,
                   extrapolate=extrapolate)
    straight = NMF(max_iter=60, **options).fit(X_DATA)

    op = f"{solver}_update_h"
    _fail_on_call(monkeypatch, op, 2 * 33 + 1, KeyboardInterrupt())
    with pytest.warns(UserWarning), pytest.raises(KeyboardInterrupt):
        NMF(max_iter=60, checkpoint=str(path), checkpoint_every=0.0, **options).fit(X_DATA)
    monkeypatch.undo()

    resumed = NMF.resume(path, X_DATA)
    assert resumed.n_iter_ == 60
    np.testing.assert_array_equal(resumed.components_, straight.components_)
    assert resumed.loss_history_ == straight.loss_history_
    np.testing.assert_array_equal(resumed.transform(X_DATA), straight.transform(X_DATA))


def test_checkpoint_is_written_at_the_end_and_holds_the_fit(tmp_path):
    path = tmp_path / "end.npz"
    model = NMF(2, max_iter=20, checkpoint=str(path), checkpoint_every=3600.0, random_state=0).fit(X_DATA)
    state = checkpoint_module.read_checkpoint(path)
    assert state.n_iter == 20 and state.x_shape == (40, 12) and state.x_dtype == "torch.float64"
    np.testing.assert_array_equal(state.H, model.components_)
    assert state.params["n_components"] == 2


def test_a_crash_while_writing_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "fit.npz"
    NMF(2, max_iter=10, checkpoint=str(path), random_state=0).fit(X_DATA)
    before = path.read_bytes()

    def crash(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        NMF(2, max_iter=30, checkpoint=str(path), random_state=1).fit(X_DATA)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fit.npz"]  # no temporary file left behind


def test_corrupt_and_mismatched_checkpoints_are_clear_errors(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="corrupt.npz is corrupt or incomplete"):
        NMF.resume(corrupt, X_DATA)
    good = tmp_path / "good.npz"
    NMF(2, max_iter=10, checkpoint=str(good), random_state=0).fit(X_DATA)
    with pytest.raises(CheckpointError, match=r"made for X of shape \(40, 12\) and dtype torch.float64, not \(40, 11\)"):
        NMF.resume(good, X_DATA[:, :11])
    with pytest.raises(CheckpointError, match=r"Cannot change \['beta_loss'\].*beta_loss='frobenius'"):
        NMF.resume(good, X_DATA, beta_loss="kullback-leibler")


def test_checkpoints_are_read_without_pickle(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, version=np.array(1), W=np.array([object()], dtype=object))
    with pytest.raises(CheckpointError, match="corrupt or incomplete"):
        checkpoint_module.read_checkpoint(path)


_DETERMINISM_SCRIPT = """
import hashlib, numpy as np
from fastnmf import NMF
X = np.abs(np.random.RandomState(0).randn(60, 20)).astype(np.float32)
for solver, beta in (("mu", 1), ("hals", 2)):
    W = NMF(4, solver=solver, beta_loss=beta, max_iter=50, random_state=7).fit_transform(X)
    print(hashlib.sha256(W.tobytes()).hexdigest())
"""


@pytest.mark.slow  # a subprocess or a whole benchmark run: seconds on 2 cores
def test_same_seed_is_bit_identical_across_processes():
    runs = [subprocess.run([sys.executable, "-c", _DETERMINISM_SCRIPT], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0].split()) == 2
    X = np.abs(np.random.RandomState(0).randn(60, 20)).astype(np.float32)
    here = NMF(4, solver="mu", beta_loss=1, max_iter=50, random_state=7).fit_transform(X)
    assert hashlib.sha256(here.tobytes()).hexdigest() == runs[0].split()[0]


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("beta_loss", ["frobenius", "kullback-leibler", "itakura-saito", 0.5, 3.0])
@pytest.mark.parametrize("magnitude", [65000.0, 6e-8], ids=["near-fp16-max", "near-fp16-subnormal"])
def test_float16_data_at_the_edges_of_its_range_gives_finite_factors(backend, beta_loss, magnitude):
    g = torch.Generator().manual_seed(0)
    X = (magnitude * (0.5 + 0.5 * torch.rand(24, 10, generator=g))).half()
    assert bool(torch.isfinite(X).all())
    W = NMF(3, solver="mu", beta_loss=beta_loss, backend=backend, max_iter=20, tol=0.0, init="random",
            random_state=0).fit_transform(X)
    assert W.dtype == torch.float32 and bool(torch.isfinite(W).all()) and bool((W >= 0).all())
