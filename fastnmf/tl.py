"""NMF for AnnData, with scanpy's conventions: ``fastnmf.tl.nmf(adata, n_components)``.

Results are stored the way ``scanpy.pp.pca`` stores its own: the cell usages in ``adata.obsm["X_nmf"]``
(cells × k), the gene programs in ``adata.varm["nmf_components"]`` (genes × k; zeros for genes left out by
``mask_var``), and ``adata.uns["nmf"]`` (the options, ``n_iter``, ``reconstruction_err``, the loss history);
with ``key_added=K``, all three under ``K``. They survive ``write_h5ad`` / ``read_h5ad``. A backed AnnData
(``read_h5ad(path, backed="r")``) is streamed from its file (docs/streaming.md). ``anndata`` is an optional
dependency: ``pip install fastnmf[anndata]``.

:func:`consensus_nmf` (replicates and cNMF's consensus, ``fastnmf.consensus``) and :func:`select_k` (the
k-selection table, ``fastnmf.select_k``) store their results the same way; they need the matrix in memory.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .estimator import NMF
from .streaming import Chunks, as_source, is_out_of_core

__all__ = ["nmf", "consensus_nmf", "select_k"]

_INSTALL = "pip install 'fastnmf[anndata]'"


def _require_anndata():
    try:
        import anndata
    except ImportError as error:
        raise ImportError(f"fastnmf.tl needs the anndata package: {_INSTALL}") from error
    return anndata


def _gene_mask(adata, mask_var):
    if mask_var is None:
        return None
    if isinstance(mask_var, str):
        if mask_var not in adata.var:
            raise ValueError(f"mask_var={mask_var!r} is not a column of adata.var (columns: {list(adata.var.columns)}); "
                             "e.g. run scanpy.pp.highly_variable_genes first for 'highly_variable'.")
        mask = np.asarray(adata.var[mask_var])
    else:
        mask = np.asarray(mask_var)
    if mask.dtype != bool or mask.shape != (adata.n_vars,):
        raise ValueError(f"mask_var must be a boolean column or array of length n_vars = {adata.n_vars}, got dtype "
                         f"{mask.dtype} and shape {mask.shape}.")
    if not mask.any():
        raise ValueError("mask_var selects no gene.")
    return mask


def _matrix(adata, layer, mask):
    X = adata.layers[layer] if layer is not None else adata.X
    if X is None:
        raise ValueError("adata.X is None: pass layer= with the counts to factorize.")
    if mask is None:
        return X
    columns = np.flatnonzero(mask)
    if is_out_of_core(X):  # a backed matrix: read rows, keep the selected genes, chunk by chunk
        source = as_source(X)
        return Chunks(lambda start, stop: source.read(start, stop)[:, columns], (source.shape[0], columns.size),
                      source.dtype, sparse=source.sparse)
    return X[:, columns] if sp.issparse(X) else np.asarray(X)[:, columns]


def _plain(value):
    """A value h5ad can store (it has no None): options that are None are left out by the caller."""
    if isinstance(value, (np.generic,)):
        return value.item()
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def nmf(adata, n_components: int, *, layer: str | None = None, mask_var=None, key_added: str | None = None,
        copy: bool = False, **options):
    """Factorize ``adata.X`` (or ``adata.layers[layer]``), cells × genes, into usages × gene programs.

    Parameters
    ----------
    adata : anndata.AnnData
        In memory (dense or sparse) or backed (``backed="r"``: streamed from the file).
    n_components : int
        The number of programs k.
    layer : str, optional
        Factorize this layer instead of ``.X`` (e.g. ``"counts"``).
    mask_var : str or boolean array, optional
        Genes to use, e.g. ``"highly_variable"`` (a boolean column of ``adata.var``); the others get zero
        loadings in ``varm``.
    key_added : str, optional
        Store under ``obsm[key]``, ``varm[key]``, ``uns[key]`` instead of ``"X_nmf"``, ``"nmf_components"``,
        ``"nmf"``.
    copy : bool
        Work on (and return) a copy of ``adata`` instead of annotating it in place.
    **options
        The parameters of :class:`fastnmf.NMF` (``beta_loss``, ``solver``, ``max_iter``, ``tol``, ``random_state``,
        ``device``, ``memory_budget``, …).

    Returns
    -------
    The annotated copy with ``copy=True``, else None.
    """
    _require_anndata()
    if copy:
        if adata.isbacked:
            raise ValueError("copy=True with a backed AnnData would load it: annotate it in place (copy=False) or "
                             "load it first (adata.to_memory()).")
        adata = adata.copy()
    mask = _gene_mask(adata, mask_var)
    model = NMF(n_components, **options)
    W = model.fit_transform(_matrix(adata, layer, mask))
    components = np.zeros((adata.n_vars, model.n_components_), dtype=model.components_.dtype)
    components[mask if mask is not None else slice(None)] = np.asarray(model.components_).T
    obsm_key, varm_key, uns_key = (key_added, key_added, key_added) if key_added else ("X_nmf", "nmf_components", "nmf")
    adata.obsm[obsm_key] = np.asarray(W)
    adata.varm[varm_key] = components
    params = {name: _plain(value) for name, value in model.get_params().items() if value is not None}
    params.update(layer=layer or "X", mask_var=mask_var if isinstance(mask_var, str) else ("array" if mask is not None else "none"))
    adata.uns[uns_key] = dict(params=params, n_iter=int(model.n_iter_),
                              reconstruction_err=float(model.reconstruction_err_),
                              loss_history=np.asarray(model.loss_history_, dtype=np.float64))
    return adata if copy else None


def _in_memory(adata, layer, mask, what: str):
    X = _matrix(adata, layer, mask)
    if is_out_of_core(X) or isinstance(X, Chunks):
        raise ValueError(f"{what} needs the matrix in memory (an ensemble fits it many times): load the AnnData "
                         "(adata.to_memory()) or select genes first.")
    return X


def consensus_nmf(adata, k: int, *, n_replicates: int = 20, layer: str | None = None, mask_var=None,
                  key_added: str | None = None, copy: bool = False, density_threshold: float = 0.5,
                  local_neighborhood_size: float = 0.3, **options):
    """Fit ``n_replicates`` random restarts at rank ``k`` and store their consensus (cNMF's method): usages
    in ``obsm["X_cnmf"]``, programs in ``varm["cnmf_components"]`` (genes × k, zeros outside ``mask_var``),
    ``uns["cnmf"]`` (k, stability, error, kept components); ``key_added`` as in :func:`nmf`. ``**options`` go
    to ``fastnmf.fit_ensemble`` (``beta_loss``, ``tol``, ``max_iter``, ``random_state``, …)."""
    from .consensus import consensus
    from .ensemble import fit_ensemble

    _require_anndata()
    if copy:
        adata = adata.copy()
    mask = _gene_mask(adata, mask_var)
    X = _in_memory(adata, layer, mask, "consensus_nmf")
    result = consensus(fit_ensemble(X, [k], n_replicates, **options), k, density_threshold=density_threshold,
                       local_neighborhood_size=local_neighborhood_size)
    components = np.zeros((adata.n_vars, k))
    components[mask if mask is not None else slice(None)] = np.asarray(result.components).T
    obsm_key, varm_key, uns_key = (key_added,) * 3 if key_added else ("X_cnmf", "cnmf_components", "cnmf")
    adata.obsm[obsm_key] = np.asarray(result.usages)
    adata.varm[varm_key] = components
    adata.uns[uns_key] = dict(k=int(k), n_replicates=int(n_replicates), stability=float(result.stability),
                              error=float(result.error), kept=int(result.kept), pooled=int(result.pooled))
    return adata if copy else None


def select_k(adata, ks, *, layer: str | None = None, mask_var=None, key_added: str = "nmf_select_k",
             **options) -> dict:
    """``fastnmf.select_k`` on the AnnData's matrix; the table (``KSelection.to_dict()``) is stored in
    ``adata.uns[key_added]`` and returned."""
    from .selection import select_k as select

    _require_anndata()
    mask = _gene_mask(adata, mask_var)
    table = select(_in_memory(adata, layer, mask, "select_k"), ks, **options).to_dict()
    adata.uns[key_added] = table
    return table
