"""The functional API, and the one fit path the estimator shares with it.

It only validates, initializes, picks a backend and calls a solver (DESIGN.md §1).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .errors import FitInterrupted
from .init import INIT_NAMES, default_init, initialize
from .losses import parse_beta_loss
from .ops import BACKEND_NAMES, PRECISIONS, resolve_backend
from .safeguard import apply_factor_floor_, reconstruction_floor
from .scaling import choose_scaling
from .solvers import SOLVER_NAMES, Problem, SolverResult, solve, supports
from .sparse import SparseMatrix
from .validation import InputKind, as_tensor, check_choice, check_factor, check_int, check_real
from .weights import WeightedMatrix, check_missing_values, weighted_data

__all__ = ["non_negative_factorization", "factorization_loss", "fit_factorization", "FitOutput"]


@dataclass
class FitOutput:
    """A finished fit: the solver's result plus what is needed to hand results back to the user."""

    result: SolverResult
    kind: InputKind
    n_components: int
    beta: float


def _resolve_n_components(n_components, W, H, init, update_H, n_features) -> int:
    if n_components is None:
        return n_features
    if isinstance(n_components, str):
        if n_components != "auto":
            raise ValueError(f"Invalid n_components={n_components!r}: expected 'auto', None or an integer >= 1.")
        uses_custom = (init == "custom" or (init is None and W is not None and H is not None)) or not update_H
        # np.shape: the factors are not validated yet (lists, arrays and tensors all have a shape here).
        if uses_custom and H is not None and len(np.shape(H)) == 2:
            return int(np.shape(H)[0])
        if uses_custom and W is not None and len(np.shape(W)) == 2:
            return int(np.shape(W)[1])
        return n_features
    return check_int(n_components, "n_components", minimum=1)


def _regularization(alpha_W, alpha_H, l1_ratio, n_samples, n_features):
    """scikit-learn's scaling (since 1.2): W's terms by n_features, H's by n_samples."""
    alpha_W = check_real(alpha_W, "alpha_W")
    alpha_H = alpha_W if isinstance(alpha_H, str) and alpha_H == "same" else check_real(alpha_H, "alpha_H")
    l1_ratio = check_real(l1_ratio, "l1_ratio", maximum=1.0)
    return dict(
        l1_w=n_features * alpha_W * l1_ratio,
        l2_w=n_features * alpha_W * (1.0 - l1_ratio),
        l1_h=n_samples * alpha_H * l1_ratio,
        l2_h=n_samples * alpha_H * (1.0 - l1_ratio),
    )


def fit_factorization(
    X,
    W=None,
    H=None,
    n_components="auto",
    *,
    init=None,
    update_H=True,
    solver="auto",
    beta_loss="frobenius",
    tol=1e-4,
    max_iter=200,
    alpha_W=0.0,
    alpha_H="same",
    l1_ratio=0.0,
    random_state=None,
    verbose=0,
    backend="auto",
    precision="ieee",
    check_every=10,
    device=None,
    inner_iter="auto",
    extrapolate=False,
    weights=None,
    missing_values=None,
    start_iteration=0,
    history=None,
    on_check=None,
    callback=None,
) -> FitOutput:
    """Validate everything, then initialize and solve. See :func:`non_negative_factorization`.

    ``start_iteration``, ``history``: where a resumed fit (custom W, H from a checkpoint) stopped.
    ``on_check(result, X)``: called after each evaluation of the objective.
    """
    # Options first: a bad option must not cost a pass over X.
    beta = parse_beta_loss(beta_loss)
    check_choice(solver, "solver", SOLVER_NAMES + ("auto",))
    if solver != "auto" and not supports(solver, beta):
        raise ValueError(
            f"solver='hals' minimizes the Frobenius loss only (beta_loss=2), got beta_loss={beta_loss!r}; "
            "use solver='mu' (or 'auto') for other losses."
        )
    if solver == "hals" and weights is not None:
        raise _weighted_hals_error()
    check_missing_values(missing_values)
    if not (isinstance(inner_iter, str) and inner_iter == "auto"):
        inner_iter = check_int(inner_iter, "inner_iter", minimum=1)
    if not isinstance(extrapolate, bool):
        raise ValueError(f"Invalid extrapolate={extrapolate!r}: expected True or False.")
    if init is not None:
        check_choice(init, "init", INIT_NAMES)
    check_choice(backend, "backend", BACKEND_NAMES)
    check_choice(precision, "precision", PRECISIONS)
    tol = check_real(tol, "tol")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    check_every = check_int(check_every, "check_every", minimum=1)
    if not isinstance(update_H, bool):
        raise ValueError(f"Invalid update_H={update_H!r}: expected True or False.")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(n_iter, W, H), got {type(callback).__name__}: {callback!r}.")

    weighted = weights is not None or missing_values is not None
    X, kind = as_tensor(X, "X", device=device, check_values=not weighted)
    if weighted:
        X = weighted_data(X, weights, missing_values)  # checks X where its weight is positive
    validated_x = X  # as the user gave it (checkpoints record its shape and dtype)
    n_samples, n_features = X.shape
    k = _resolve_n_components(n_components, W, H, init, update_H, n_features)
    penalties = _regularization(alpha_W, alpha_H, l1_ratio, n_samples, n_features)
    factor_dtype = X.dtype if X.dtype in (torch.float32, torch.float64) else torch.float32
    layout = _data_layout(X)
    if solver == "auto":
        solver = "hals" if beta == 2.0 and layout != "weighted" else "mu"
    elif solver == "hals" and layout == "weighted":
        raise _weighted_hals_error()
    chosen = resolve_backend(backend, X.device, precision, X.dtype, data=layout)

    scaling = choose_scaling(float(X.max()), beta)
    X = scaling.data(X)
    # The initialization sees X alone (0 wherever the weight is 0).
    W, H = _starting_point(X.X if layout == "weighted" else X, W, H, k, init, update_H, random_state,
                           factor_dtype, scaling)
    if X.dtype not in chosen.native_x_dtypes:
        X = X.to(factor_dtype)
    eps_r = reconstruction_floor(float(X.max()), factor_dtype)
    problem = Problem(X=X, beta=beta, backend=chosen, eps_r=eps_r, **scaling.penalties(**penalties))
    solver_options = dict(inner_iter=inner_iter, extrapolate=extrapolate) if solver == "hals" else {}
    if history is not None:
        history = [scaling.objective_in(value) for value in history]
    report = None if on_check is None else (lambda current: on_check(scaling.result_out(current), validated_x))
    if callback is not None and not scaling.identity:
        user_callback = callback

        def callback(n_iter, W, H):  # the solver works on the rescaled data; the user sees X's units
            return user_callback(n_iter, scaling.factor_out(W), scaling.factor_out(H))
    try:
        result = solve(
            problem, W, H, solver=solver, update_h=update_H, max_iter=max_iter, tol=tol,
            check_every=check_every, verbose=verbose, solver_options=solver_options,
            start_iteration=start_iteration, history=history, on_check=report, callback=callback,
        )
    except FitInterrupted as interrupt:
        output = FitOutput(result=scaling.result_out(interrupt.result), kind=kind, n_components=k, beta=beta)
        interrupt.output = output
        raise
    return FitOutput(result=scaling.result_out(result), kind=kind, n_components=k, beta=beta)


def _data_layout(X) -> str:
    """What validation made of X, in ``fastnmf.ops.DATA_LAYOUTS`` terms (it decides the backend)."""
    return "weighted" if isinstance(X, WeightedMatrix) else "sparse" if isinstance(X, SparseMatrix) else "dense"


def _weighted_hals_error() -> ValueError:
    # Weighted HALS needs Σ_i M_ij W_ik² per entry of H and a residual updated after every rank-one step —
    # no Gram matrices, a pass over the weights per component: not implemented.
    return ValueError(
        "solver='hals' does not support entry weights or missing values; use solver='mu' (or 'auto', "
        "which picks 'mu' for weighted data)."
    )


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
        W = scaling.factor_in(check_factor(W, "W", (m, k), X, dtype))
        H = scaling.factor_in(check_factor(H, "H", (k, n), X, dtype))
    else:
        if W is not None or H is not None:
            warnings.warn(
                f"W or H was given with init={init!r}; it is ignored. Set init='custom' to start from it.",
                UserWarning, stacklevel=3,
            )
        W, H = initialize(X, k, init or default_init(k, m, n), random_state, dtype)
    return apply_factor_floor_(W), apply_factor_floor_(H)


def non_negative_factorization(
    X,
    W=None,
    H=None,
    n_components="auto",
    *,
    init=None,
    update_H=True,
    solver="auto",
    beta_loss="frobenius",
    tol=1e-4,
    max_iter=200,
    alpha_W=0.0,
    alpha_H="same",
    l1_ratio=0.0,
    random_state=None,
    verbose=0,
    backend="auto",
    precision="ieee",
    check_every=10,
    device=None,
    inner_iter="auto",
    extrapolate=False,
    weights=None,
    missing_values=None,
    callback=None,
):
    """Find non-negative W, H whose product approximates the non-negative X.

    ``X (n_samples × n_features) ≈ W (n_samples × n_components) · H (n_components × n_features)``,
    minimizing

    .. math::

        L(W, H) = D_β(X \\| WH)
            + α_W ρ n_f \\|W\\|_1 + ½ α_W (1-ρ) n_f \\|W\\|_F^2
            + α_H ρ n_s \\|H\\|_1 + ½ α_H (1-ρ) n_s \\|H\\|_F^2

    with ρ = ``l1_ratio``, n_s = n_samples, n_f = n_features, and D_β the β-divergence
    (``beta_loss``: "frobenius" = ½‖X − WH‖², "kullback-leibler", "itakura-saito", or any real β).
    With entry weights M (``weights``, ``missing_values``) the divergence is
    ``D_β^M(X | WH) = Σ_ij M_ij d_β(X_ij | (WH)_ij)``.

    Parameters
    ----------
    X : array-like, scipy.sparse matrix or torch.Tensor (dense or sparse) of shape (n_samples, n_features)
        Non-negative data. numpy in → numpy out (float32 stays float32; other dtypes become float64);
        torch in → torch out on the same device (float16/bfloat16 X gives float32 factors). Sparse X
        (scipy CSR/CSC/COO, torch COO/CSR) is never densified: memory O(nnz + (n_samples + n_features)·k);
        scipy in → numpy factors out. Costs per loss: ``fastnmf.backend_sparse``.
    W, H : optional
        Starting factors for ``init="custom"`` (or both given with ``init=None``); with
        ``update_H=False``, H is fixed and only W is solved for. Never modified.
    n_components : int, "auto" or None
        Rank k. "auto": from the custom W/H, else n_features. None: n_features.
    init : {"random", "nndsvd", "nndsvda", "nndsvdar", "custom"} or None
        None: "nndsvda" if k ≤ min(n_samples, n_features), else "random" (scikit-learn's default).
    update_H : bool
        False solves for W with H fixed (what ``NMF.transform`` does).
    solver : {"auto", "mu", "hals"}
        "mu": multiplicative updates (Lee & Seung; Févotte & Idier's exponent for β outside [1, 2]), any β.
        "hals": accelerated hierarchical ALS (coordinate descent; Cichocki & Phan 2009, Gillis & Glineur
        2012), Frobenius only, unweighted. "auto": "hals" for the unweighted Frobenius loss, else "mu".
    beta_loss : str or float
    tol : float
        Stop when the objective's decrease over ``check_every`` iterations, relative to its value at the
        previous check, falls below ``tol``.
    max_iter : int
    alpha_W, alpha_H, l1_ratio : float
        Regularization, scikit-learn's parameterization; ``alpha_H="same"`` uses ``alpha_W``.
    random_state : int, RandomState or None
    verbose : int
        Non-zero shows a progress bar with the current objective.
    backend : {"auto", "torch", "triton"}
        "auto": Triton kernels for CUDA data that is not float64 (when Triton is installed), else PyTorch.
        Sparse X on "triton": the KL update is one fused kernel per half-iteration (``WH`` and ``X / WH``
        at the stored entries in registers); other losses, HALS and the objective use the PyTorch sparse
        ops on the same device. Weighted data always runs on PyTorch; "triton" with it is a ValueError.
    precision : {"ieee", "tf32", "tf32x3"}
        Precision of the Triton kernels' matrix products. "ieee" (default) is full fp32, so the loss
        curve matches the torch backend's.
    check_every : int
        Iterations between two evaluations of the objective (each one is a pass over X).
    device : str or torch.device, optional
        Where to compute (e.g. "cuda" for numpy input); default: where X is.
    inner_iter : "auto" or int
        HALS only: sweeps of one factor per product with X. "auto": up to ``1 + ⌊ρ/2⌋`` (ρ = cost of
        the X product / cost of a sweep), stopping once a sweep changes the factor by ≤ 10 % of the
        first (Gillis & Glineur 2012); 1 = plain HALS.
    extrapolate : bool
        HALS only: extrapolation with restarts (Ang & Gillis 2019).
    weights : array-like, scipy.sparse matrix or torch.Tensor of X's shape, optional
        Non-negative entry weights M. Entries of weight 0 are left out of the fit, whatever X holds
        there. Sparse weights are a pattern (weight 0 outside it; products cost O(nnz(M)·k)); dense weights
        cost a pass over all entries per update (``fastnmf.backend_weighted``). Solver "mu" only.
    missing_values : None or np.nan
        np.nan: NaN entries of X are missing (weight 0) instead of an error. Solver "mu" only, when X
        holds NaN.
    callback : callable, optional
        ``callback(n_iter, W, H)``, called with the starting point (``n_iter = 0``) and after every
        iteration, with the current factors: torch tensors on the computing device, in X's units, owned by
        the solver (copy what you keep; never modify them). Return True to stop there (the objective is
        evaluated once more, as at ``max_iter``). It costs no synchronization unless it reads the factors' values (then one, on a
        GPU): timing, progress logging and custom stopping rules hook in here.

    Returns
    -------
    W : (n_samples, n_components), H : (n_components, n_features), n_iter : int
    """
    fit = fit_factorization(
        X, W, H, n_components, init=init, update_H=update_H, solver=solver, beta_loss=beta_loss, tol=tol,
        max_iter=max_iter, alpha_W=alpha_W, alpha_H=alpha_H, l1_ratio=l1_ratio, random_state=random_state,
        verbose=verbose, backend=backend, precision=precision, check_every=check_every, device=device,
        inner_iter=inner_iter, extrapolate=extrapolate, weights=weights, missing_values=missing_values,
        callback=callback,
    )
    result = fit.result
    return fit.kind.output(result.W.contiguous()), fit.kind.output(result.H.contiguous()), result.n_iter


def factorization_loss(X, W, H, beta_loss="frobenius", *, weights=None, missing_values=None) -> float:
    """The β-divergence ``D_β(X | WH)`` of a factorization, as a Python float.

    With entry weights M (``weights``, ``missing_values`` as in :func:`non_negative_factorization`), the
    weighted divergence ``Σ_ij M_ij d_β(X_ij | (WH)_ij)``. Frobenius is ``½‖X − WH‖²`` (scikit-learn's
    convention); Itakura–Saito drops the terms where X is 0 (``fastnmf.losses``).

    X may be anything :func:`non_negative_factorization` takes — numpy, scipy.sparse, torch dense or sparse,
    CPU or CUDA — and is never densified; W (n_samples × n_components) and H (n_components × n_features)
    are dense, on X's device for torch. Computed in float64 without an m×n temporary: row blocks of WH for
    dense X; for sparse X the stored entries plus closed forms for the zeros (costs per β:
    ``fastnmf.backend_sparse``). WH is not floored: where X > 0 and (WH) = 0 the KL and IS divergences are
    infinite, as they are mathematically (the solvers' own objective floors WH at eps·max X).
    """
    beta = parse_beta_loss(beta_loss)
    check_missing_values(missing_values)
    weighted = weights is not None or missing_values is not None
    X, _ = as_tensor(X, "X", context="factorization_loss", check_values=not weighted)
    if weighted:
        X = weighted_data(X, weights, missing_values)
    m, n = X.shape
    shape = tuple(getattr(W, "shape", np.shape(W)))
    if len(shape) != 2:
        raise ValueError(f"W must be 2-D (n_samples × n_components), got shape {shape}.")
    k = int(shape[1])
    W = check_factor(W, "W", (m, k), X, torch.float64)
    H = check_factor(H, "H", (k, n), X, torch.float64)
    layout = _data_layout(X)
    backend = resolve_backend("torch", X.device, data=layout)
    return float(backend.objective(X, W, H, beta=beta, eps_r=0.0))
