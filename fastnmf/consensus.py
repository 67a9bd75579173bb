"""Consensus of an ensemble's replicates at one rank (cNMF's method, Kotliar et al., eLife 2019).

The k·R components (rows of H) of the replicates at rank k are L2-normalized and pooled; a component whose
mean distance to its ``L = local_neighborhood_size · R`` nearest neighbours exceeds ``density_threshold`` is
an outlier and dropped; the rest are clustered into k groups (k-means, seeded); the consensus components are
the cluster medians, scaled to unit sum; the usages are refitted with the components fixed (the ensemble's
loss and precision); ``stability`` is the silhouette of the clustering and ``error`` the consensus reconstruction's
divergence. Distances and medians are torch on the ensemble's device; k-means and the silhouette are
scikit-learn's, on the k·R × n pooled components (small beside X); X is never densified.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from .functional import factorization_loss, non_negative_factorization

__all__ = ["consensus", "ConsensusResult"]


@dataclass
class ConsensusResult:
    """``components`` (k × n_features), ``usages`` (n_samples × k), ``stability`` (silhouette), ``error``
    (D_β of the consensus reconstruction), ``kept`` (components left after the outlier filter, of k·R)."""

    k: int
    components: object
    usages: object
    stability: float
    error: float
    kept: int
    pooled: int


def consensus(ensemble, k: int, *, density_threshold: float = 0.5, local_neighborhood_size: float = 0.3, X=None,
              random_state: int = 1, max_iter: int = 500) -> ConsensusResult:
    """The consensus factorization of ``ensemble`` at rank ``k`` (module docstring); ``X`` defaults to the
    data the ensemble was fitted on."""
    if k not in ensemble.ranks:
        raise ValueError(f"Rank k={k} was not fitted in this ensemble (ranks {ensemble.ranks}).")
    if not 0.0 < local_neighborhood_size <= 1.0:
        raise ValueError(f"Invalid local_neighborhood_size={local_neighborhood_size!r}: expected a fraction in (0, 1].")
    if density_threshold <= 0:
        raise ValueError(f"Invalid density_threshold={density_threshold!r}: expected a positive distance.")
    replicates = [r for kk, r in ensemble.finished if kk == k]
    if not replicates:
        raise ValueError(f"No replicate at k={k} finished (failed: {[f for f in ensemble.failed if f[0] == k]}).")
    X = ensemble.X if X is None else X
    spectra = ensemble.components(k).to(torch.float64)
    normalized = spectra / spectra.norm(dim=1, keepdim=True).clamp_min(1e-300)
    neighbours = max(1, int(local_neighborhood_size * len(replicates)))
    distances = torch.cdist(normalized, normalized)
    neighbours = min(neighbours, distances.shape[0] - 1)
    density = (distances.topk(neighbours + 1, largest=False).values[:, 1:].mean(dim=1) if neighbours > 0
               else torch.zeros(distances.shape[0], dtype=distances.dtype, device=distances.device))
    keep = density < density_threshold
    if int(keep.sum()) < k:
        raise ValueError(f"Only {int(keep.sum())} of {len(keep)} components lie within density_threshold="
                         f"{density_threshold} of their neighbours, fewer than k={k}: raise density_threshold.")
    filtered = normalized[keep]
    labels = KMeans(n_clusters=k, n_init=10, random_state=random_state).fit_predict(filtered.cpu().numpy())
    medians = torch.stack([filtered[torch.as_tensor(labels == c, device=filtered.device)].median(dim=0).values
                           for c in range(k)])
    components = medians / medians.sum(dim=1, keepdim=True).clamp_min(1e-300)
    stability = float(silhouette_score(filtered.cpu().numpy(), labels)) if 1 < k < len(labels) else float("nan")
    H = components.cpu().numpy() if not isinstance(X, torch.Tensor) else components.to(X.device)
    options = ensemble.options
    W, H, _ = non_negative_factorization(X, H=H, n_components=k, update_H=False, beta_loss=options["beta_loss"],
                                         solver="mu", tol=options["tol"], max_iter=max_iter,
                                         precision=options.get("precision", "auto"))
    error = factorization_loss(X, W, H, options["beta_loss"])
    return ConsensusResult(k, H, W, stability, float(error), int(keep.sum()), int(len(keep)))

