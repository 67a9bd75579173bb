"""``fastnmf.NMF``: the scikit-learn estimator users already know, on PyTorch (and Triton on a GPU)."""

from __future__ import annotations

import math

import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

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
    float32 factors).

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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _options(self):
        return dict(
            init=self.init, solver=self.solver, beta_loss=self.beta_loss, tol=self.tol, max_iter=self.max_iter,
            alpha_W=self.alpha_W, alpha_H=self.alpha_H, l1_ratio=self.l1_ratio, random_state=self.random_state,
            verbose=self.verbose, backend=self.backend, precision=self.precision, check_every=self.check_every,
            device=self.device, inner_iter=self.inner_iter, extrapolate=self.extrapolate,
        )

    def fit_transform(self, X, y=None, W=None, H=None):
        """Fit the model to X and return W (n_samples × n_components).

        ``W``, ``H``: starting factors for ``init="custom"`` (never modified).
        """
        fit = fit_factorization(X, W, H, self.n_components, update_H=True, **self._options())
        result = fit.result
        self.n_features_in_ = int(result.H.shape[1])
        self.n_components_ = fit.n_components
        self.components_ = fit.kind.output(result.H.contiguous())
        self.n_iter_ = result.n_iter
        self.loss_history_ = result.loss_history
        self.reconstruction_err_ = math.sqrt(2.0 * max(result.final_divergence, 0.0))
        return fit.kind.output(result.W.contiguous())

    def fit(self, X, y=None, **params):
        """Fit the model to X; returns self."""
        self.fit_transform(X, **params)
        return self

    def _check_features(self, X):
        X_tensor, _ = as_tensor(X, "X", device=self.device)
        if X_tensor.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X_tensor.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return X_tensor

    def transform(self, X):
        """W (n_samples × n_components) for new X, with the fitted components held fixed."""
        check_is_fitted(self)
        self._check_features(X)
        options = self._options()
        options["init"] = None
        fit = fit_factorization(X, None, self.components_, self.n_components_, update_H=False, **options)
        return fit.kind.output(fit.result.W.contiguous())

    def inverse_transform(self, X=None, *, W=None):
        """Back to data space: ``W @ components_`` (n_samples × n_features)."""
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
