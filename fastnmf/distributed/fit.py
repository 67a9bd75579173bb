"""The distributed fit path: agree on the input, draw the global start, solve on a ShardedMatrix.

It mirrors ``fastnmf.fit.fit_factorization`` step by step, with the global quantities exchanged: the
shape, ``max(X)`` and ``mean(X)`` (rescaling, safeguard floor, random start), nnz (HALS sweep limits),
the n_samples / n_features that scale the penalties. Every check that can fail runs inside
``agreement.agree``, so a bad input on one rank raises the same error on all of them before any work.
"""

from __future__ import annotations

import datetime
import json
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from sklearn.exceptions import ConvergenceWarning

from ..backends import resolve_backend, resolve_solver
from ..errors import FitInterrupted
from ..init import random_start
from ..layouts import as_layout
from ..losses import parse_beta_loss
from ..penalties import Penalties
from ..safeguard import apply_factor_floor_, exact_zeros, reconstruction_floor
from ..scaling import choose_scaling
from ..solvers import check_loss, solve
from ..validation import as_tensor, check_factor
from . import comm
from .agreement import agree
from .checkpoints import ShardCheckpointWriter
from .grid import ProcessGrid, make_grid, split_sizes
from .layout import ShardedMatrix, ShardedProblem

__all__ = ["fit_distributed", "DistributedOutput", "Start", "INITS"]

#: the starts a distributed fit can draw: nndsvd* needs an SVD of all of X.
INITS = ("random", "custom")


@dataclass
class Start:
    """Where a resumed fit continues: owned factors in X's units, the iteration, the history, the state."""

    W: np.ndarray
    H: np.ndarray
    n_iter: int
    history: list
    solver_state: dict | None
    shard_file: str | None = None  # this rank's checkpoint file it was read from (deleted once superseded)


@dataclass
class DistributedOutput:
    result: object  # SolverResult of the owned parts, in X's units
    kind: object  # InputKind of X_local
    grid: ProcessGrid
    shape: tuple[int, int]


def _params_fingerprint(params: dict) -> dict:
    return {key: repr(value) for key, value in sorted(params.items())}


def _local_phase(X_local, n_components, options, start):
    """Validate options and the local block; what every rank reports about itself."""
    p = options._validated_params()
    beta = parse_beta_loss(p["beta_loss"])
    check_loss(p["solver"], beta, p["beta_loss"])
    if p["solver"] == "newton":
        # Its half-update needs a second pass over X at the Newton candidate (fastnmf.newton): over a grid, one
        # more gather and reduction of per-column sums per half-update, not written yet.
        raise ValueError("solver='newton' is not supported by a distributed fit yet: use solver='mu' (or 'auto') "
                         "for the Kullback-Leibler divergence.")
    if p["missing_values"] is not None:
        raise ValueError("missing_values is not supported by a distributed fit yet (entry weights are "
                         "single-process): pass a complete X or fit it with fastnmf.non_negative_factorization.")
    if p["chunk_rows"] is not None or p["memory_budget"] is not None:
        raise ValueError("chunk_rows / memory_budget (streamed X) are not supported by a distributed fit yet: each "
                         "rank's block must be in memory (np.memmap blocks are read once, when the fit starts).")
    init = "random" if p["init"] is None else p["init"]
    if start is None and init not in INITS:
        raise ValueError(f"init={init!r} needs an SVD of all of X, which a distributed fit does not compute; "
                         f"use one of {list(INITS)} (the default is 'random').")
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise ValueError(f"Invalid n_components={n_components!r}: a distributed fit needs an int ≥ 1.")
    X, kind = as_tensor(X_local, "X_local", device=p["device"])
    layout = as_layout(X)
    info = dict(shape=tuple(layout.shape), sparse=layout.nnz is not None, dtype=str(layout.dtype),
                device=layout.device.type, nnz=layout.nnz, max=float(layout.max()),
                sum=float(layout.mean(dtype=torch.float64)) * layout.shape[0] * layout.shape[1],
                params=_params_fingerprint(p))
    return (p, beta, init, layout, kind), info


def _global_shape(grid: ProcessGrid, infos: list) -> tuple[int, int]:
    """Check that the blocks fit the grid (``shard``'s split) and agree; return the global (m, n)."""
    first = infos[0]
    for rank, info in enumerate(infos):
        differ = {key: (value, first["params"].get(key)) for key, value in info["params"].items()
                  if value != first["params"].get(key)}
        if differ:
            described = ", ".join(f"{key}={mine} (rank 0: {theirs})" for key, (mine, theirs) in differ.items())
            raise ValueError(f"Every rank must pass the same options: rank {rank} has {described}.")
        for key, what in (("dtype", "dtype"), ("sparse", "sparse or dense storage"), ("device", "device type")):
            if info[key] != first[key]:
                raise ValueError(f"Every rank must pass the same {what}: rank {rank} has {info[key]}, rank 0 "
                                 f"{first[key]}.")
    heights = [infos[i * grid.columns]["shape"][0] for i in range(grid.rows)]
    widths = [infos[j]["shape"][1] for j in range(grid.columns)]
    m, n = sum(heights), sum(widths)
    if m < grid.rows or n < grid.columns:
        raise ValueError(f"X of shape ({m}, {n}) is too small for a {grid.rows}×{grid.columns} grid: every block "
                         "needs at least one row and one column.")
    rows, columns = split_sizes(m, grid.rows), split_sizes(n, grid.columns)
    for rank, info in enumerate(infos):
        i, j = grid.position_of(rank)
        if tuple(info["shape"]) != (rows[i], columns[j]):
            raise ValueError(
                f"Rank {rank} (grid position {(i, j)}) holds a block of shape {tuple(info['shape'])}, but a "
                f"{grid.rows}×{grid.columns} grid over X of shape ({m}, {n}) gives it ({rows[i]}, {columns[j]}): "
                "shard X with fastnmf.distributed.shard (blocks as even as possible, the first ones larger)."
            )
    return m, n


def _owned_factor(F, name, owned_shape, global_shape, rows_or_columns, like, dtype):
    """A custom factor given whole (sliced here) or as this rank's owned part."""
    if tuple(np.shape(F)) == tuple(global_shape) and tuple(owned_shape) != tuple(global_shape):
        F = F[rows_or_columns.start:rows_or_columns.stop] if name == "W" else F[:, rows_or_columns.start:rows_or_columns.stop]
    return check_factor(F, name, owned_shape, like, dtype)


def fit_distributed(X_local, n_components, options, *, grid=None, group=None, W=None, H=None, callback=None,
                    timeout=None, start: Start | None = None) -> DistributedOutput:
    """The distributed fit (``fastnmf.distributed.non_negative_factorization``): ``options`` is an NMF."""
    if isinstance(timeout, (int, float)):
        timeout = datetime.timedelta(seconds=float(timeout))
    grid = make_grid(grid, group, timeout)
    rank = dist.get_rank(grid.group)
    (p, beta, init, local, kind), infos = agree(lambda: _local_phase(X_local, n_components, options, start), grid.group)
    m, n = _global_shape(grid, infos)
    nnz = sum(info["nnz"] for info in infos) if infos[0]["sparse"] else None
    x_max, x_sum = max(info["max"] for info in infos), math.fsum(info["sum"] for info in infos)
    k = int(n_components)
    factor_dtype = local.dtype if local.dtype in (torch.float32, torch.float64) else torch.float32
    X = ShardedMatrix(local, grid, (m, n), nnz=nnz, x_max=x_max, x_sum=x_sum)
    owned_rows, owned_columns = grid.owned_rows(m), grid.owned_columns(n)
    scaling = choose_scaling(x_max, beta)
    X = scaling.data(X)
    local_device_probe = torch.empty(0, device=local.device)  # check_factor reads the device of X from it

    def starting_point():
        shapes = ((len(owned_rows), k), (k, len(owned_columns)))
        if start is not None:
            W0 = scaling.factor_in(check_factor(start.W, "W (checkpoint)", shapes[0], local_device_probe, factor_dtype))
            H0 = scaling.factor_in(check_factor(start.H, "H (checkpoint)", shapes[1], local_device_probe, factor_dtype))
        elif init == "custom":
            if W is None or H is None:
                raise ValueError("init='custom' needs both W and H: each whole, or this rank's owned part "
                                 "(fastnmf.distributed.owned_parts).")
            W0 = scaling.factor_in(_owned_factor(W, "W", shapes[0], (m, k), owned_rows, local_device_probe, factor_dtype))
            H0 = scaling.factor_in(_owned_factor(H, "H", shapes[1], (k, n), owned_columns, local_device_probe,
                                                 factor_dtype))
        else:
            # The start of the single-process fit, drawn whole (O((m + n)·k) host memory, once) and sliced:
            # a function of the global shape and the seed, not of the grid.
            W_all, H_all = random_start((m, n), x_sum / scaling.scale / (m * n), k, p["random_state"])
            as_factor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(  # noqa: E731
                device=local.device, dtype=factor_dtype)
            W0 = as_factor(W_all[owned_rows.start:owned_rows.stop])
            H0 = as_factor(H_all[:, owned_columns.start:owned_columns.stop])
        return (apply_factor_floor_(W0), apply_factor_floor_(H0)), (bool(W0.any()), bool(H0.any()))

    (W0, H0), positive = agree(starting_point, grid.group)
    for index, name in enumerate(("W", "H")):
        if start is None and init == "custom" and not any(flags[index] for flags in positive):
            raise ValueError(f"The custom {name} passed to NMF is all zeros: multiplicative updates can never move "
                             f"a factor from 0. Pass a {name} with a positive entry, or init='random'.")

    alpha_H = p["alpha_W"] if p["alpha_H"] == "same" else p["alpha_H"]
    penalties = scaling.penalties(Penalties.from_alphas(p["alpha_W"], alpha_H, p["l1_ratio"], m, n))
    backend = resolve_backend(p["backend"], local, p["precision"], solver=p["solver"])
    solver = resolve_solver(p["solver"], beta, X, p["backend"], p["precision"])  # the sharded layout's solvers
    # The fused kernels read fp16/bf16 X as stored, but a half-update shared by a group runs the rule's
    # torch statistics, which compute in the factors' dtype: there X is converted once.
    if local.dtype not in backend.native_x_dtypes or (grid.size > 1 and local.dtype != factor_dtype):
        X = X.astype(factor_dtype)
    eps_r = reconstruction_floor(float(X.max()), factor_dtype)
    problem = ShardedProblem(X=X, beta=beta, backend=backend, eps_r=eps_r, penalties=penalties)
    solver_options = dict(inner_iter=p["inner_iter"], extrapolate=p["extrapolate"]) if solver == "hals" else {}

    def to_user(result):
        return scaling.result_out(replace(result, W=exact_zeros(result.W), H=exact_zeros(result.H)))

    on_check = None
    if p["checkpoint"] is not None:
        params = {key: value for key, value in options.get_params().items()
                  if key not in ("checkpoint", "checkpoint_every", "random_state")}
        params = json.loads(json.dumps(params, default=str))
        same_folder = start is not None and start.shard_file is not None and \
            Path(start.shard_file).resolve().parent == Path(p["checkpoint"]).resolve()
        previous = start.shard_file if same_folder else None
        writer = ShardCheckpointWriter(p["checkpoint"], p["checkpoint_every"], grid, rank, params, (m, n),
                                       infos[0]["dtype"], local.device, None if previous is None else Path(previous).name)
        on_check = lambda result: writer(to_user(result))  # noqa: E731
    stop_callback = None
    if callback is not None:
        user_callback = callback

        def stop_callback(n_iter, W_owned, H_owned):  # any rank's True stops every rank (one scalar all-reduce)
            stop = bool(user_callback(n_iter, scaling.factor_out(exact_zeros(W_owned)),
                                      scaling.factor_out(exact_zeros(H_owned))))
            flag = torch.tensor([1.0 if stop else 0.0], device=local.device)
            return bool(comm.all_reduce_max(flag, grid.group)[0])
    history = None if start is None else [scaling.objective_in(value) for value in start.history]
    try:
        result = solve(
            problem, W0, H0, solver=solver, max_iter=p["max_iter"], tol=p["tol"], check_every=p["check_every"],
            verbose=p["verbose"] if rank == 0 else 0, solver_options=solver_options,
            start_iteration=0 if start is None else start.n_iter, history=history,
            solver_state=None if start is None else start.solver_state, on_check=on_check, callback=stop_callback,
        )
    except FitInterrupted as interrupt:
        interrupt.output = DistributedOutput(to_user(interrupt.result), kind, grid, (m, n))
        raise
    if result.stop_reason == "max_iter" and p["tol"] > 0 and rank == 0:  # once per fit, as verbose
        warnings.warn(
            f"Maximum number of iterations {p['max_iter']} reached before the relative decrease of the "
            f"objective fell below tol={p['tol']}. Increase max_iter to improve convergence.",
            ConvergenceWarning, stacklevel=3,
        )
    return DistributedOutput(to_user(result), kind, grid, (m, n))
