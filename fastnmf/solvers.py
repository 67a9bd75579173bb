"""Solvers: iteration loops written once against the ops of a :class:`fastnmf.ops.Backend`.

A solver never knows which backend runs; it only calls ``backend.mu_update_h``, ``backend.mu_update_w``
and ``backend.objective``. The loop checks convergence every ``check_every`` iterations (the only host
synchronisations), stops when the relative decrease ``(previous − current) / previous`` falls below
``tol``, and records the objective in ``loss_history``. (Relative to the previous value, not to the
initial one as scikit-learn does: a poor start — nndsvda on digits begins 2500× above the optimum —
would otherwise stop the fit early.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .losses import regularization_penalty
from .ops import Backend

__all__ = ["Problem", "SolverResult", "SOLVER_NAMES", "solve"]

SOLVER_NAMES = ("mu",)


@dataclass(frozen=True)
class Problem:
    """Everything a solver needs, already validated: data, loss, penalties, safeguard floor, backend."""

    X: torch.Tensor
    beta: float
    backend: Backend
    eps_r: float
    l1_w: float = 0.0
    l2_w: float = 0.0
    l1_h: float = 0.0
    l2_h: float = 0.0

    def evaluate(self, W: torch.Tensor, H: torch.Tensor) -> tuple[float, float]:
        """``(D_β(X | WH), D_β(X | WH) + penalty)``: the divergence and the objective every solver decreases."""
        divergence = self.backend.objective(self.X, W, H, beta=self.beta, eps_r=self.eps_r)
        penalty = regularization_penalty(W, H, self.l1_w, self.l2_w, self.l1_h, self.l2_h)
        return float(divergence), float(divergence + penalty)


@dataclass
class SolverResult:
    W: torch.Tensor
    H: torch.Tensor
    n_iter: int
    loss_history: list[float] = field(default_factory=list)
    final_divergence: float = float("nan")


def _mu_iteration(problem: Problem, W, H, update_w: bool, update_h: bool):
    # W first, then H: scikit-learn's order, so that the same start gives the same path.
    backend, beta, eps_r = problem.backend, problem.beta, problem.eps_r
    if update_w:
        W = backend.mu_update_w(problem.X, W, H, beta=beta, l1=problem.l1_w, l2=problem.l2_w, eps_r=eps_r)
    if update_h:
        H = backend.mu_update_h(problem.X, W, H, beta=beta, l1=problem.l1_h, l2=problem.l2_h, eps_r=eps_r)
    return W, H


_ITERATIONS: dict[str, Callable] = {"mu": _mu_iteration}


def solve(
    problem: Problem,
    W: torch.Tensor,
    H: torch.Tensor,
    *,
    solver: str = "mu",
    update_w: bool = True,
    update_h: bool = True,
    max_iter: int = 200,
    tol: float = 1e-4,
    check_every: int = 10,
    verbose: int = 0,
) -> SolverResult:
    """Run ``solver`` from (W, H) for at most ``max_iter`` iterations; returns the last iterate."""
    iteration = _ITERATIONS[solver]
    divergence, initial = problem.evaluate(W, H)
    previous = initial
    history = [initial]
    progress = None
    if verbose:
        from tqdm.auto import tqdm

        progress = tqdm(total=max_iter, desc=f"NMF {solver} ({problem.backend.name})", unit="it")
        progress.set_postfix(loss=f"{initial:.6g}")
    n_iter = evaluated_at = 0
    try:
        for n_iter in range(1, max_iter + 1):
            W, H = iteration(problem, W, H, update_w, update_h)
            if progress is not None:
                progress.update(1)
            if n_iter % check_every == 0 or n_iter == max_iter:
                divergence, current = problem.evaluate(W, H)
                evaluated_at = n_iter
                history.append(current)
                if progress is not None:
                    progress.set_postfix(loss=f"{current:.6g}")
                if previous <= 0.0 or (previous - current) / previous < tol:
                    break
                previous = current
    finally:
        if progress is not None:
            progress.close()
    if evaluated_at != n_iter:
        divergence, _ = problem.evaluate(W, H)
    return SolverResult(W=W, H=H, n_iter=n_iter, loss_history=history, final_divergence=divergence)
