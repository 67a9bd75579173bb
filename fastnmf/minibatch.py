"""``fastnmf.MiniBatchNMF``: online NMF on mini-batches of rows, scikit-learn's parameters and behaviour.

The online multiplicative updates of Lefèvre, Bach & Févotte ("Online algorithms for nonnegative matrix
factorization with the Itakura-Saito divergence", WASPAA 2011), as scikit-learn's ``MiniBatchNMF`` runs
them: batches of ``batch_size`` consecutive rows in a cycle; for each batch, its rows of W take one MU step
(or, with ``fresh_restarts``, are solved from scratch with H fixed), then H is updated from running sums
of the MU numerator and denominator, both discounted by ``ρ = forget_factor^(batch_size / n_samples)``:

    A ← ρ·A + H^(1/γ) ∘ Wᵀ(X ∘ (WH)^(β−2)),   B ← ρ·B + Wᵀ(WH)^(β−1) + l1 + l2·H,   H ← (A / B)^γ

(γ = the MU exponent of β). The fit stops on ``tol`` (relative change of H between batches), on
``max_no_improvement`` batches without a decrease of the exponentially weighted batch cost, or after
``max_iter`` passes over the data. The batches come from the chunk readers of ``fastnmf.streaming``, so X
may be a memory map, an h5py dataset, a backed AnnData matrix, scipy sparse or ``fastnmf.Chunks``, and
the work runs on any torch device. The products are the layouts' (``fastnmf.updates.MURule``), with the
safeguard floors of ``fastnmf.safeguard``; every β.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .init import INIT_NAMES, default_init, initialize
from .layouts import DenseMatrix
from .layouts.streamed import StreamedMatrix
from .losses import mu_exponent, parse_beta_loss
from .objective import objective
from .params import (Anything, BetaLoss, Boolean, Device, Either, Integer, NComponents, Options, RealRange,
                     validate_parameters)
from .penalties import Penalties
from .safeguard import apply_factor_floor_, exact_zeros, reconstruction_floor, safe_ratio
from .streaming import as_source, is_out_of_core
from .updates import HALSStatistics, MURule, hals_fit
from .validation import ArrayLike, InputKind, as_tensor, check_factor

__all__ = ["MiniBatchNMF"]


class _InMemoryRows:
    """Batches of a dense tensor already on its device (no copy): the streamed layout's surface."""

    def __init__(self, X: torch.Tensor, batch_rows: int):
        self.tensor, self.batch_rows = X, batch_rows
        self.shape, self.dtype, self.device = tuple(X.shape), X.dtype, X.device

    def chunks(self):
        for start in range(0, self.shape[0], self.batch_rows):
            rows = slice(start, min(start + self.batch_rows, self.shape[0]))
            yield rows, DenseMatrix(self.tensor[rows])

    def max(self):
        return float(self.tensor.max())

    def mean(self, dtype=None):
        return float(self.tensor.mean(dtype=torch.float64))


class MiniBatchNMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Mini-batch NMF (module docstring): scikit-learn's ``MiniBatchNMF`` on torch, any β, any device.

    Parameters are scikit-learn's (``n_components``, ``init``, ``batch_size``, ``beta_loss``, ``tol``,
    ``max_no_improvement``, ``max_iter``, ``alpha_W``, ``alpha_H``, ``l1_ratio``, ``forget_factor``,
    ``fresh_restarts``, ``fresh_restarts_max_iter``, ``transform_max_iter``, ``random_state``,
    ``verbose``), plus ``device`` (where to compute). Attributes: ``components_``, ``n_components_``,
    ``n_iter_`` (passes over the data), ``n_steps_`` (batches processed), ``reconstruction_err_``
    (``sqrt(2·D_β(X | WH))`` on all of X), ``n_features_in_``. ``init=None`` is nndsvda (k ≤ min(m, n)) for X in
    memory and "random" for X that is streamed from disk.
    """

    _parameter_constraints = {
        "n_components": NComponents(),
        "init": Options(*INIT_NAMES, None),
        "batch_size": Integer(1),
        "beta_loss": BetaLoss(),
        "tol": RealRange(0.0),
        "max_no_improvement": Either(Options(None), Integer(1)),
        "max_iter": Integer(1),
        "alpha_W": RealRange(0.0),
        "alpha_H": Either(Options("same"), RealRange(0.0)),
        "l1_ratio": RealRange(0.0, 1.0),
        "forget_factor": RealRange(0.0, 1.0),
        "fresh_restarts": Boolean(),
        "fresh_restarts_max_iter": Integer(1),
        "transform_max_iter": Either(Options(None), Integer(1)),
        "random_state": Anything(),
        "verbose": Either(Boolean(), Integer(0)),
        "device": Device(),
    }

    def __init__(self, n_components="auto", *, init=None, batch_size=1024, beta_loss="frobenius", tol=1e-4,
                 max_no_improvement=10, max_iter=200, alpha_W=0.0, alpha_H="same", l1_ratio=0.0, forget_factor=0.7,
                 fresh_restarts=False, fresh_restarts_max_iter=30, transform_max_iter=None, random_state=None,
                 verbose=0, device=None):
        self.n_components = n_components
        self.init = init
        self.batch_size = batch_size
        self.beta_loss = beta_loss
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.max_iter = max_iter
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.forget_factor = forget_factor
        self.fresh_restarts = fresh_restarts
        self.fresh_restarts_max_iter = fresh_restarts_max_iter
        self.transform_max_iter = transform_max_iter
        self.random_state = random_state
        self.verbose = verbose
        self.device = device

    # --- data ---------------------------------------------------------------------------------------------

    def _params(self) -> dict:
        return validate_parameters(self._parameter_constraints, self.get_params(deep=False))

    def _data(self, X, batch_rows: int):
        """``(rows, kind, streamed)``: the batches of X on the device, and how results go back."""
        if isinstance(X, torch.Tensor) and X.layout == torch.strided and X.device.type != "cpu":
            from .validation import check_finite_non_negative

            X = X.detach()
            if not X.is_floating_point() or X.dtype in (torch.float16, torch.bfloat16):
                X = X.float()
            check_finite_non_negative(X, "X", "MiniBatchNMF")
            return _InMemoryRows(X, batch_rows), InputKind(is_torch=True, device=X.device), False
        source = as_source(X)
        dtype = torch.float32 if source.dtype in (np.float32, np.float16) else torch.float64
        device = torch.device(self.device) if self.device is not None else torch.device("cpu")
        rows = StreamedMatrix(source, chunk_rows=min(batch_rows, source.shape[0]), device=device, dtype=dtype)
        if isinstance(X, torch.Tensor):
            kind = InputKind(is_torch=True, device=X.device)
        else:
            kind = InputKind(is_torch=False, numpy_dtype=np.dtype(np.float32 if dtype == torch.float32 else np.float64))
        return rows, kind, is_out_of_core(X)

    def _setup(self, X, data, p, W=None, H=None, streamed=False):
        beta = parse_beta_loss(p["beta_loss"])
        m, n = data.shape
        k = n if p["n_components"] in (None, "auto") and H is None else (
            int(np.shape(H)[0]) if p["n_components"] in (None, "auto") else int(p["n_components"]))
        init = p["init"] or ("random" if streamed else default_init(k, m, n))
        self._beta, self._gamma, self._k = beta, mu_exponent(beta), k
        self._eps_r = reconstruction_floor(float(data.max()), data.dtype)
        batch = min(p["batch_size"], m)
        self._rho = p["forget_factor"] ** (batch / m)
        if init == "custom":
            like = torch.empty(0, device=data.device)
            W = apply_factor_floor_(check_factor(W, "W", (m, k), like, data.dtype)) if W is not None else None
            H = apply_factor_floor_(check_factor(H, "H", (k, n), like, data.dtype))
        else:
            if init != "random" and streamed:
                raise ValueError(f"init={init!r} needs an SVD of all of X, which a streamed fit does not compute; "
                                 "use init='random' or 'custom'.")
            if init == "random":  # shape, mean and device are all the random start reads
                source = data
            else:  # an SVD start of X in memory: dense or sparse as given (never densified)
                source, _ = as_tensor(X, "X", context="MiniBatchNMF", device=data.device, check_values=False)
                source = source.init_data() if hasattr(source, "init_data") else source.to(data.dtype)
            W, H = initialize(source, k, init, p["random_state"], data.dtype)
            W, H = apply_factor_floor_(W), apply_factor_floor_(H)
        return W, H

    def _penalties(self, p, batch_rows: int, n: int) -> Penalties:
        alpha_H = p["alpha_W"] if p["alpha_H"] == "same" else p["alpha_H"]
        return Penalties.from_alphas(p["alpha_W"], alpha_H, p["l1_ratio"], batch_rows, n)  # per batch, as sklearn

    # --- the steps -----------------------------------------------------------------------------------------

    def _solve_W(self, data, H, max_iter: int, p) -> torch.Tensor:
        """W for fixed H from the constant start ``sqrt(mean(X)/k)``: MU steps until the relative change of W
        is ≤ tol (one pass over the data per step)."""
        m = data.shape[0]
        start = math.sqrt(data.mean() / self._k)
        W = torch.full((m, self._k), start, dtype=H.dtype, device=H.device)
        for _ in range(max_iter):
            before = W.clone()
            for rows, chunk in data.chunks():
                W[rows] = self._w_step(chunk, W[rows], H, p)
            if p["tol"] > 0 and float((W - before).norm() / W.norm().clamp_min(1e-300)) <= p["tol"]:
                break
        return W

    def _w_step(self, chunk, W_b, H, p):
        l1, l2 = self._penalties(p, chunk.shape[0], chunk.shape[1]).w
        rule = MURule(self._beta, l1, l2, eps_r=self._eps_r)
        W_t, _ = rule.update(chunk.T, H.T, W_b.T)
        return W_t.T

    def _minibatch_step(self, chunk, W_b, H, p, update_H=True):
        """One batch: its rows of W (one MU step, or solved afresh), its cost, then the online H update."""
        penalties = self._penalties(p, chunk.shape[0], chunk.shape[1])
        if p["fresh_restarts"] or W_b is None:
            W_b = self._solve_W(_Single(chunk), H, p["fresh_restarts_max_iter"], p)
        else:
            W_b = self._w_step(chunk, W_b, H, p)
        l1, l2 = penalties.h
        statistics = MURule(self._beta, l1, l2, eps_r=self._eps_r).statistics(chunk, W_b, H)
        if statistics.gram is not None:
            # Frobenius: ½‖X_b‖² − ⟨W_bᵀX_b, H⟩ + ½⟨W_bᵀW_b, HHᵀ⟩ from the products the H update needs
            # (it halved the step's time); it cancels near an exact fit, but only the early stop reads it.
            values = chunk.by_row.values() if hasattr(chunk, "by_row") else chunk.tensor
            divergence = 0.5 * float(values.square().sum(dtype=torch.float64)) + float(
                hals_fit(HALSStatistics(statistics.numerator, statistics.gram), H))
        else:
            divergence = float(objective(chunk, W_b, H, beta=self._beta, eps_r=self._eps_r))
        cost = (divergence + float(penalties.value(W_b, H))) / chunk.shape[0]
        if update_H:
            denominator = statistics.denominator if statistics.gram is None else statistics.gram @ H
            denominator = denominator + l1 + l2 * H if (l1 or l2) else denominator
            scaled = H if self._gamma == 1.0 else H.pow(1.0 / self._gamma)
            self._numerator.mul_(self._rho).add_(statistics.numerator * scaled)
            self._denominator.mul_(self._rho).add_(denominator.expand_as(H))
            H_new = safe_ratio(self._numerator, self._denominator)
            if self._gamma != 1.0:
                H_new.pow_(self._gamma)
            H.copy_(apply_factor_floor_(H_new))
        return W_b, cost

    def _converged(self, cost, batch_rows, n_samples, H, H_before, step, p) -> bool:
        if step == 1:
            return False  # the first batch's cost says little (scikit-learn ignores it too)
        if self._ewa_cost is None:
            self._ewa_cost = cost
        else:
            alpha = min(batch_rows / (n_samples + 1), 1.0)
            self._ewa_cost = self._ewa_cost * (1 - alpha) + cost * alpha
        if p["verbose"]:
            print(f"Minibatch step {step}: mean batch cost: {cost}, ewa cost: {self._ewa_cost}")
        change = float((H - H_before).norm() / H.norm().clamp_min(1e-300))
        if p["tol"] > 0 and change <= p["tol"]:
            return True
        if self._ewa_cost_min is None or self._ewa_cost < self._ewa_cost_min:
            self._no_improvement, self._ewa_cost_min = 0, self._ewa_cost
        else:
            self._no_improvement += 1
        return p["max_no_improvement"] is not None and self._no_improvement >= p["max_no_improvement"]

    # --- the estimator -------------------------------------------------------------------------------------

    def fit_transform(self, X, y=None, W=None, H=None) -> ArrayLike:
        """Fit on X (passes of mini-batches) and return W (n_samples × n_components)."""
        p = self._params()
        data, kind, streamed = self._data(X, p["batch_size"])
        m, n = data.shape
        W, H = self._setup(X, data, p, W, H, streamed)
        if W is None:
            W = torch.full((m, self._k), math.sqrt(data.mean() / self._k), dtype=data.dtype, device=data.device)
        self._numerator, self._denominator = H.clone(), torch.ones_like(H)
        self._ewa_cost = self._ewa_cost_min = None
        self._no_improvement = 0
        steps_per_pass = math.ceil(m / min(p["batch_size"], m))
        step = 0
        for _ in range(p["max_iter"]):
            stop = False
            for rows, chunk in data.chunks():
                step += 1
                H_before = H.clone()
                W[rows], cost = self._minibatch_step(chunk, W[rows], H, p)
                if self._converged(cost, chunk.shape[0], m, H, H_before, step, p):
                    stop = True
                    break
            if stop:
                break
        if p["fresh_restarts"]:
            W = self._solve_W(data, H, p["transform_max_iter"] or p["max_iter"], p)
        self.n_steps_ = step
        self.n_iter_ = math.ceil(step / steps_per_pass)
        return self._store(data, kind, W, H)

    def fit(self, X, y=None, **params) -> MiniBatchNMF:
        self.fit_transform(X, **params)
        return self

    def partial_fit(self, X, y=None, W=None, H=None) -> MiniBatchNMF:
        """One mini-batch step with all of X as the batch (W solved afresh); the first call initializes H."""
        p = self._params()
        data, kind, streamed = self._data(X, max(1, as_shape(X)[0]))
        if not hasattr(self, "components_"):
            _, H = self._setup(X, data, p, W, H, streamed)
            self._numerator, self._denominator = H.clone(), torch.ones_like(H)
            self.n_steps_ = 0
        else:
            if data.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {data.shape[1]} features, but MiniBatchNMF is expecting {self.n_features_in_}.")
            H = torch.as_tensor(self.components_, dtype=data.dtype, device=data.device).clone()
            self._numerator = self._numerator.to(device=data.device, dtype=data.dtype)
            self._denominator = self._denominator.to(device=data.device, dtype=data.dtype)
            self._eps_r = max(self._eps_r, reconstruction_floor(float(data.max()), data.dtype))
        for rows, chunk in data.chunks():
            self._minibatch_step(chunk, None, H, p)
        self.n_steps_ += 1
        self.n_features_in_ = int(H.shape[1])
        self.n_components_ = int(H.shape[0])
        self.components_ = kind.output(exact_zeros(H).contiguous())
        self._fit_kind = kind
        return self

    def transform(self, X) -> ArrayLike:
        """W for X with the components fixed (MU from a constant start, up to ``transform_max_iter`` steps)."""
        check_is_fitted(self)
        p = self._params()
        data, kind, _ = self._data(X, p["batch_size"])
        if data.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {data.shape[1]} features, but MiniBatchNMF is expecting {self.n_features_in_}.")
        H = torch.as_tensor(self.components_, dtype=data.dtype, device=data.device)
        self._eps_r = reconstruction_floor(float(data.max()), data.dtype)
        W = self._solve_W(data, H, p["transform_max_iter"] or p["max_iter"], p)
        return kind.output(exact_zeros(W).contiguous())

    def inverse_transform(self, X=None, *, W=None) -> ArrayLike:
        check_is_fitted(self)
        W = X if W is None else W
        W = torch.as_tensor(np.asarray(W) if not isinstance(W, torch.Tensor) else W)
        H = torch.as_tensor(self.components_, device=W.device, dtype=W.dtype)
        product = W @ H
        return product if isinstance(self.components_, torch.Tensor) else product.cpu().numpy()

    def _store(self, data, kind, W, H):
        divergence = sum(float(objective(chunk, W[rows], H, beta=self._beta, eps_r=self._eps_r))
                         for rows, chunk in data.chunks())
        self.reconstruction_err_ = math.sqrt(2.0 * max(divergence, 0.0))
        self.n_features_in_ = int(H.shape[1])
        self.n_components_ = int(H.shape[0])
        self.components_ = kind.output(exact_zeros(H).contiguous())
        return kind.output(exact_zeros(W).contiguous())

    @property
    def _n_features_out(self):
        return self.components_.shape[0]


class _Single:
    """One chunk as a sequence of chunks (fresh restarts solve W on one batch)."""

    def __init__(self, chunk):
        self.chunk, self.shape = chunk, tuple(chunk.shape)

    def chunks(self):
        yield slice(0, self.shape[0]), self.chunk

    def mean(self, dtype=None):
        return float(self.chunk.mean(dtype=torch.float64))


def as_shape(X) -> tuple[int, int]:
    return tuple(int(s) for s in X.shape)

