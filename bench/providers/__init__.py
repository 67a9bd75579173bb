"""Providers: one adapter per library, all driven the same way.

Every adapter is a *session* over one problem: ``start(W0, H0)`` sets the shared start (outside the
clock), ``advance(n)`` runs exactly n iterations (timed), ``factors()`` returns the current (W, H) as
torch tensors in fastnmf's orientation (W: m×k, H: k×n) for the shared loss. A session that can report
every iteration through a callback also has ``run_chunks(clock)``: the whole timed run in one call, the
chunks delimited by ``clock.begin()`` / ``clock.end(n, factors)`` (``bench.runner.ChunkClock``). A *family* says whether it
can run here (``check`` raises :class:`Unavailable` with the reason) and which of its solvers handle β.

Peers are optional (``pip install -e .[bench]``): a missing one is reported as skipped, never an error.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

__all__ = ["Unavailable", "Session", "Family", "Provider", "Skipped", "FAMILIES", "plan"]


class Unavailable(Exception):
    """This provider cannot run on this machine or problem; the message says why."""


class Session(Protocol):
    device: torch.device  # where the provider computes (decides the timer and the memory meter)
    x_input: object  # X exactly as the provider receives it (dense tensor, ndarray, CSR, torch COO)
    input_format: str  # "dense" | "csr" | "torch-coo"
    start_note: str  # "" when the provider starts from (W0, H0) exactly; otherwise what it starts from

    def start(self, W0: torch.Tensor, H0: torch.Tensor) -> None: ...

    def advance(self, n: int) -> None: ...

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class Family:
    name: str
    is_peer: bool  # False for fastnmf's own providers: the speed-up column compares against peers
    check: Callable[[torch.device], None]
    solvers: Callable[[float], tuple[str, ...]]  # the solvers that handle this β
    session: Callable[..., Session]  # (problem, solver, device) -> Session
    device: Callable[[torch.device], torch.device] = lambda device: device  # where it computes
    accepts_sparse: bool = False  # takes sparse X (else it runs on the densified X, when there is one)


@dataclass(frozen=True)
class Provider:
    family: Family
    solver: str
    device: torch.device

    @property
    def name(self) -> str:
        return f"{self.family.name}/{self.solver}"

    def open(self, problem) -> Session:
        return self.family.session(problem, self.solver, self.device)


@dataclass(frozen=True)
class Skipped:
    name: str
    is_peer: bool
    reason: str


def _families() -> list[Family]:
    from . import naive, nmftorch_peer, ours, sklearn_peer, torchnmf_peer

    return [ours.TRITON, ours.TORCH, naive.FAMILY, sklearn_peer.FAMILY, torchnmf_peer.FAMILY, nmftorch_peer.FAMILY]


FAMILIES: list[Family] = []


def _matches(name: str, patterns: list[str] | None) -> bool:
    """``fastnmf-torch`` selects all its solvers, ``sklearn/cd`` one, and globs work (``*/mu``)."""
    if not patterns:
        return True
    family = name.split("/")[0]
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(family, p) for p in patterns)


def _family_selected(family: str, patterns: list[str] | None) -> bool:
    return not patterns or any(fnmatch.fnmatch(family, p.split("/")[0]) for p in patterns)


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.0f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.3g} MiB"


def plan(problem, device: torch.device, patterns: list[str] | None = None) -> tuple[list[Provider], list[Skipped]]:
    """The providers that run on ``problem`` here, and those that are skipped with the reason.

    A solver that does not handle the problem's β (HALS and CD are Frobenius-only) is left out, not skipped.
    """
    if not FAMILIES:
        FAMILIES.extend(_families())
    runnable, skipped = [], []
    problem_skips = dict(problem.skip)
    for family in FAMILIES:
        if not _family_selected(family.name, patterns):
            continue
        if family.name in problem_skips:
            skipped.append(Skipped(family.name, family.is_peer, problem_skips[family.name]))
            continue
        if not problem.densify and not family.accepts_sparse:
            m, n = problem.shape
            skipped.append(Skipped(family.name, family.is_peer,
                                   f"takes dense X only: this X would take {_size(m * n * 4)} dense (float32)"))
            continue
        try:
            family.check(device)
            solvers = family.solvers(problem.beta)
        except Unavailable as why:
            skipped.append(Skipped(family.name, family.is_peer, str(why)))
            continue
        except Exception as error:  # a provider that breaks while being asked must not stop the others
            skipped.append(Skipped(family.name, family.is_peer, f"set-up failed: {type(error).__name__}: {error}"))
            continue
        for solver in solvers:
            provider = Provider(family, solver, family.device(device))
            if _matches(provider.name, patterns):
                runnable.append(provider)
    return runnable, skipped
