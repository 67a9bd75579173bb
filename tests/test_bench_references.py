"""bench.references: which methods run for which loss, and how an added method joins a problem's entry.
No fit runs here (``_run`` is replaced): the references themselves are long runs made by hand."""

import pytest

from bench import references
from bench.problems import preset


def test_each_loss_gets_the_methods_that_minimize_it():
    assert [label for label, _ in references._methods(2.0)] == ["hals-extrapolated", "hals-plain"]
    assert [label for label, _ in references._methods(1.0)] == ["mu", "newton"]
    assert [label for label, _ in references._methods(0.5)] == ["mu"]
    assert [label for label, _ in references._methods(1.0, only={"newton"})] == ["newton"]


@pytest.fixture
def fake_runs(monkeypatch):
    losses = {"mu": 10.0, "newton": 9.0}
    monkeypatch.setattr(references, "_run", lambda data, options, seconds, shared_loss: {
        "loss": losses[options["solver"]], "iterations": 1, "seconds": 0.0, "converged": True})


def test_an_added_method_keeps_the_entrys_other_runs_from_the_same_start(fake_runs):
    spec = next(s for s in preset("cpu") if s.name == "digits-kl-k16")
    first = references.compute([spec], 1.0, progress=lambda _: None, only={"mu"})
    assert first[spec.name]["method"] == "mu" and set(first[spec.name]["runs"]) == {"mu"}
    joined = references.compute([spec], 1.0, progress=lambda _: None, only={"newton"}, earlier=first)
    assert set(joined[spec.name]["runs"]) == {"mu", "newton"}
    assert joined[spec.name]["method"] == "newton" and joined[spec.name]["loss"] == 9.0
    moved = {spec.name: dict(first[spec.name], initial_loss=first[spec.name]["initial_loss"] * 2)}
    alone = references.compute([spec], 1.0, progress=lambda _: None, only={"newton"}, earlier=moved)
    assert set(alone[spec.name]["runs"]) == {"newton"}  # another start: its runs are not this start's
