"""Initial factors: ``random`` (scikit-learn's recipe), ``nndsvd``, ``nndsvda``, ``nndsvdar``; seeded.

Random numbers come from numpy's ``RandomState`` in the same order scikit-learn draws them, so the same
``random_state`` gives the same starting point as ``sklearn.decomposition.NMF`` (handy for comparisons),
on any device: the draws are made on the host and moved once.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.extmath import randomized_svd

__all__ = ["INIT_NAMES", "default_init", "initialize", "random_start"]

INIT_NAMES = ("random", "nndsvd", "nndsvda", "nndsvdar", "custom")

# scikit-learn zeroes NNDSVD entries below this before filling them (nndsvda/nndsvdar).
_NNDSVD_ZERO = 1e-6


def default_init(n_components: int, m: int, n: int) -> str:
    """scikit-learn's default: ``nndsvda`` when k ≤ min(m, n), else ``random``."""
    return "nndsvda" if n_components <= min(m, n) else "random"


def _to_torch(array: np.ndarray, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device=like.device, dtype=dtype)


def random_start(shape: tuple[int, int], mean: float, k: int, random_state):
    """scikit-learn's random start as float64 numpy arrays: ``|N(0, 1)|·sqrt(mean(X)/k)``, H drawn
    first, then W. A function of X's shape, its mean and the seed only (a distributed fit draws the same
    start on every process grid and slices it)."""
    rng = check_random_state(random_state)
    m, n = shape
    avg = np.sqrt(mean / k)
    H = np.abs(avg * rng.standard_normal(size=(k, n)))
    W = np.abs(avg * rng.standard_normal(size=(m, k)))
    return W, H


def _random(X, k, dtype, random_state, mean=None):
    mean = float(X.mean(dtype=torch.float64)) if mean is None else mean
    W, H = random_start(tuple(X.shape), mean, k, random_state)
    return _to_torch(W, X, dtype), _to_torch(H, X, dtype)


def _truncated_svd(X: torch.Tensor, k: int, random_state):
    """Leading k singular triplets. CPU: scikit-learn's randomized SVD (as sklearn's NMF uses);
    GPU: ``torch.svd_lowrank`` on the device (no host copy of X), seeded through a forked RNG."""
    if X.device.type == "cpu":
        work_dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
        U, S, Vt = randomized_svd(X.to(work_dtype).numpy(), k, random_state=random_state)
        return torch.from_numpy(U).double(), torch.from_numpy(S).double(), torch.from_numpy(Vt).double()
    with torch.random.fork_rng(devices=[X.device]):
        torch.manual_seed(int(check_random_state(random_state).randint(np.iinfo(np.int32).max)))
        U, S, V = torch.svd_lowrank(X.float(), q=min(k + 10, *X.shape), niter=4)
    return U[:, :k].double(), S[:k].double(), V[:, :k].T.double()


def _nndsvd(X, k, dtype, random_state, variant):
    """NNDSVD (Boutsidis & Gallopoulos 2008): for each singular pair, keep the sign-consistent half
    (positive or negative parts) with the larger norm product."""
    U, S, Vt = _truncated_svd(X, k, random_state)
    U, S, Vt = U.to(X.device), S.to(X.device), Vt.to(X.device)
    x_pos, x_neg = U.clamp_min(0), (-U).clamp_min(0)
    y_pos, y_neg = Vt.clamp_min(0), (-Vt).clamp_min(0)
    xp_norm, xn_norm = x_pos.norm(dim=0), x_neg.norm(dim=0)
    yp_norm, yn_norm = y_pos.norm(dim=1), y_neg.norm(dim=1)
    mass_pos, mass_neg = xp_norm * yp_norm, xn_norm * yn_norm
    use_pos = mass_pos > mass_neg
    # A zero norm only occurs with a zero mass on the side not chosen; 1 avoids 0/0 there.
    u = torch.where(use_pos, x_pos / xp_norm.clamp_min(1e-300), x_neg / xn_norm.clamp_min(1e-300))
    v = torch.where(use_pos[:, None], y_pos / yp_norm.clamp_min(1e-300)[:, None],
                    y_neg / yn_norm.clamp_min(1e-300)[:, None])
    sigma = torch.where(use_pos, mass_pos, mass_neg)
    scale = torch.sqrt(S * sigma)
    # The leading pair of a non-negative matrix is sign-consistent (Perron–Frobenius): take |u|, |v|.
    scale[0] = torch.sqrt(S[0])
    u[:, 0], v[0] = U[:, 0].abs(), Vt[0].abs()
    W, H = u * scale, v * scale[:, None]
    W[W < _NNDSVD_ZERO] = 0
    H[H < _NNDSVD_ZERO] = 0
    if variant == "nndsvda":
        avg = float(X.mean(dtype=torch.float64))
        W[W == 0] = avg
        H[H == 0] = avg
    elif variant == "nndsvdar":
        avg = float(X.mean(dtype=torch.float64))
        rng = check_random_state(random_state)  # a fresh generator after the SVD, as scikit-learn does
        for F in (W, H):
            zeros = F == 0
            fill = np.abs(avg * rng.standard_normal(size=int(zeros.sum())) / 100)
            F[zeros] = torch.from_numpy(fill).to(F.device)
    return W.to(dtype), H.to(dtype)


def initialize(X: torch.Tensor, n_components: int, init: str, random_state, dtype: torch.dtype, *, mean=None):
    """Return ``(W, H)`` of shapes (m×k), (k×n) in ``dtype`` on X's device (before the factor floor).
    ``mean``: X's mean when the caller has it (an ensemble draws many random starts from one X)."""
    if init == "random":
        return _random(X, n_components, dtype, random_state, mean)
    if init in ("nndsvd", "nndsvda", "nndsvdar"):
        if n_components > min(X.shape):
            raise ValueError(
                f"init={init!r} can only be used when n_components <= min(n_samples, n_features); got "
                f"n_components={n_components} for X of shape {tuple(X.shape)}. Use init='random'."
            )
        return _nndsvd(X, n_components, dtype, random_state, init)
    raise ValueError(f"Invalid init={init!r}: expected one of {list(INIT_NAMES)}.")
