"""Many factorizations at once: replicates × ranks advancing together (``fastnmf.fit_ensemble``).

Every problem (k, r) is the single fit ``non_negative_factorization(X, n_components=k, init="random",
random_state=replicate_seed(random_state, k, r), ...)``: the same start, the same rules, the same stopping test
on its own objective (``tol`` every ``check_every`` iterations), after which it is frozen and leaves the batch.
What is shared is the pass over X: for the unweighted Frobenius loss (MU and HALS) the running problems' factors
are rows of two stacked tensors and every half-update is one product with X for the whole batch, split into
groups whose buffers stay within ``memory_budget``, with each rank's Grams and steps batched
(``fastnmf.ensemble_stacked``); every other β needs each problem's own reconstruction and runs the problems'
updates one after another on the same layout. A problem whose objective turns non-finite is dropped and reported;
Ctrl-C raises :class:`EnsembleInterrupted` carrying the problems finished so far.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .backends import resolve_backend
from .checkpoint import CheckpointError
from .ensemble_checkpoints import check_same_data, read_ensemble_checkpoint, write_ensemble_checkpoint, x_fingerprint
from .ensemble_stacked import StackedBatch
from .init import initialize
from .layouts import WeightedMatrix, as_layout
from .losses import parse_beta_loss
from .params import parse_bytes
from .penalties import Penalties
from .safeguard import apply_factor_floor_, exact_zeros, reconstruction_floor
from .scaling import choose_scaling
from .solvers import SolverResult, hals_rules, supports
from .validation import as_tensor
from .weights import weighted_data

__all__ = ["fit_ensemble", "resume_ensemble", "replicate_seed", "Ensemble", "EnsembleInterrupted"]

_DEFAULT_BUDGET = 1 << 30


def replicate_seed(random_state, k: int, r: int) -> int:
    """The integer seed of replicate ``r`` at rank ``k``: a function of (random_state, k, r) only, so adding
    replicates or ranks never changes the existing ones. ``random_state`` must be an int (or None: 0)."""
    if random_state is not None and not isinstance(random_state, (int, np.integer)):
        raise ValueError(f"fit_ensemble needs an int random_state (or None), got {random_state!r}.")
    base = 0 if random_state is None else int(random_state)
    return int(np.random.SeedSequence([base & 0xFFFFFFFF, int(k), int(r)]).generate_state(1)[0] >> 1)


class EnsembleInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit_ensemble`; ``ensemble`` holds the problems that had finished."""

    def __init__(self, ensemble):
        super().__init__(f"ensemble interrupted with {len(ensemble.finished)} problems finished")
        self.ensemble = ensemble


@dataclass
class Ensemble:
    """The fits of every (k, r): ``W(k, r)``, ``H(k, r)``, ``n_iter(k, r)``, ``loss(k, r)`` (the final
    objective), ``loss_history(k, r)``; ``ranks``, ``n_replicates``, ``failed`` ((k, r, reason) of the
    problems dropped for a non-finite objective). Factors come back in X's type."""

    ranks: list
    n_replicates: int
    beta: float
    results: dict = field(default_factory=dict)  # (k, r) -> SolverResult in X's units
    failed: list = field(default_factory=list)
    kind: object = None
    X: object = None  # the data the ensemble was fitted on (consensus refits usages on it)
    options: dict = field(default_factory=dict)

    @property
    def finished(self) -> list:
        return sorted(self.results)

    def _result(self, k, r) -> SolverResult:
        if (k, r) not in self.results:
            failed = [f for f in self.failed if f[:2] == (k, r)]
            reason = f": it failed ({failed[0][2]})" if failed else ""
            raise KeyError(f"No fit for n_components={k}, replicate {r} in this ensemble{reason} (ranks {self.ranks}, "
                           f"{self.n_replicates} replicates).")
        return self.results[(k, r)]

    def W(self, k, r):
        W = self._result(k, r).W
        if W is None:
            raise ValueError("This ensemble was fitted with keep_W=False: only H is kept.")
        return self.kind.output(W.contiguous())

    def H(self, k, r):
        return self.kind.output(self._result(k, r).H.contiguous())

    def n_iter(self, k, r) -> int:
        return self._result(k, r).n_iter

    def loss(self, k, r) -> float:
        return self._result(k, r).loss_history[-1]

    def loss_history(self, k, r) -> list:
        return list(self._result(k, r).loss_history)

    def components(self, k) -> torch.Tensor:
        """The H of every finished replicate at rank k, stacked: (replicates · k) × n_features (torch)."""
        return torch.cat([self.results[(kk, r)].H for kk, r in self.finished if kk == k])


@dataclass
class _Problem:
    k: int
    r: int
    W: torch.Tensor
    H: torch.Tensor
    history: list
    previous: float
    n_iter: int = 0
    done: bool = False
    stop_reason: str = "max_iter"
    divergence: float = float("nan")


def _ranks(n_components) -> list:
    ranks = [n_components] if isinstance(n_components, (int, np.integer)) else list(n_components)
    if not ranks:
        raise ValueError("n_components is empty: give an int or a list of ints ≥ 1.")
    for k in ranks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"Invalid n_components entry {k!r}: every rank must be an int ≥ 1.")
    if len(set(ranks)) != len(ranks):
        raise ValueError(f"n_components has repeated ranks: {ranks}.")
    return [int(k) for k in ranks]


def fit_ensemble(X, n_components, n_replicates: int, *, beta_loss="frobenius", solver="mu", tol=1e-4, max_iter=200,
                 check_every=10, init="random", random_state=None, backend="auto", precision="auto", device=None,
                 weights=None, alpha_W=0.0, alpha_H="same", l1_ratio=0.0, keep_W=True, memory_budget=None, skip=(),
                 on_finish=None, checkpoint=None, checkpoint_every=60.0, _resume=None) -> Ensemble:
    """Fit ``n_replicates`` random restarts at each rank of ``n_components`` (an int or a list), all together.

    Replicate r at rank k equals ``non_negative_factorization(X, n_components=k, init="random",
    random_state=replicate_seed(random_state, k, r), beta_loss=..., solver=..., tol=..., max_iter=...,
    check_every=..., weights=...)`` run alone: the same ``n_iter`` and the same factors (float64: to
    round-off). ``solver``: "mu" (any β) or "hals" (Frobenius; plain accelerated HALS, i.e. the single fit with
    ``extrapolate=False``: the batch does not extrapolate). ``precision`` as for the single fit (``"bf16"``: the
    torch backend's KL MU in bfloat16, one bfloat16 copy of X for all problems). ``keep_W=False`` keeps only
    the H of each fit.
    ``memory_budget`` (bytes or "2GB", default 1 GiB) bounds the buffers of the stacked products of a group of
    problems (Frobenius: ``2 · Σk · max(m, n)`` values).
    ``skip``: (k, r) pairs not to fit (a resumed run that has them already); ``on_finish(k, r, result)`` is
    called as each problem finishes (result in X's units, torch tensors), e.g. to write it to disk.
    ``checkpoint``: a path; the whole batch is written there atomically at an objective check at most every
    ``checkpoint_every`` seconds (0: every check), and :func:`resume_ensemble` continues it to the results of
    an ensemble never stopped (``fastnmf.ensemble_checkpoints``).
    """
    ranks = _ranks(n_components)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, float)) or not checkpoint_every >= 0:
        raise ValueError(f"Invalid checkpoint_every={checkpoint_every!r}: expected seconds ≥ 0.")
    if isinstance(n_replicates, bool) or not isinstance(n_replicates, (int, np.integer)) or n_replicates < 1:
        raise ValueError(f"Invalid n_replicates={n_replicates!r}: expected an int ≥ 1.")
    if init != "random":
        raise ValueError(f"Invalid init={init!r}: an ensemble's replicates are random restarts (init='random').")
    beta = parse_beta_loss(beta_loss)
    if solver not in ("mu", "hals") or not supports(solver, beta):
        raise ValueError(f"Invalid solver={solver!r} for beta_loss={beta_loss!r}: an ensemble runs 'mu' (any β) or "
                         "'hals' (β = 2).")
    skip = {(int(k), int(r)) for k, r in skip}
    seeds = {(k, r): replicate_seed(random_state, k, r) for k in ranks for r in range(n_replicates) if (k, r) not in skip}
    # What a checkpoint records to resume with (JSON: plain ints and strings).
    options = dict(n_components=ranks, n_replicates=int(n_replicates), beta_loss=beta_loss, solver=solver,
                   tol=float(tol), max_iter=int(max_iter), check_every=int(check_every), init=init,
                   random_state=None if random_state is None else int(random_state), backend=backend,
                   precision=precision, device=None if device is None else str(device), alpha_W=alpha_W,
                   alpha_H=alpha_H, l1_ratio=l1_ratio, keep_W=bool(keep_W), memory_budget=memory_budget,
                   skip=[list(pair) for pair in sorted(skip)], weighted=weights is not None)
    budget = _DEFAULT_BUDGET if memory_budget is None else (
        parse_bytes(memory_budget) if isinstance(memory_budget, str) else int(memory_budget))

    X_tensor, kind = as_tensor(X, "X", device=device, check_values=weights is None)
    if weights is not None:
        if solver == "hals":
            raise ValueError("solver='hals' has no weighted form: use solver='mu' with weights.")
        X_tensor = weighted_data(X_tensor, weights, None)
    layout = as_layout(X_tensor)
    fingerprint = x_fingerprint(layout) if checkpoint is not None else None
    if _resume is not None:
        check_same_data(checkpoint, _resume["meta"], fingerprint)
    m, n = layout.shape
    factor_dtype = layout.dtype if layout.dtype in (torch.float32, torch.float64) else torch.float32
    chosen = resolve_backend("torch" if backend == "auto" else backend, layout, precision, solver=solver)
    scaling = choose_scaling(float(layout.max()), beta)
    layout = scaling.data(layout)
    if layout.dtype not in chosen.native_x_dtypes:
        layout = layout.astype(factor_dtype)
    eps_r = reconstruction_floor(float(layout.max()), factor_dtype)
    alpha_h = alpha_W if alpha_H == "same" else alpha_H
    penalties = scaling.penalties(Penalties.from_alphas(alpha_W, alpha_h, l1_ratio, m, n))
    init_data = layout.init_data()

    def evaluate(W, H):
        divergence = float(chosen.objective(layout, W, H, beta=beta, eps_r=eps_r))
        return divergence, divergence + float(penalties.value(W, H))

    problems, mean = [], float(init_data.mean(dtype=torch.float64)) if _resume is None else None
    for (k, r), seed in seeds.items():
        if _resume is not None:  # _restore fills every problem from the checkpoint: no start to draw or evaluate
            problems.append(_Problem(k, r, None, None, [], 0.0))
            continue
        W, H = initialize(init_data, k, "random", seed, factor_dtype, mean=mean)
        W, H = apply_factor_floor_(W), apply_factor_floor_(H)
        divergence, current = evaluate(W, H)
        problems.append(_Problem(k, r, W, H, [current], current, divergence=divergence))

    ensemble = Ensemble(ranks, int(n_replicates), beta, kind=kind, X=X,
                        options=dict(beta_loss=beta_loss, solver=solver, tol=tol, max_iter=max_iter, device=device,
                                     alpha_W=alpha_W, alpha_H=alpha_H, l1_ratio=l1_ratio, check_every=check_every,
                                     precision=precision))

    def finish(problem):
        problem.done = True
        result = SolverResult(W=exact_zeros(problem.W), H=exact_zeros(problem.H), n_iter=problem.n_iter,
                              loss_history=problem.history, final_divergence=problem.divergence,
                              stop_reason=problem.stop_reason)
        result = scaling.result_out(result)
        if on_finish is not None:
            on_finish(problem.k, problem.r, result)
        if not keep_W:
            result = replace(result, W=None)
        ensemble.results[(problem.k, problem.r)] = result
        problem.W = problem.H = None

    for problem in problems:
        if not math.isfinite(problem.previous):
            problem.done = True
            ensemble.failed.append((problem.k, problem.r, "non-finite objective at the start"))
    start = 0
    if _resume is not None:
        start = _restore(_resume, problems, ensemble, factor_dtype, layout.device)
    stacked = beta == 2.0 and not isinstance(layout, WeightedMatrix)
    rules = _Rules(chosen, solver, beta, penalties, eps_r, layout)
    if stacked:
        itemsize = torch.empty((), dtype=factor_dtype).element_size()
        batch = StackedBatch([p for p in problems if not p.done], budget // (2 * max(m, n) * itemsize))
    last_write = time.monotonic()
    try:
        for iteration in range(start + 1, max_iter + 1):
            active = [p for p in problems if not p.done]
            if not active:
                break
            if stacked:
                batch.iteration(layout, rules, solver)
            else:
                for problem in active:
                    problem.W, problem.H = layout.iteration(rules.w(problem.k), rules.h(problem.k), problem.W,
                                                            problem.H)
            for problem in active:
                problem.n_iter = iteration
                if iteration % check_every and iteration != max_iter:
                    continue
                problem.divergence, current = evaluate(problem.W, problem.H)
                if not math.isfinite(current):
                    problem.done = True
                    problem.W = problem.H = None
                    ensemble.failed.append((problem.k, problem.r, f"non-finite objective at iteration {iteration}"))
                    continue
                problem.history.append(current)
                if problem.previous <= 0.0 or (problem.previous - current) / problem.previous < tol:
                    problem.stop_reason = "tol"
                    finish(problem)
                    continue
                problem.previous = current
                if iteration == max_iter:
                    finish(problem)
            if stacked:
                batch.compact()
            if (checkpoint is not None and iteration % check_every == 0 and iteration != max_iter
                    and time.monotonic() - last_write >= checkpoint_every):
                write_ensemble_checkpoint(checkpoint, iteration=iteration, options=options, fingerprint=fingerprint,
                                          problems=[p for p in problems if not p.done], results=ensemble.results,
                                          failed=ensemble.failed)
                last_write = time.monotonic()
    except KeyboardInterrupt as interrupt:
        raise EnsembleInterrupted(ensemble) from interrupt
    for problem in problems:
        if not problem.done:
            finish(problem)
    return ensemble


def resume_ensemble(checkpoint, X, *, weights=None, on_finish=None, checkpoint_every=60.0) -> Ensemble:
    """Continue the ensemble checkpointed at ``checkpoint`` (``fit_ensemble(..., checkpoint=...)``) on the same
    X (and weights): every problem ends as in the ensemble never stopped. ``on_finish`` is called for the
    problems that finish from here on; the checkpoint keeps being updated."""
    state = read_ensemble_checkpoint(checkpoint)
    options = dict(state["meta"]["options"])
    if options.pop("weighted") != (weights is not None):
        raise CheckpointError(f"Ensemble checkpoint {checkpoint} was made {'with' if weights is None else 'without'} "
                              "weights: pass the same weights to resume it.")
    options["skip"] = [tuple(pair) for pair in options["skip"]]
    return fit_ensemble(X, weights=weights, on_finish=on_finish, checkpoint=checkpoint,
                        checkpoint_every=checkpoint_every, _resume=state, **options)


def _restore(state, problems, ensemble, dtype, device) -> int:
    """Put the checkpointed batch into ``problems`` and ``ensemble``; returns the checkpoint's iteration."""
    meta, arrays = state["meta"], state["arrays"]
    tensor = lambda name: torch.as_tensor(arrays[name], dtype=dtype, device=device)  # noqa: E731
    by_key = {(p.k, p.r): p for p in problems}
    running = {(entry["k"], entry["r"]): (index, entry) for index, entry in enumerate(meta["running"])}
    finished = {(entry["k"], entry["r"]): (index, entry) for index, entry in enumerate(meta["finished"])}
    failed = {(k, r) for k, r, _ in meta["failed"]}
    for key, problem in by_key.items():
        if key in running:
            index, entry = running[key]
            problem.W, problem.H = tensor(f"W_{index}"), tensor(f"H_{index}")
            problem.n_iter, problem.previous = entry["n_iter"], entry["previous"]
            problem.divergence, problem.history = entry["divergence"], list(entry["history"])
        elif key in finished:
            index, entry = finished[key]
            W = tensor(f"result_W_{index}") if entry["has_W"] else None
            ensemble.results[key] = SolverResult(W=W, H=tensor(f"result_H_{index}"), n_iter=entry["n_iter"],
                                                 loss_history=list(entry["loss_history"]),
                                                 final_divergence=entry["final_divergence"],
                                                 stop_reason=entry["stop_reason"])
            problem.done, problem.W, problem.H = True, None, None
        elif key in failed:
            problem.done, problem.W, problem.H = True, None, None
        else:
            raise CheckpointError(f"The ensemble checkpoint has no state for n_components={key[0]}, replicate {key[1]}.")
    ensemble.failed = [tuple(f) for f in meta["failed"]]
    return int(meta["iteration"])


class _Rules:
    """The update rules of each rank (HALS's sweep limits depend on k): made once per rank, as a single fit does."""

    def __init__(self, backend, solver, beta, penalties, eps_r, layout):
        self.backend, self.solver, self.beta, self.penalties, self.eps_r = backend, solver, beta, penalties, eps_r
        self.layout, self._cache = layout, {}

    def _make(self, k):
        if k not in self._cache:
            if self.solver == "mu":
                make = self.backend.mu_rule
                self._cache[k] = (make(self.beta, *self.penalties.w, eps_r=self.eps_r),
                                  make(self.beta, *self.penalties.h, eps_r=self.eps_r))
            else:
                self._cache[k] = hals_rules(self.backend, self.layout, self.penalties, k)
        return self._cache[k]

    def w(self, k):
        return self._make(k)[0]

    def h(self, k):
        return self._make(k)[1]

