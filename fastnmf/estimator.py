"""``fastnmf.NMF``: the scikit-learn estimator users already know, on PyTorch (and Triton on a GPU)."""

from __future__ import annotations

import math
import time
import warnings

import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .checkpoint import Checkpoint, CheckpointError, read_checkpoint, write_checkpoint
from .errors import FitInterrupted
from .functional import fit_factorization
from .validation import as_tensor

__all__ = ["NMF"]


class NMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Non-negative matrix factorization: ``X ≈ W H`` with W, H ≥ 0.

    ``X (n_samples × n_features) ≈ W (n_samples × n_components) · H (n_components × n_features)``;
    ``H`` is ``components_`` and ``W`` is what ``fit_transform``/``transform`` return. The objective is

    .. math::

        L(W, H) = D_β(X \\| WH)
            + α_W ρ n_f \\|W\\|_1 + ½ α_W (1-ρ) n_f \\|W\\|_F^2
            + α_H ρ n_s \\|H\\|_1 + ½ α_H (1-ρ) n_s \\|H\\|_F^2

    (ρ = ``l1_ratio``; n_s, n_f = n_samples, n_features) — scikit-learn's ``NMF`` objective. Parameters
    are those of :func:`fastnmf.non_negative_factorization`, plus the same defaults as scikit-learn
    (``tol=1e-4``, ``max_iter=200``). ``solver="auto"`` runs accelerated HALS for the Frobenius loss and
    multiplicative updates otherwise.

    numpy in → numpy out; torch in → torch out on the same device and dtype (float16/bfloat16 X gives
    float32 factors). Sparse X (scipy.sparse CSR/CSC/COO, torch sparse COO/CSR) is fitted without ever
    being densified; scipy in → numpy out. ``fit(X, weights=M)`` minimizes the weighted divergence
    ``Σ M_ij d_β(X_ij | (WH)_ij)``; ``missing_values=np.nan`` gives NaN entries of X weight 0 (in ``fit``
    and in ``transform``). See :func:`fastnmf.non_negative_factorization`.

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
        precision="ieee",
        check_every=10,
        device=None,
        inner_iter="auto",
        extrapolate=False,
        checkpoint=None,
        checkpoint_every=60.0,
        missing_values=None,
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _options(self):
        return dict(
            init=self.init, solver=self.solver, beta_loss=self.beta_loss, tol=self.tol, max_iter=self.max_iter,
            alpha_W=self.alpha_W, alpha_H=self.alpha_H, l1_ratio=self.l1_ratio, random_state=self.random_state,
            verbose=self.verbose, backend=self.backend, precision=self.precision, check_every=self.check_every,
            device=self.device, inner_iter=self.inner_iter, extrapolate=self.extrapolate,
            missing_values=self.missing_values,
        )

    def fit_transform(self, X, y=None, W=None, H=None, weights=None):
        """Fit the model to X and return W (n_samples × n_components).

        ``W``, ``H``: starting factors for ``init="custom"`` (never modified). ``weights``: non-negative
        entry weights of X's shape (dense or sparse; entries of weight 0 are left out of the fit). Ctrl-C
        keeps the last checked iterate in the estimator (usable afterwards), warns, and re-raises.
        """
        return self._fit(X, W, H, self.n_components, init=self.init, weights=weights)

    def _fit(self, X, W, H, n_components, *, init, weights=None, start_iteration=0, history=None):
        options = self._options()
        options["init"] = init
        writer = _CheckpointWriter(self) if self.checkpoint is not None else None
        try:
            fit = fit_factorization(
                X, W, H, n_components, update_H=True, weights=weights, start_iteration=start_iteration,
                history=history, on_check=None if writer is None else writer.maybe_write, **options,
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
    def resume(cls, path, X, weights=None, **overrides):
        """Continue a fit from the checkpoint at ``path`` on the same X (and the same ``weights``, if the
        fit had some); returns the fitted estimator.

        The parameters are the checkpointed ones; only ``max_iter``, ``tol``, ``verbose``, ``checkpoint``
        and ``checkpoint_every`` may be overridden. A fit resumed from a checkpoint reaches the same
        result as one that was never stopped (except with ``extrapolate=True``, whose step size restarts).
        """
        state = read_checkpoint(path)
        allowed = {"max_iter", "tol", "verbose", "checkpoint", "checkpoint_every"}
        if set(overrides) - allowed:
            raise CheckpointError(
                f"Cannot change {sorted(set(overrides) - allowed)} when resuming from {path}: the checkpoint "
                f"was made with {{{', '.join(f'{key}={state.params.get(key)!r}' for key in sorted(set(overrides) - allowed))}}}."
            )
        model = cls(**{**state.params, **overrides})
        X_tensor, _ = as_tensor(X, "X", device=model.device, check_values=False)  # checked by the fit
        if tuple(X_tensor.shape) != state.x_shape or str(X_tensor.dtype) != state.x_dtype:
            raise CheckpointError(
                f"Checkpoint {path} was made for X of shape {state.x_shape} and dtype {state.x_dtype}, "
                f"not {tuple(X_tensor.shape)} {X_tensor.dtype}."
            )
        as_input = (lambda a: torch.from_numpy(a).to(X_tensor.device)) if isinstance(X, torch.Tensor) else (lambda a: a)
        model._fit(X, as_input(state.W), as_input(state.H), state.H.shape[0], init="custom", weights=weights,
                   start_iteration=state.n_iter, history=state.loss_history)
        return model

    def fit(self, X, y=None, **params):
        """Fit the model to X; returns self."""
        self.fit_transform(X, **params)
        return self

    def _check_features(self, X):
        X_tensor, _ = as_tensor(X, "X", device=self.device, check_values=False)  # checked by the fit
        if X_tensor.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X_tensor.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return X_tensor

    def transform(self, X, weights=None):
        """W (n_samples × n_components) for new X, with the fitted components held fixed.

        ``weights``: optional entry weights of X's shape, as in :meth:`fit_transform`.
        """
        check_is_fitted(self)
        self._check_features(X)
        options = self._options()
        options["init"] = None
        fit = fit_factorization(X, None, self.components_, self.n_components_, update_H=False, weights=weights,
                                **options)
        return fit.kind.output(fit.result.W.contiguous())

    def inverse_transform(self, X=None, *, W=None):
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
            x_shape=tuple(X.shape), x_dtype=str(X.dtype),
        )
        write_checkpoint(self.model.checkpoint, state)
        self.last_write = time.monotonic()
