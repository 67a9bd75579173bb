"""Solvers: iteration loops written once against the update rules of a backend and the pass of a layout.

A solver never knows which backend runs nor how X is held: it builds the rules of each factor from the
:class:`fastnmf.backends.Backend` (``mu_rule``, ``hals_rule``), lets the layout run the pass over its data
(``X.iteration``, ``X.update_w``, ``X.update_h``: ``fastnmf.layouts``) and evaluates ``backend.objective``.
The loop checks convergence every ``check_every`` iterations (the only host
synchronisations), stops when the relative decrease ``(previous − current) / previous`` falls below
``tol``, and records the objective in ``loss_history``. (Relative to the previous value, not to the
initial one as scikit-learn does: a poor start — nndsvda on digits begins 2500× above the optimum —
would otherwise stop the fit early.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable
import torch

from .backends import Backend
from .errors import FitInterrupted, non_finite_error, out_of_memory_error
from .layouts.dense import Workspace
from .penalties import Penalties
from .safeguard import apply_factor_floor_, zero_term_threshold
from .streaming.sources import ChunkReadError

__all__ = ["Problem", "SolverResult", "SOLVER_NAMES", "solve", "supports", "check_loss"]

SOLVER_NAMES = ("mu", "hals", "newton")
#: the loss each solver but MU is written for.
_SOLVER_BETA = {"hals": 2.0, "newton": 1.0}
_LOSS_NAMES = {2.0: "the Frobenius loss only (beta_loss=2)", 1.0: "the Kullback-Leibler divergence only (beta_loss=1)"}


def supports(solver: str, beta: float) -> bool:
    """Whether ``solver`` minimizes the β-divergence ``beta``: MU any β, HALS the Frobenius loss (β = 2),
    diagonalized Newton the KL divergence (β = 1)."""
    if solver not in SOLVER_NAMES:
        raise ValueError(f"Unknown solver {solver!r}: expected one of {list(SOLVER_NAMES)}.")
    return solver == "mu" or float(beta) == _SOLVER_BETA[solver]


def check_loss(solver: str, beta: float, beta_loss) -> None:
    """Raise the one error for a solver given a loss it does not minimize (``beta_loss``: as the user wrote it)."""
    if solver != "auto" and not supports(solver, beta):
        raise ValueError(f"solver={solver!r} minimizes {_LOSS_NAMES[_SOLVER_BETA[solver]]}, got beta_loss="
                         f"{beta_loss!r}; use solver='mu' (or 'auto') for other losses.")


@dataclass(frozen=True)
class Problem:
    """Everything a solver needs, already validated: data (a layout), loss, penalties, safeguard floor,
    backend."""

    X: object  # a fastnmf.layouts.Layout
    beta: float
    backend: Backend
    eps_r: float
    penalties: Penalties = Penalties()

    def evaluate(self, W: torch.Tensor, H: torch.Tensor) -> tuple[float, float]:
        """``(D_β(X | WH), D_β(X | WH) + penalty)``: the divergence and the objective every solver decreases."""
        divergence = self.backend.objective(self.X, W, H, beta=self.beta, eps_r=self.eps_r)
        return float(divergence), float(divergence + self.penalties.value(W, H))


@dataclass
class SolverResult:
    W: torch.Tensor
    H: torch.Tensor
    n_iter: int
    loss_history: list[float] = field(default_factory=list)
    final_divergence: float = float("nan")
    # Why the loop ended: "tol" (converged), "callback" (the callback said stop), "max_iter".
    stop_reason: str = "max_iter"
    # The solver's state beyond (W, H) at n_iter (HALS extrapolation, Newton's step count), for checkpoints;
    # None if it has none.
    solver_state: dict | None = None


class _MultiplicativeUpdates:
    """Lee & Seung / Févotte & Idier MU, any β. W first, then H: scikit-learn's order, so that the same
    start gives the same path."""

    def __init__(self, problem: Problem, update_w: bool, update_h: bool):
        self.problem, self.update_w, self.update_h = problem, update_w, update_h
        p, make = problem, problem.backend.mu_rule
        self.rule_w = make(p.beta, *p.penalties.w, eps_r=p.eps_r)
        self.rule_h = make(p.beta, *p.penalties.h, eps_r=p.eps_r)

    def step(self, W, H):
        return self.problem.X.iteration(self.rule_w, self.rule_h, W, H, self.update_w, self.update_h)


# Newton's first iterations are MU iterations. From a start far from the optimum the first Newton steps are
# long and send many entries to the floor at once, committing the fit to a basin early: on the CPU preset's
# digits KL problem the fit without them stalled at 1.016× the reference loss, with 10 it went below the
# reference (docs/benchmarks.md, "The Newton solver").
_NEWTON_MU_WARMUP = 10


class _DiagonalNewton:
    """Diagonalized Newton for β = 1 (Van hamme 2013; ``fastnmf.newton``): per column the Newton step where it
    lowers the objective, else the MU step, after ``_NEWTON_MU_WARMUP`` MU iterations. W first, then H,
    like MU."""

    def __init__(self, problem: Problem, update_w: bool, update_h: bool):
        self.problem, self.update_w, self.update_h = problem, update_w, update_h
        p, make = problem, problem.backend.newton_rule
        scratch = Workspace()  # one m×n buffer for both rules: they run one after the other
        self.rule_w = make(*p.penalties.w, eps_r=p.eps_r, scratch=scratch)
        self.rule_h = make(*p.penalties.h, eps_r=p.eps_r, scratch=scratch)
        self.warmup = _MultiplicativeUpdates(problem, update_w, update_h)
        self.steps = 0

    def step(self, W, H):
        self.steps += 1
        if self.steps <= _NEWTON_MU_WARMUP:
            return self.warmup.step(W, H)
        return self.problem.X.iteration(self.rule_w, self.rule_h, W, H, self.update_w, self.update_h)

    def state(self) -> dict:
        """The steps done (a resumed fit must not warm up again)."""
        return {"steps": float(self.steps)}

    def restore(self, state: dict, like: torch.Tensor) -> None:
        self.steps = int(state["steps"])


# Accelerated HALS constants (Gillis & Glineur 2012, §3): at most 1 + ⌊α·ρ⌋ inner sweeps per product,
# stopping once a sweep changes the factor by ≤ δ × the first sweep's change.
_ACCELERATION_ALPHA = 0.5
_ACCELERATION_DELTA = 0.1
# Extrapolation with restarts (Ang & Gillis 2019, "Accelerating nonnegative matrix factorization
# algorithms using extrapolation", Neural Computation 31(2), Alg. 2): β₀, η, γ, γ̄ as given there for HALS.
_EXTRAPOLATION_BETA0 = 0.5
_EXTRAPOLATION_ETA = 1.5
_EXTRAPOLATION_GAMMA = 1.01
_EXTRAPOLATION_GAMMA_BAR = 1.005
# Scale balancing: no column of W below this fraction of the components' root-mean-square norm.
_BALANCE_FLOOR = 0.1


def inner_sweep_limit(m: int, n: int, k: int, nnz: int | None = None, row_overhead: float = 0.0) -> int:
    """``1 + ⌊α ρ⌋`` sweeps for the right factor (k×n) of an m×n X, with
    ``ρ = 1 + (K + m k) / (n (k + 1) + o/2)`` the cost of the X products (2Kk + 2mk² flops) over the
    cost of one sweep (2nk(k+1) flops plus a fixed cost ``o`` per row). With o = 0 this is Gillis &
    Glineur (2012), eq. (3.3); K = nnz(X), m·n when dense."""
    K = m * n if nnz is None else nnz
    rho = 1.0 + (K + m * k) / (n * (k + 1) + row_overhead / 2.0)
    return 1 + int(_ACCELERATION_ALPHA * rho)


def use_extrapolation(extrapolate, penalties: Penalties) -> bool:
    """``extrapolate="auto"``: on without penalties, off with them. Measured (docs/benchmarks.md, "HALS
    defaults"): unpenalized, the extrapolated fit reached 1.001× of the best loss first on dense 4000×2000
    at k = 8, 32, 128 (3 starts at k = 32) and on digits in 5 of 7 starts; with L1/L2 penalties the scales cannot be
    balanced (the objective is not scale-invariant) and plain HALS got there first in 4 of 5 starts."""
    return (not any(penalties.w + penalties.h)) if extrapolate == "auto" else bool(extrapolate)


def hals_rules(backend: Backend, X, penalties: Penalties, k: int, *, sweeps=None, fit_w: bool = False):
    """The HALS rules ``(rule_w, rule_h)`` of rank k on layout X: at most ``sweeps`` inner sweeps per product,
    or, with None, Gillis & Glineur's limits from the backend's cost model (:func:`inner_sweep_limit`; sparse
    X's products cost nnz·k, so fewer sweeps pay for themselves). ``fit_w``: the W update returns its fit term."""
    if sweeps is None:
        m, n = X.shape
        overhead = backend.hals_row_overhead.get(X.device.type, 0.0)
        sweeps_w = inner_sweep_limit(n, m, k, X.nnz, overhead)  # W is the right factor of Xᵀ (n×m)
        sweeps_h = inner_sweep_limit(m, n, k, X.nnz, overhead)
    else:
        sweeps_w = sweeps_h = sweeps
    make = backend.hals_rule
    return (make(*penalties.w, max_sweeps=sweeps_w, delta=_ACCELERATION_DELTA, fit=fit_w),
            make(*penalties.h, max_sweeps=sweeps_h, delta=_ACCELERATION_DELTA))


class _HALS:
    """Hierarchical ALS for β = 2 (Cichocki & Phan 2009), accelerated by repeated inner sweeps
    (Gillis & Glineur 2012), optionally with extrapolation (Ang & Gillis 2019)."""

    def __init__(self, problem: Problem, update_w: bool, update_h: bool, *, inner_iter="auto", extrapolate="auto"):
        self.problem, self.update_w, self.update_h = problem, update_w, update_h
        # "auto": Gillis & Glineur's limits, set at the first step (they need k); an int: that many at most.
        self.sweeps = None if inner_iter == "auto" else inner_iter
        self.extrapolate = use_extrapolation(extrapolate, problem.penalties)
        self.beta, self.beta_cap = _EXTRAPOLATION_BETA0, 1.0
        self.previous_error = float("inf")
        self.W_y = self.H_y = None
        self.rule_w = self.rule_h = None

    def _rules(self, k):
        """The rules of both factors, made at the first step: the sweep limits need k."""
        if self.rule_w is None:
            # Only extrapolation reads the W update's fit term (its accept/restart test).
            self.rule_w, self.rule_h = hals_rules(self.problem.backend, self.problem.X, self.problem.penalties, k,
                                                  sweeps=self.sweeps, fit_w=self.extrapolate)

    def _update_w(self, W, H):
        return self.problem.X.update_w(self.rule_w, W, H)

    def _update_h(self, W, H):
        return self.problem.X.update_h(self.rule_h, W, H)

    def step(self, W, H):
        self._rules(W.shape[1])
        if not self.extrapolate or not (self.update_w and self.update_h):
            return self.problem.X.iteration(self.rule_w, self.rule_h, W, H, self.update_w, self.update_h)
        return self._extrapolated_step(W, H)

    def _extrapolated_step(self, W, H):
        """One step of Ang & Gillis (2019), Alg. 2 (H first, then W):

        ``H_n = HALS(H_y | W_y)``, ``H_y = max(H_n + β (H_n − H), φ)``, ``W_n = HALS(W_y | H_y)``,
        ``W_y = W_n + β (W_n − W)``, error ``e = ‖X − W_n H_y‖²`` (free from the W update's products).
        If e grew: reject the step, restart from the last accepted (W, H), β̄ ← previous β, β ← β/η;
        else accept (W, H) ← (W_n, H_n), β ← min(β̄, γβ), β̄ ← min(1, γ̄β̄). The best pair (W_n, H_y)
        seen so far is what the step returns, so the reported objective never increases.
        """
        if self.W_y is None:
            self.accepted = (W, H)
            self.W_y, self.H_y = W, H
            self.best = (W, H)
            self.best_error = self.previous_error = float("inf")
            self.previous_beta = self.beta
        W_acc, H_acc = self.accepted
        H_n, _ = self._update_h(self.W_y, self.H_y)
        H_y = apply_factor_floor_(H_n + self.beta * (H_n - H_acc))
        W_n, fit = self._update_w(self.W_y, H_y)
        W_y = apply_factor_floor_(W_n + self.beta * (W_n - W_acc))
        error = float(fit)  # ½‖X − W_n H_y‖² − ½‖X‖²
        if error > self.previous_error:
            self.W_y, self.H_y = W_acc, H_acc
            self.beta_cap = self.previous_beta
            self.previous_beta, self.beta = self.beta, self.beta / _EXTRAPOLATION_ETA
        else:
            self.accepted = (W_n, H_n)
            self.W_y, self.H_y = W_y, H_y
            self.previous_beta, self.beta = self.beta, min(self.beta_cap, _EXTRAPOLATION_GAMMA * self.beta)
            self.beta_cap = min(1.0, _EXTRAPOLATION_GAMMA_BAR * self.beta_cap)
        self.previous_error = error
        if error <= self.best_error:
            self.best, self.best_error = (W_n, H_y), error
        self._balance_scales()
        return self.best

    _STATE_SCALARS = ("beta", "beta_cap", "previous_beta", "previous_error", "best_error")
    _STATE_PAIRS = ("accepted", "best")

    def state(self) -> dict | None:
        """The extrapolation's state — floats, and the tensors themselves (no copy: a step never modifies
        them in place, so this is a snapshot) — or None before its first step and without extrapolation."""
        if not self.extrapolate or self.W_y is None:
            return None
        state = {name: float(getattr(self, name)) for name in self._STATE_SCALARS}
        pairs = {"accepted": self.accepted, "best": self.best, "y": (self.W_y, self.H_y)}
        for name, (W, H) in pairs.items():
            state[f"{name}_W"], state[f"{name}_H"] = W, H
        return state

    def restore(self, state: dict, like: torch.Tensor) -> None:
        """Continue from :meth:`state` (tensors in ``like``'s dtype and device)."""
        for name in self._STATE_SCALARS:
            setattr(self, name, float(state[name]))
        tensor = lambda a: torch.as_tensor(a, dtype=like.dtype, device=like.device)  # noqa: E731
        self.accepted = (tensor(state["accepted_W"]), tensor(state["accepted_H"]))
        self.best = (tensor(state["best_W"]), tensor(state["best_H"]))
        self.W_y, self.H_y = tensor(state["y_W"]), tensor(state["y_H"])

    def _balance_scales(self):
        """Rescale the components of the extrapolation's pairs, ``w_j·d_j`` and ``h_j/d_j``, so that
        ``‖w_j‖ = ‖h_j‖`` at the extrapolated point, except that no ``‖w_j‖`` goes below a tenth of the root mean
        square of those balanced norms (every product WH is unchanged).

        The objective is flat along each component's scale and extrapolation moves along that direction
        freely: measured on a 300×150 problem (k = 10, float32), ‖w_j‖/‖h_j‖ drifted to 10⁻⁶, the curvature
        ‖w_j‖² of that component fell below eps·max (the safeguard's rule then freezes its row of H) and the
        fit stalled at 6.7× plain HALS's loss. Balancing each component on its own (‖w_j‖ = ‖h_j‖) is not
        enough: a fading component then shrinks in both factors at once, both its curvatures fall below
        eps·max and it can never come back (measured: scikit-learn's 30×3 blobs, k = 3, ended at 0.1285
        against 0.0018 for plain HALS, one component at norm 10⁻⁷⁷). With W's column kept at a fraction of
        the others' norms, the H update never freezes a component, so a fading one can grow again. HALS and the extrapolation are
        equivariant under one common rescaling of all the stored pairs, so this changes no product in exact
        arithmetic. Penalties are not scale-invariant: with any of them non-zero nothing is rescaled.
        """
        if any(self.problem.penalties.w + self.problem.penalties.h):
            return
        w_norms, h_norms = self.problem.X.component_norms(self.W_y, self.H_y)
        # A component with a factor at the floor is dead: balancing it would shrink its other factor to the
        # same ~φ scale, from which the next update divides by ~φ² (fastnmf.safeguard.zero_term_threshold).
        # Left as it is, the next update of the dead factor brings it back.
        dead = zero_term_threshold(w_norms.dtype)
        usable = (w_norms.square() > dead) & (h_norms.square() > dead)
        if not bool(usable.any()):
            return
        # ‖w_j‖ = ‖h_j‖ = sqrt(s_j), s_j = ‖w_j‖‖h_j‖, but ‖w_j‖ at least a tenth of the root mean square
        # of those norms: a fading component keeps a W column the H update can grow it from.
        scale = w_norms * h_norms
        rms = torch.sqrt(torch.sum(torch.where(usable, scale, 0.0)) / usable.sum())
        target = torch.maximum(torch.sqrt(scale), _BALANCE_FLOOR * rms)
        d = torch.where(usable, target / torch.where(usable, w_norms, 1.0), 1.0)
        self.W_y, self.H_y = (apply_factor_floor_(self.W_y * d), apply_factor_floor_(self.H_y / d[:, None]))
        W_acc, H_acc = self.accepted
        self.accepted = (apply_factor_floor_(W_acc * d), apply_factor_floor_(H_acc / d[:, None]))


_SOLVERS = {"mu": _MultiplicativeUpdates, "hals": _HALS, "newton": _DiagonalNewton}


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
    solver_options: dict | None = None,
    solver_state: dict | None = None,
    start_iteration: int = 0,
    history: list[float] | None = None,
    on_check: Callable | None = None,
    callback: Callable | None = None,
) -> SolverResult:
    """Run ``solver`` from (W, H) up to iteration ``max_iter``; returns the last iterate.

    ``solver_options`` go to the solver (HALS: ``inner_iter``, ``extrapolate``). A resumed fit passes the
    ``start_iteration``, ``history`` and ``solver_state`` (``SolverResult.solver_state``: HALS
    extrapolation's step sizes and pairs) it stopped at. ``on_check(result)`` is called after every
    evaluation of the objective with the iterate so far (checkpoints hook in there).
    ``callback(n_iter, W, H)`` is called with the start (``n_iter = start_iteration``, after its
    evaluation) and after every iteration (before any evaluation); a true return value ends the fit there
    (after an iteration, the objective is evaluated once more, as at ``max_iter``). It runs on the host
    between two launches and must not modify W or H.

    Raises :class:`FloatingPointError` as soon as an evaluation finds a non-finite objective (NaN/Inf in
    the factors: no such iterate is ever returned), :class:`fastnmf.errors.FitInterrupted` (a
    KeyboardInterrupt carrying the last complete iterate) on Ctrl-C, and an actionable MemoryError when
    the GPU runs out of memory.
    """
    iteration = _SOLVERS[solver](problem, update_w, update_h, **(solver_options or {}))
    if solver_state:
        iteration.restore(solver_state, like=W)
    current_state = getattr(iteration, "state", lambda: None)
    divergence, current = problem.evaluate(W, H)
    if not math.isfinite(current):
        raise non_finite_error(start_iteration, start_iteration, current, problem.X, problem.beta)
    history = list(history) if history else [current]
    previous = history[-1]
    result = SolverResult(W=W, H=H, n_iter=start_iteration, loss_history=history, final_divergence=divergence,
                          solver_state=solver_state)
    progress = None
    if verbose:
        from tqdm.auto import tqdm

        progress = tqdm(total=max_iter, initial=start_iteration, desc=f"NMF {solver} ({problem.backend.name})", unit="it")
        progress.set_postfix(loss=f"{previous:.6g}")
    try:
        # The callback sees the start too (n_iter = start_iteration), so a timer or a log can begin there.
        stop_at_start = callback is not None and bool(callback(start_iteration, W, H))
        if stop_at_start:
            result.stop_reason = "callback"
        for n_iter in range(start_iteration + 1, (start_iteration if stop_at_start else max_iter) + 1):
            W, H = iteration.step(W, H)
            if progress is not None:
                progress.update(1)
            stop = callback is not None and bool(callback(n_iter, W, H))
            if not stop and n_iter % check_every and n_iter != max_iter:
                continue
            divergence, current = problem.evaluate(W, H)
            if not math.isfinite(current):
                raise non_finite_error(result.n_iter, n_iter, current, problem.X, problem.beta)
            history.append(current)
            result = SolverResult(W=W, H=H, n_iter=n_iter, loss_history=history, final_divergence=divergence,
                                  solver_state=current_state())
            if on_check is not None:
                on_check(result)
            if progress is not None:
                progress.set_postfix(loss=f"{current:.6g}")
            if stop or previous <= 0.0 or (previous - current) / previous < tol:
                result.stop_reason = "callback" if stop else "tol"
                break
            previous = current
    except KeyboardInterrupt as interrupt:
        # Between checks the iterate is complete but unevaluated; keep the last evaluated one (finite).
        raise FitInterrupted(result) from interrupt
    except ChunkReadError as error:
        error.result = result  # the last checked iterate: the fit path hands it to the caller
        raise
    except torch.cuda.OutOfMemoryError as error:
        k = W.shape[1]
        raise out_of_memory_error(problem.X, k, problem.beta, problem.backend.name, W.element_size()) from error
    finally:
        if progress is not None:
            progress.close()
    return result
