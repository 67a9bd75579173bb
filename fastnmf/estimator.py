"""``fastnmf.NMF``: the scikit-learn estimator users already know, on PyTorch (and Triton on a GPU)."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .backends import BACKEND_NAMES, PRECISION_NAMES
from .checkpoint import Checkpoint, CheckpointError, read_checkpoint, write_checkpoint
from .errors import FitInterrupted
from .fit import fit_factorization
from .init import INIT_NAMES
from .params import (Anything, BetaLoss, Boolean, Device, Either, Integer, MemoryBudget, MissingValues, NComponents,
                     Options, Path, RealRange, validate_parameters)
from .solvers import SOLVER_NAMES
from .streaming import ChunkReadError, as_source, should_stream
from .validation import ArrayLike, as_tensor

__all__ = ["NMF"]


class NMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Non-negative matrix factorization: ``X ≈ W H`` with W, H ≥ 0.

    ``X (n_samples × n_features) ≈ W (n_samples × n_components) · H (n_components × n_features)``;
    ``H`` is ``components_`` and ``W`` is what ``fit_transform``/``transform`` return. The objective is

    .. math::

        L(W, H) = D_β(X \\| WH)
            + α_W ρ n_f \\|W\\|_1 + ½ α_W (1-ρ) n_f \\|W\\|_F^2
            + α_H ρ n_s \\|H\\|_1 + ½ α_H (1-ρ) n_s \\|H\\|_F^2

    (ρ = ``l1_ratio``; n_s, n_f = n_samples, n_features) — scikit-learn's ``NMF`` objective, with D_β the
    β-divergence; with entry weights M (``fit(X, weights=M)``, ``missing_values``) the divergence is
    ``Σ_ij M_ij d_β(X_ij | (WH)_ij)``. The parameters below are also the options of
    :func:`fastnmf.non_negative_factorization` (they are written once, here, with their constraints in
    ``_parameter_constraints``).

    numpy in → numpy out (float32 stays float32; other dtypes become float64); torch in → torch out on
    the same device and dtype (float16/bfloat16 X gives float32 factors). Sparse X (scipy.sparse
    CSR/CSC/COO, torch sparse COO/CSR) is fitted without ever being densified: memory
    O(nnz + (n_samples + n_features)·k); scipy in → numpy out. Factors come back with exact zeros where
    the solver holds an entry at its safeguard floor.

    Parameters
    ----------
    n_components : int, "auto" or None
        Rank k. "auto": from the custom W/H, else n_features. None: n_features.
    init : {"random", "nndsvd", "nndsvda", "nndsvdar", "custom"} or None
        None: "nndsvda" if k ≤ min(n_samples, n_features), else "random" (scikit-learn's default). The same
        ``random_state`` gives exactly scikit-learn's starting point.
    solver : {"auto", "mu", "hals", "newton"}
        "mu": multiplicative updates (Lee & Seung; Févotte & Idier's exponent for β outside [1, 2]), any β.
        "hals": accelerated hierarchical ALS (coordinate descent; Cichocki & Phan 2009, Gillis & Glineur
        2012), Frobenius only, unweighted. "newton": diagonalized Newton (Van hamme 2013), per column the
        Newton step where it lowers the objective, else the MU step; Kullback-Leibler only, dense, sparse or
        weighted X in memory (two passes over X per half-update; one more buffer of X's shape). "auto":
        "hals" for the unweighted Frobenius loss; "newton" for the Kullback-Leibler divergence where the torch
        backend runs unweighted X in memory (the CPU; float64 or ``backend="torch"`` data on a GPU) and
        ``precision`` is not "bf16"; else "mu".
    beta_loss : "frobenius", "kullback-leibler", "itakura-saito" or a real number
        "frobenius" is ½‖X − WH‖².
    tol : float ≥ 0
        Stop when the objective's decrease over ``check_every`` iterations, relative to its value at the
        previous check, falls below ``tol``. Reaching ``max_iter`` first (with ``tol > 0``) warns with a
        ``sklearn.exceptions.ConvergenceWarning``.
    max_iter : int ≥ 1
    random_state : int, RandomState or None
    alpha_W, alpha_H, l1_ratio : float
        Regularization, scikit-learn's parameterization; ``alpha_H="same"`` uses ``alpha_W``.
    verbose : int
        Non-zero shows a progress bar with the current objective.
    backend : {"auto", "torch", "triton"}
        "auto": Triton kernels for CUDA data that is not float64 (when Triton is installed and has kernels
        for the data's layout), else PyTorch. Sparse X on "triton": the KL update is one fused kernel per
        half-iteration; other losses, HALS and the objective use the PyTorch sparse ops on the same
        device. Weighted data always runs on PyTorch; "triton" with it is a ValueError.
    precision : {"auto", "ieee", "tf32", "tf32x3", "bf16"}
        Precision of the Triton kernels' matrix products (the torch backend ignores them). "auto" (default):
        "tf32x3", three tf32 tensor-core products per dot, fp32-accurate (whole fits within 6e-7 of the
        fp32 loss, measured by emulation); "ieee": fp32 FMA; "tf32": one tf32 product (fits drift by up to
        1e-3). "bf16" is the torch backend's: the KL MU's reconstruction, ratio and numerator on dense X in
        bfloat16 (X rounded to 8 significant bits, exact for counts ≤ 256; factors, steps and objective in
        fp32) — 2.4× faster per iteration on a CPU with avx512_bf16, much slower on one without.
        The objective that decides ``tol`` is always computed in fp32.
    check_every : int ≥ 1
        Iterations between two evaluations of the objective (each one is a pass over X).
    device : str or torch.device, optional
        Where to compute (e.g. "cuda" for numpy input); default: where X is.
    inner_iter : "auto" or int ≥ 1
        HALS only: sweeps of one factor per product with X. "auto": up to ``1 + ⌊ρ/2⌋`` (ρ = cost of the X
        product / cost of a sweep), each column stopping once a sweep changes it by ≤ 10 % of its first
        sweep's change (Gillis & Glineur 2012); 1 = plain HALS.
    extrapolate : "auto" or bool
        HALS only: extrapolation with restarts (Ang & Gillis 2019). "auto" (default): on without penalties
        (alpha_W = alpha_H = 0), off with them — what reached the benchmark's targets first
        (docs/benchmarks.md, "HALS defaults").
    checkpoint : path or None; checkpoint_every : float ≥ 0
        Write the fit state to ``checkpoint`` at most every ``checkpoint_every`` seconds (``NMF.resume``).
    missing_values : None or np.nan
        np.nan: NaN entries of X are missing (weight 0) instead of an error. Solver "mu" only.
    chunk_rows : int ≥ 1 or None; memory_budget : bytes, a size string ("500MB", "2GiB") or None
        Stream X in chunks of rows, each read once per iteration (docs/streaming.md): ``chunk_rows`` rows at a
        time, or as many as ``memory_budget`` allows. X that is not in memory (``np.memmap``, an h5py dataset,
        a backed AnnData ``.X``, ``fastnmf.Chunks``) is streamed whatever these say (512 MiB by default).
        A streamed X starts from ``init="random"`` when ``init`` is None (nndsvd needs all of X).

    Attributes
    ----------
    components_ : (n_components, n_features) — H, same kind (numpy/torch) as the fitted X.
    n_components_ : int
    reconstruction_err_ : float — ``sqrt(2 · D_β(X | WH))``, as scikit-learn reports it.
    n_iter_ : int
    loss_history_ : list of float — the objective at iteration 0 and at every check
        (every ``check_every`` iterations, and the last one).
    n_features_in_ : int
    """

    _parameter_constraints = {
        "n_components": NComponents(),
        "init": Options(*INIT_NAMES, None),
        "solver": Options(*SOLVER_NAMES, "auto"),
        "beta_loss": BetaLoss(),
        "tol": RealRange(0.0),
        "max_iter": Integer(1),
        "random_state": Anything(),
        "alpha_W": RealRange(0.0),
        "alpha_H": Either(Options("same"), RealRange(0.0)),
        "l1_ratio": RealRange(0.0, 1.0),
        "verbose": Either(Boolean(), Integer(0)),
        "backend": Options(*BACKEND_NAMES),
        "precision": Options(*PRECISION_NAMES),
        "check_every": Integer(1),
        "device": Device(),
        "inner_iter": Either(Options("auto"), Integer(1)),
        "extrapolate": Either(Options("auto"), Boolean()),
        "checkpoint": Path(),
        "checkpoint_every": RealRange(0.0),
        "missing_values": MissingValues(),
        "chunk_rows": Either(Options(None), Integer(1)),
        "memory_budget": MemoryBudget(),
    }

    def __init__(
        self,
        n_components="auto",
        *,
        init=None,
        solver="auto",
        beta_loss="frobenius",
        tol=1e-4,
        max_iter=200,
        random_state=None,
        alpha_W=0.0,
        alpha_H="same",
        l1_ratio=0.0,
        verbose=0,
        backend="auto",
        precision="auto",
        check_every=10,
        device=None,
        inner_iter="auto",
        extrapolate="auto",
        checkpoint=None,
        checkpoint_every=60.0,
        missing_values=None,
        chunk_rows=None,
        memory_budget=None,
    ):
        self.n_components = n_components
        self.init = init
        self.solver = solver
        self.beta_loss = beta_loss
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.verbose = verbose
        self.backend = backend
        self.precision = precision
        self.check_every = check_every
        self.device = device
        self.inner_iter = inner_iter
        self.extrapolate = extrapolate
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.missing_values = missing_values
        self.chunk_rows = chunk_rows
        self.memory_budget = memory_budget

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _validated_params(self) -> dict:
        """Every parameter checked against ``_parameter_constraints`` (before any work), normalized."""
        return validate_parameters(self._parameter_constraints, self.get_params(deep=False))

    def _with(self, **changes) -> "NMF":
        """A copy of this estimator's options with ``changes`` (the fit options of a resume or transform)."""
        return type(self)(**{**self.get_params(deep=False), **changes})

    def fit_transform(self, X, y=None, W=None, H=None, weights=None) -> ArrayLike:
        """Fit the model to X and return W (n_samples × n_components).

        ``W``, ``H``: starting factors for ``init="custom"`` (never modified). ``weights``: non-negative
        entry weights of X's shape (dense or sparse; entries of weight 0 are left out of the fit). Ctrl-C
        keeps the last checked iterate in the estimator (usable afterwards), warns, and re-raises.
        """
        return self._fit(X, W, H, self.n_components, init=self.init, weights=weights)

    def _fit(self, X, W, H, n_components, *, init, weights=None, start_iteration=0, history=None,
             solver_state=None):
        options = self._with(n_components=n_components, init=init)
        writer = _CheckpointWriter(self) if self.checkpoint is not None else None
        try:
            fit = fit_factorization(
                X, W, H, options, update_H=True, weights=weights, start_iteration=start_iteration,
                history=history, solver_state=solver_state, on_check=None if writer is None else writer.maybe_write,
            )
        except FitInterrupted as interrupt:
            self._store(interrupt.output)
            if writer is not None:
                writer.write_last()
            warnings.warn(
                f"NMF fit interrupted: keeping the last checked iterate (iteration {self.n_iter_}); "
                "the estimator can transform, and NMF.resume can continue from a checkpoint.",
                UserWarning, stacklevel=3,
            )
            raise
        except ChunkReadError as error:
            self._store(error.output)  # as after Ctrl-C: the last checked iterate, usable (transform, resume)
            if writer is not None:
                writer.write_last()
            raise
        if writer is not None:
            writer.write_last(fit.result)
        return self._store(fit)

    def _store(self, fit):
        result = fit.result
        self.n_features_in_ = int(result.H.shape[1])
        self.n_components_ = fit.n_components
        self.components_ = fit.kind.output(result.H.contiguous())
        self.n_iter_ = result.n_iter
        self.loss_history_ = list(result.loss_history)
        self.reconstruction_err_ = math.sqrt(2.0 * max(result.final_divergence, 0.0))
        return fit.kind.output(result.W.contiguous())

    @classmethod
    def resume(cls, path, X, weights=None, **overrides) -> NMF:
        """Continue a fit from the checkpoint at ``path`` on the same X (and the same ``weights``, if the
        fit had some); returns the fitted estimator.

        The parameters are the checkpointed ones; only ``max_iter``, ``tol``, ``verbose``, ``checkpoint``
        and ``checkpoint_every`` may be overridden. A fit resumed from a checkpoint reaches the same
        result as one that was never stopped (with ``extrapolate=True`` too: the checkpoint holds the
        extrapolation's step sizes and pairs).
        """
        state = read_checkpoint(path)
        allowed = {"max_iter", "tol", "verbose", "checkpoint", "checkpoint_every"}
        if set(overrides) - allowed:
            raise CheckpointError(
                f"Cannot change {sorted(set(overrides) - allowed)} when resuming from {path}: the checkpoint "
                f"was made with {{{', '.join(f'{key}={state.params.get(key)!r}' for key in sorted(set(overrides) - allowed))}}}."
            )
        model = cls(**{**state.params, **overrides})
        (shape, dtype), device = _input_shape_dtype(X, model)
        if shape != state.x_shape or dtype != state.x_dtype:
            raise CheckpointError(
                f"Checkpoint {path} was made for X of shape {state.x_shape} and dtype {state.x_dtype}, "
                f"not {shape} {dtype}."
            )
        as_input = (lambda a: torch.from_numpy(a).to(device)) if isinstance(X, torch.Tensor) else (lambda a: a)
        model._fit(X, as_input(state.W), as_input(state.H), state.H.shape[0], init="custom", weights=weights,
                   start_iteration=state.n_iter, history=state.loss_history, solver_state=state.solver_state)
        return model

    def fit(self, X, y=None, **params) -> NMF:
        """Fit the model to X; returns self."""
        self.fit_transform(X, **params)
        return self

    def _check_features(self, X):
        (shape, _), _ = _input_shape_dtype(X, self)
        n_features = shape[1]
        if n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    def transform(self, X, weights=None) -> ArrayLike:
        """W (n_samples × n_components) for new X, with the fitted components held fixed.

        ``weights``: optional entry weights of X's shape, as in :meth:`fit_transform`.
        """
        check_is_fitted(self)
        self._check_features(X)
        options = self._with(n_components=self.n_components_, init=None)
        fit = fit_factorization(X, None, self.components_, options, update_H=False, weights=weights)
        return fit.kind.output(fit.result.W.contiguous())

    def inverse_transform(self, X=None, *, W=None) -> ArrayLike:
        """Back to data space: ``W @ components_`` (n_samples × n_features), always dense (also for a
        sparse W: the reconstruction is dense by definition); scipy/numpy in → numpy out, torch → torch."""
        check_is_fitted(self)
        if W is not None:
            X = W
        if X is None:
            raise ValueError("inverse_transform needs W (n_samples × n_components).")
        W_tensor, kind = as_tensor(X, "W", device=self.device)
        if W_tensor.shape[1] != self.n_components_:
            raise ValueError(
                f"W has {W_tensor.shape[1]} columns, but the model has {self.n_components_} components."
            )
        H = torch.as_tensor(self.components_, device=W_tensor.device)
        return kind.output(W_tensor.to(H.dtype) @ H)

    @property
    def _n_features_out(self):
        """Number of transformed output features (for get_feature_names_out)."""
        return self.components_.shape[0]


class _CheckpointWriter:
    """Writes the estimator's fit state to ``checkpoint`` at most every ``checkpoint_every`` seconds (at
    evaluations of the objective, so a resumed fit repeats the same checks), and once at the end."""

    def __init__(self, model: NMF):
        self.model = model
        # JSON-able parameters; the seed is not needed (a resumed fit starts from the saved W, H).
        self.params = {key: (str(value) if isinstance(value, torch.device) else value)
                       for key, value in model.get_params().items()
                       if key not in ("checkpoint", "checkpoint_every", "random_state")}
        self.last_write = time.monotonic()
        self.latest = None

    def maybe_write(self, result, X) -> None:
        self.latest = (result, X)
        if time.monotonic() - self.last_write >= self.model.checkpoint_every:
            self._write(result, X)

    def write_last(self, result=None) -> None:
        if self.latest is None:
            return
        if result is None:
            result = self.latest[0]
        self._write(result, self.latest[1])

    def _write(self, result, X) -> None:
        state = Checkpoint(
            W=result.W.detach().cpu().numpy(), H=result.H.detach().cpu().numpy(), n_iter=result.n_iter,
            loss_history=list(result.loss_history), params=self.params,
            x_shape=tuple(X.shape), x_dtype=str(X.dtype), solver_state=_host_state(result.solver_state),
        )
        write_checkpoint(self.model.checkpoint, state)
        self.last_write = time.monotonic()


def _host_state(state: dict | None) -> dict | None:
    """A solver state with its tensors copied to numpy (what a checkpoint stores)."""
    if state is None:
        return None
    return {key: value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
            for key, value in state.items()}


def _input_shape_dtype(X, model):
    """``((shape, dtype as the fit records it), device)`` of X without reading a streamed X's values."""
    if should_stream(X, model._validated_params()):
        source = as_source(X)
        dtype = "torch.float32" if source.dtype in (np.float32, np.float16) else "torch.float64"
        return (tuple(source.shape), dtype), torch.device(model.device or "cpu")
    X_tensor, _ = as_tensor(X, "X", device=model.device, check_values=False)  # checked by the fit
    return (tuple(X_tensor.shape), str(X_tensor.dtype)), X_tensor.device
