"""The choice of k: ``fastnmf.select_k`` — stability, consensus error, cophenetic correlation, dispersion and
the cross-validation error on held-out entries, per rank.

- ``stability`` and ``consensus_error``: :func:`fastnmf.consensus` at each k (silhouette of its clustering,
  D_β of its reconstruction);
- ``cophenetic`` (Brunet et al., PNAS 2004) and ``dispersion`` (Kim & Park 2007): from the m×m consensus matrix
  of sample clusterings — each replicate assigns every sample (row of X) to the component with the largest
  entry of its row of W, the rows of H scaled to unit sum first; on a seeded subsample of at most 5000 rows;
- ``cv_error``: for each of ``n_masks`` speckled masks of ``test_fraction`` of the entries, a fit on the other
  entries (the weights machinery, weight 0 on the held-out ones) and its mean divergence on the held-out
  entries. On sparse X (β ∈ {1, 2}) the held-out entries are a sparse set of ≈ ``test_fraction·m·n`` positions
  (drawn with replacement, duplicates merged) given to the fit as missing values: the masked fit and its error
  cost O((nnz + held-out)·k) (``WeightedMatrix.sparse_complement``); other β on sparse X: NaN, with a note.
- ``suggested_k``: the rank of the lowest cross-validation error where it was computed, else the most stable.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.cluster.hierarchy import average, cophenet
from scipy.spatial.distance import squareform

from .consensus import consensus
from .ensemble import fit_ensemble, replicate_seed
from .functional import non_negative_factorization
from .losses import divergence, parse_beta_loss

__all__ = ["select_k", "KSelection", "MAX_CONSENSUS_SAMPLES"]

MAX_CONSENSUS_SAMPLES = 5000


@dataclass
class KSelection:
    ks: list
    stability: np.ndarray
    consensus_error: np.ndarray
    cophenetic: np.ndarray
    dispersion: np.ndarray
    cv_error: np.ndarray
    suggested_k: int
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ks": list(self.ks), "suggested_k": int(self.suggested_k), "notes": list(self.notes),
                **{name: [float(v) for v in getattr(self, name)] for name in
                   ("stability", "consensus_error", "cophenetic", "dispersion", "cv_error")}}

    def plot(self, path) -> None:
        """The five curves against k, one panel each (matplotlib, the ``plot`` extra)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = ("stability", "consensus_error", "cophenetic", "dispersion", "cv_error")
        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3))
        for ax, name in zip(axes, names):
            ax.plot(self.ks, getattr(self, name), marker="o")
            ax.axvline(self.suggested_k, color="grey", linestyle=":")
            ax.set_xlabel("k")
            ax.set_title(name.replace("_", " "))
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def __repr__(self) -> str:
        return f"KSelection({json.dumps(self.to_dict())})"


def _sample_consensus(ensemble, k, rows) -> tuple[float, float]:
    """(cophenetic correlation, dispersion) of the sample consensus matrix at rank k over ``rows``."""
    labels = []
    for kk, r in ensemble.finished:
        if kk != k:
            continue
        W, H = np.asarray(ensemble.W(k, r))[rows], np.asarray(ensemble.H(k, r))
        labels.append(np.argmax(W * H.sum(axis=1), axis=1))
    labels = np.asarray(labels)
    same = np.mean([np.equal.outer(row, row) for row in labels], axis=0)
    dispersion = float(np.mean(4.0 * (same - 0.5) ** 2))
    distance = 1.0 - same
    np.fill_diagonal(distance, 0.0)
    condensed = squareform(distance, checks=False)
    if np.allclose(condensed, condensed[0]):
        return 1.0, dispersion  # every replicate agrees (or none does): a constant matrix
    correlation, _ = cophenet(average(condensed), condensed)
    return float(correlation), dispersion


def _cv_error(X, k, beta, masks, random_state, options) -> float:
    errors = []
    for mask_index, held_out in enumerate(masks):
        weights = (~held_out).astype(np.float64)
        seed = replicate_seed(random_state, k, 10_000 + mask_index)
        W, H, _ = non_negative_factorization(X, n_components=k, init="random", random_state=seed, weights=weights,
                                             solver="mu", beta_loss=options["beta_loss"], tol=options["tol"],
                                             max_iter=options["max_iter"])
        import torch

        R = np.maximum((W @ H)[held_out], np.finfo(np.float64).eps * float(X.max()))
        terms = divergence(torch.as_tensor(X[held_out], dtype=torch.float64), torch.as_tensor(R, dtype=torch.float64), beta)
        errors.append(float(terms.mean()))
    return float(np.mean(errors))


def _as_csr(X) -> sp.csr_matrix:
    """scipy CSR (float64) of a scipy sparse matrix or a torch sparse tensor."""
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=np.float64)
    coo = X.detach().to_sparse_coo().coalesce().cpu()
    rows, columns = coo.indices().numpy()
    return sp.csr_matrix((coo.values().double().numpy(), (rows, columns)), shape=tuple(coo.shape))


def _sparse_masks(shape, test_fraction, n_masks, random_state) -> list:
    """Sorted unique linear indices i·n + j of ≈ test_fraction of the entries, one array per mask."""
    m, n = shape
    generator = np.random.RandomState(random_state)
    return [np.unique(generator.randint(0, m * n, size=generator.binomial(m * n, test_fraction), dtype=np.int64))
            for _ in range(n_masks)]


def _held_out_values(X: sp.csr_matrix, rows, columns) -> np.ndarray:
    """``X[rows, columns]`` (0 where nothing is stored), O(len · log nnz)."""
    return np.asarray(X[rows, columns], dtype=np.float64).ravel()


def _sparse_cv_error(X: sp.csr_matrix, k, beta, masks, random_state, options) -> float:
    import torch

    m, n = X.shape
    coo = X.tocoo()
    linear = coo.row.astype(np.int64) * n + coo.col
    errors = []
    for mask_index, held in enumerate(masks):
        kept = ~np.isin(linear, held, assume_unique=False)
        rows, columns = held // n, held % n
        # The held-out entries become stored NaNs, the missing values of the weights machinery.
        X_masked = sp.csr_matrix((np.concatenate([coo.data[kept], np.full(held.size, np.nan)]),
                                  (np.concatenate([coo.row[kept], rows]), np.concatenate([coo.col[kept], columns]))),
                                 shape=X.shape)
        seed = replicate_seed(random_state, k, 10_000 + mask_index)
        W, H, _ = non_negative_factorization(X_masked, n_components=k, init="random", random_state=seed,
                                             missing_values=np.nan, solver="mu", beta_loss=options["beta_loss"],
                                             tol=options["tol"], max_iter=options["max_iter"])
        W, H = torch.as_tensor(W, dtype=torch.float64), torch.as_tensor(H, dtype=torch.float64)
        floor = np.finfo(np.float64).eps * float(X.max())
        total, chunk = 0.0, 1 << 20  # the held-out reconstruction in chunks: O(chunk · k) memory
        for start in range(0, held.size, chunk):
            r_rows, r_columns = torch.as_tensor(rows[start:start + chunk]), torch.as_tensor(columns[start:start + chunk])
            r = torch.sum(W[r_rows] * H[:, r_columns].T, dim=1).clamp_min_(floor)
            x = torch.as_tensor(_held_out_values(X, rows[start:start + chunk], columns[start:start + chunk]))
            total += float(divergence(x, r, beta).sum())
        errors.append(total / max(held.size, 1))
    return float(np.mean(errors))


def select_k(X, ks, *, n_replicates: int = 10, ensemble=None, beta_loss="frobenius", solver="mu", tol=1e-4,
             max_iter=200, random_state=0, test_fraction: float = 0.1, n_masks: int = 3,
             density_threshold: float = 0.5, local_neighborhood_size: float = 0.3) -> KSelection:
    """The k-selection statistics of X at each rank of ``ks`` (module docstring); ``ensemble`` reuses fits."""
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1:
        raise ValueError(f"Invalid ks={ks!r}: give ranks ≥ 1.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"Invalid test_fraction={test_fraction!r}: expected a fraction in (0, 1).")
    beta = parse_beta_loss(beta_loss)
    if ensemble is None:
        ensemble = fit_ensemble(X, ks, n_replicates, beta_loss=beta_loss, solver=solver, tol=tol, max_iter=max_iter,
                                random_state=random_state)
    missing = [k for k in ks if k not in ensemble.ranks]
    if missing:
        raise ValueError(f"The ensemble has no fits at k={missing} (ranks {ensemble.ranks}).")
    m = np.shape(X)[0]
    rows = np.random.RandomState(random_state).choice(m, MAX_CONSENSUS_SAMPLES, replace=False) \
        if m > MAX_CONSENSUS_SAMPLES else np.arange(m)
    notes = []
    if m > MAX_CONSENSUS_SAMPLES:
        notes.append(f"cophenetic and dispersion on a seeded subsample of {MAX_CONSENSUS_SAMPLES} of {m} rows")
    dense = not sp.issparse(X) and not (hasattr(X, "layout") and str(X.layout) != "torch.strided")
    masks, X_array, cv = [], None, None
    if dense:
        X_array = np.asarray(X, dtype=np.float64)
        generator = np.random.RandomState(random_state)
        masks = [generator.rand(*X_array.shape) < test_fraction for _ in range(n_masks)]
        cv = lambda k: _cv_error(X_array, k, beta, masks, random_state, options)  # noqa: E731
    elif beta in (1.0, 2.0):
        X_csr = _as_csr(X)
        masks = _sparse_masks(X_csr.shape, test_fraction, n_masks, random_state)
        cv = lambda k: _sparse_cv_error(X_csr, k, beta, masks, random_state, options)  # noqa: E731
    else:
        notes.append("cv_error is NaN: held-out masks on sparse X are implemented for beta_loss 1 and 2 only")
    rows_out = {name: [] for name in ("stability", "consensus_error", "cophenetic", "dispersion", "cv_error")}
    options = dict(beta_loss=beta_loss, tol=tol, max_iter=max_iter)
    for k in ks:
        result = consensus(ensemble, k, density_threshold=density_threshold,
                           local_neighborhood_size=local_neighborhood_size, X=X)
        rows_out["stability"].append(result.stability)
        rows_out["consensus_error"].append(result.error)
        cophenetic, dispersion = _sample_consensus(ensemble, k, rows)
        rows_out["cophenetic"].append(cophenetic)
        rows_out["dispersion"].append(dispersion)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning of the masked fits
            rows_out["cv_error"].append(cv(k) if cv is not None else float("nan"))
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in rows_out.items()}
    if cv is not None:
        suggested = ks[int(np.nanargmin(arrays["cv_error"]))]
    else:
        suggested = ks[int(np.nanargmax(arrays["stability"]))] if np.isfinite(arrays["stability"]).any() else ks[0]
    return KSelection(ks, suggested_k=suggested, notes=notes, **arrays)
