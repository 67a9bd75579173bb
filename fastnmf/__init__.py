"""fastnmf: non-negative matrix factorization on PyTorch, with fused Triton kernels for the GPU.

``X (n_samples × n_features) ≈ W (n_samples × n_components) · H (n_components × n_features)``, all entries
≥ 0 — scikit-learn's names and shapes.

- :class:`NMF` — the scikit-learn estimator; :class:`MiniBatchNMF` — its online (mini-batch) counterpart;
- :func:`non_negative_factorization` — the functional API; :func:`factorization_loss` — ``D_β(X | WH)`` for
  dense, sparse or weighted X;
- :mod:`fastnmf.reference` — multiplicative updates from autograd for any non-negative model
  (:func:`gradient_parts`, :func:`multiplicative_update`, :func:`beta_divergence`);
- :class:`Chunks` — X given by code, chunk by chunk (memory maps, h5py datasets and backed AnnData are streamed
  as they are: docs/streaming.md).
"""

__version__ = "0.1.0"

from .estimator import NMF
from .functional import factorization_loss, non_negative_factorization
from .minibatch import MiniBatchNMF
from .ensemble import Ensemble, fit_ensemble, replicate_seed, resume_ensemble
from .consensus import consensus
from .selection import select_k
from .losses import beta_divergence
from .reference import gradient_parts, multiplicative_update
from .streaming import Chunks
from . import tl  # noqa: E402  (fastnmf.tl: AnnData; anndata itself is imported on use)

__all__ = [
    "NMF",
    "MiniBatchNMF",
    "fit_ensemble",
    "resume_ensemble",
    "replicate_seed",
    "Ensemble",
    "consensus",
    "select_k",
    "non_negative_factorization",
    "factorization_loss",
    "beta_divergence",
    "gradient_parts",
    "multiplicative_update",
    "Chunks",
    "__version__",
]
