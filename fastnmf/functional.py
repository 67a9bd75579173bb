"""The functional API: :func:`non_negative_factorization` and :func:`factorization_loss`.

The options of a fit are the parameters of :class:`fastnmf.NMF`, written once there with their
declarative constraints; :func:`non_negative_factorization` builds an ``NMF`` from them and runs the one
fit path of ``fastnmf.fit``.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from .backends import resolve_backend
from .estimator import NMF
from .fit import fit_factorization
from .layouts import as_layout
from .losses import parse_beta_loss
from .validation import as_tensor, check_factor
from .weights import check_missing_values, weighted_data

__all__ = ["non_negative_factorization", "factorization_loss"]


def _option_names() -> list[str]:
    # Checkpoints belong to the estimator (NMF.resume continues an estimator's fit).
    skipped = ("self", "n_components", "checkpoint", "checkpoint_every")
    return [name for name in inspect.signature(NMF.__init__).parameters if name not in skipped]


def non_negative_factorization(X, W=None, H=None, n_components="auto", *, update_H=True, weights=None,
                               callback=None, **options) -> tuple:
    """Find non-negative W, H whose product approximates the non-negative X.

    ``X (n_samples × n_features) ≈ W (n_samples × n_components) · H (n_components × n_features)``,
    minimizing the objective of :class:`fastnmf.NMF` (its docstring states it and every option).

    Parameters
    ----------
    X : array-like, scipy.sparse matrix, torch.Tensor (dense or sparse) or a ``fastnmf.layouts.Layout``
        Non-negative data, of shape (n_samples, n_features). numpy in → numpy out; torch in → torch out
        on the same device; scipy in → numpy out. Sparse X is never densified.
    W, H : optional
        Starting factors for ``init="custom"`` (or both given with ``init=None``); with
        ``update_H=False``, H is fixed and only W is solved for. Never modified.
    n_components : int, "auto" or None
        Rank k. "auto": from the custom W/H, else n_features. None: n_features.
    update_H : bool
        False solves for W with H fixed (what ``NMF.transform`` does).
    weights : array-like, scipy.sparse matrix or torch.Tensor of X's shape, optional
        Non-negative entry weights M: the divergence becomes ``Σ_ij M_ij d_β(X_ij | (WH)_ij)``. Solver "mu".
    callback : callable, optional
        ``callback(n_iter, W, H)``, called with the starting point (``n_iter = 0``) and after every
        iteration, with the factors the fit would return there: torch tensors on the computing device, in
        X's units, with exact zeros where the solver holds its floor (two small (m+n)·k copies per call).
        Return True to stop there (the objective is evaluated once more, as at ``max_iter``). It costs no
        synchronization unless it reads the factors' values (then one, on a GPU): timing, progress
        logging and custom stopping rules hook in here.
    **options
        Every parameter of :class:`fastnmf.NMF` (``init``, ``solver``, ``beta_loss``, ``tol``,
        ``max_iter``, ``alpha_W``, ``alpha_H``, ``l1_ratio``, ``random_state``, ``verbose``, ``backend``,
        ``precision``, ``check_every``, ``device``, ``inner_iter``, ``extrapolate``, ``missing_values``).

    Returns
    -------
    W : (n_samples, n_components), H : (n_components, n_features), n_iter : int
        Entries the solver held at its safeguard floor are exact zeros.
    """
    unknown = sorted(set(options) - set(_option_names()))
    if unknown:
        raise TypeError(f"non_negative_factorization() got unexpected options {unknown}; the options are the "
                        f"parameters of fastnmf.NMF: {_option_names()}.")
    model = NMF(n_components, **options)
    fit = fit_factorization(X, W, H, model, update_H=update_H, weights=weights, callback=callback)
    result = fit.result
    return fit.kind.output(result.W.contiguous()), fit.kind.output(result.H.contiguous()), result.n_iter


def _signature() -> inspect.Signature:
    """The full signature (every NMF option by name), for help() and editors."""
    own = list(inspect.signature(non_negative_factorization).parameters.values())[:-1]  # without **options
    nmf = inspect.signature(NMF.__init__).parameters
    options = [nmf[name].replace(kind=inspect.Parameter.KEYWORD_ONLY) for name in _option_names()]
    return inspect.Signature(own + options)


def factorization_loss(X, W, H, beta_loss="frobenius", *, weights=None, missing_values=None) -> float:
    """The β-divergence ``D_β(X | WH)`` of a factorization, as a Python float.

    With entry weights M (``weights``, ``missing_values`` as in :func:`non_negative_factorization`), the
    weighted divergence ``Σ_ij M_ij d_β(X_ij | (WH)_ij)``. Frobenius is ``½‖X − WH‖²`` (scikit-learn's
    convention); Itakura–Saito drops the terms where X is 0 (docs/maths.md).

    X may be anything :func:`non_negative_factorization` takes — numpy, scipy.sparse, torch dense or sparse,
    CPU or CUDA — and is never densified; W (n_samples × n_components) and H (n_components × n_features)
    are dense, on X's device for torch. Computed in float64 without an m×n temporary: row blocks of WH for
    dense X; for sparse X the stored entries plus closed forms for the zeros (``fastnmf.objective``). WH
    is not floored: where X > 0 and (WH) = 0 the KL and IS divergences are infinite, as they are
    mathematically (the solvers' own objective floors WH at eps·max X).
    """
    beta = parse_beta_loss(beta_loss)
    check_missing_values(missing_values)
    weighted = weights is not None or missing_values is not None
    X, _ = as_tensor(X, "X", context="factorization_loss", check_values=not weighted)
    if weighted:
        X = weighted_data(X, weights, missing_values)
    X = as_layout(X)
    m, n = X.shape
    shape = tuple(getattr(W, "shape", np.shape(W)))
    if len(shape) != 2:
        raise ValueError(f"W must be 2-D (n_samples × n_components), got shape {shape}.")
    k = int(shape[1])
    W = check_factor(W, "W", (m, k), X, torch.float64)
    H = check_factor(H, "H", (k, n), X, torch.float64)
    backend = resolve_backend("torch", X)
    return float(backend.objective(X, W, H, beta=beta, eps_r=0.0))


# **options hides the option names from help() and editors: give the function its full signature.
non_negative_factorization.__signature__ = _signature()
