"""The one fit path of the estimator and the functional API.

It only validates, makes a layout of X, initializes, picks a backend and calls a solver
(docs/architecture.md). Its options are the parameters of a :class:`fastnmf.NMF` (duck-typed here:
anything with ``_validated_params()``), so this module imports neither the estimator nor the functional API.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from .backends import check_solver, resolve_backend, resolve_solver
from .errors import FitInterrupted
from .init import default_init, initialize
from .layouts import WeightedMatrix, as_layout
from .layouts.streamed import StreamedMatrix
from .losses import parse_beta_loss
from .penalties import Penalties
from .safeguard import apply_factor_floor_, exact_zeros, reconstruction_floor
from .scaling import choose_scaling
from .solvers import Problem, SolverResult, check_loss, solve
from .streaming import ChunkReadError, should_stream, streamed_input
from .validation import InputKind, as_tensor, check_factor
from .weights import weighted_data

__all__ = ["fit_factorization", "FitOutput"]


@dataclass
class FitOutput:
    """A finished fit: the solver's result (in X's units, exact zeros at the floor) and how to hand it back."""

    result: SolverResult
    kind: InputKind
    n_components: int
    beta: float


def _resolve_n_components(n_components, W, H, init, update_H, n_features) -> int:
    if n_components is None:
        return n_features
    if isinstance(n_components, str):  # "auto" (the constraint has rejected any other string)
        uses_custom = (init == "custom" or (init is None and W is not None and H is not None)) or not update_H
        # np.shape: the factors are not validated yet (lists, arrays and tensors all have a shape here).
        if uses_custom and H is not None and len(np.shape(H)) == 2:
            return int(np.shape(H)[0])
        if uses_custom and W is not None and len(np.shape(W)) == 2:
            return int(np.shape(W)[1])
        return n_features
    return int(n_components)


def fit_factorization(
    X, W, H, options, *, update_H=True, weights=None, callback=None, start_iteration=0, history=None,
    solver_state=None, on_check=None,
) -> FitOutput:
    """Validate everything, then initialize and solve. ``options`` is a :class:`fastnmf.NMF` (its
    parameters are the fit's options; it is not modified).

    ``start_iteration``, ``history``, ``solver_state``: where a resumed fit (custom W, H from a checkpoint)
    stopped (the solver's state is in its own units: the same X gives the same rescaling).
    ``on_check(result, X)``: called after each evaluation of the objective, with the iterate in X's units.
    """
    # Options first: a bad option must not cost a pass over X.
    p = options._validated_params()
    beta = parse_beta_loss(p["beta_loss"])
    solver = p["solver"]
    check_loss(solver, beta, p["beta_loss"])
    if weights is not None or p["missing_values"] is not None:
        check_solver(solver, WeightedMatrix)
    if not isinstance(update_H, bool):
        raise ValueError(f"Invalid update_H={update_H!r}: expected True or False.")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(n_iter, W, H), got {type(callback).__name__}: {callback!r}.")

    missing_values = p["missing_values"]
    weighted = weights is not None or missing_values is not None
    streamed = should_stream(X, p)
    if streamed:
        if weighted:
            raise ValueError("Entry weights and missing_values cannot be streamed yet: pass X in memory (without "
                             "chunk_rows / memory_budget) to fit with weights.")
        check_solver(solver, StreamedMatrix)  # before the pass that validates X
        X, kind = streamed_input(X, p, beta)  # one pass: validates the values, measures max, mean, nnz
    else:
        X, kind = as_tensor(X, "X", device=p["device"], check_values=not weighted)
    if weighted:
        X = weighted_data(X, weights, missing_values)  # checks X where its weight is positive
    validated_x = X  # as the user gave it (checkpoints record its shape and dtype)
    X = as_layout(X)
    n_samples, n_features = X.shape
    init = p["init"]
    if streamed and init is None:
        init = "random"  # nndsvd needs an SVD of all of X
    elif streamed and init in ("nndsvd", "nndsvda", "nndsvdar"):
        raise ValueError(f"init={init!r} needs an SVD of all of X, which a streamed fit does not compute; use "
                         "init='random' (the default for streamed X) or 'custom'.")
    k = _resolve_n_components(p["n_components"], W, H, init, update_H, n_features)
    alpha_H = p["alpha_W"] if p["alpha_H"] == "same" else p["alpha_H"]
    penalties = Penalties.from_alphas(p["alpha_W"], alpha_H, p["l1_ratio"], n_samples, n_features)
    factor_dtype = X.dtype if X.dtype in (torch.float32, torch.float64) else torch.float32
    chosen = resolve_backend(p["backend"], X, p["precision"], solver=solver)
    solver = resolve_solver(solver, beta, X, p["backend"], p["precision"])

    scaling = choose_scaling(float(X.max()), beta)
    X = scaling.data(X)
    # The initialization sees X alone (0 wherever the weight is 0).
    W, H = _starting_point(X.init_data(), W, H, k, init, update_H, p["random_state"], factor_dtype, scaling)
    if X.dtype not in chosen.native_x_dtypes:
        X = X.astype(factor_dtype)
    eps_r = reconstruction_floor(float(X.max()), factor_dtype)
    problem = Problem(X=X, beta=beta, backend=chosen, eps_r=eps_r, penalties=scaling.penalties(penalties))
    solver_options = dict(inner_iter=p["inner_iter"], extrapolate=p["extrapolate"]) if solver == "hals" else {}
    if history is not None:
        history = [scaling.objective_in(value) for value in history]

    def to_user(result: SolverResult) -> SolverResult:
        # Entries the solver holds at the safeguard floor go back as exact zeros (in the solver's units,
        # where the floor is φ); every start re-applies the floor, so resuming from them changes nothing.
        return scaling.result_out(replace(result, W=exact_zeros(result.W), H=exact_zeros(result.H)))

    report = None if on_check is None else (lambda current: on_check(to_user(current), validated_x))
    if callback is not None:
        user_callback = callback

        def callback(n_iter, W, H):  # the user sees what the fit would return here: X's units, exact zeros
            return user_callback(n_iter, scaling.factor_out(exact_zeros(W)), scaling.factor_out(exact_zeros(H)))
    try:
        result = solve(
            problem, W, H, solver=solver, update_h=update_H, max_iter=p["max_iter"], tol=p["tol"],
            check_every=p["check_every"], verbose=p["verbose"], solver_options=solver_options,
            start_iteration=start_iteration, history=history, solver_state=solver_state, on_check=report,
            callback=callback,
        )
    except FitInterrupted as interrupt:
        interrupt.output = FitOutput(result=to_user(interrupt.result), kind=kind, n_components=k, beta=beta)
        raise
    except ChunkReadError as error:
        # A chunk of a streamed X could not be read: the last checked iterate goes with the error.
        error.output = FitOutput(result=to_user(error.result), kind=kind, n_components=k, beta=beta)
        raise
    if result.stop_reason == "max_iter" and p["tol"] > 0:
        warnings.warn(
            f"Maximum number of iterations {p['max_iter']} reached before the relative decrease of the "
            f"objective fell below tol={p['tol']}. Increase max_iter to improve convergence.",
            ConvergenceWarning, stacklevel=3,
        )
    return FitOutput(result=to_user(result), kind=kind, n_components=k, beta=beta)


def _starting_point(X, W, H, k, init, update_H, random_state, dtype, scaling):
    """Initial (W, H) for the (already rescaled) X; user-given factors are validated and rescaled."""
    m, n = X.shape
    if not update_H:
        # H is fixed (transform): W starts from the custom W or from scikit-learn's constant start.
        if H is None:
            raise ValueError("update_H=False needs the fixed H (n_components × n_features).")
        H = scaling.factor_in(check_factor(H, "H", (k, n), X, dtype))
        if init == "custom" and W is not None:
            W = scaling.factor_in(check_factor(W, "W", (m, k), X, dtype))
        else:
            avg = (float(X.mean(dtype=torch.float64)) / k) ** 0.5
            W = torch.full((m, k), avg, dtype=dtype, device=X.device)
    elif init == "custom" or (init is None and W is not None and H is not None):
        if W is None or H is None:
            raise ValueError("init='custom' needs both W (n_samples × n_components) and H (n_components × n_features).")
        W = scaling.factor_in(_nonzero(check_factor(W, "W", (m, k), X, dtype), "W"))
        H = scaling.factor_in(_nonzero(check_factor(H, "H", (k, n), X, dtype), "H"))
    else:
        if W is not None or H is not None:
            warnings.warn(
                f"W or H was given with init={init!r}; it is ignored. Set init='custom' to start from it.",
                RuntimeWarning, stacklevel=4,
            )
        W, H = initialize(X, k, init or default_init(k, m, n), random_state, dtype)
    return apply_factor_floor_(W), apply_factor_floor_(H)


def _nonzero(F: torch.Tensor, name: str) -> torch.Tensor:
    if not bool(F.any()):
        raise ValueError(
            f"The custom {name} passed to NMF is all zeros: multiplicative updates can never move a factor "
            f"from 0, and the fit would be all zeros. Pass a {name} with a positive entry, or another init."
        )
    return F
