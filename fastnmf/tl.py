"""NMF for AnnData, with scanpy's conventions: ``fastnmf.tl.nmf(adata, n_components)``.

Results are stored the way ``scanpy.pp.pca`` stores its own: the cell usages in ``adata.obsm["X_nmf"]``
(cells × k), the gene programs in ``adata.varm["nmf_components"]`` (genes × k; zeros for genes left out by
``mask_var``), and ``adata.uns["nmf"]`` (the options, ``n_iter``, ``reconstruction_err``, the loss history);
with ``key_added=K``, all three under ``K``. They survive ``write_h5ad`` / ``read_h5ad``. A backed AnnData
(``read_h5ad(path, backed="r")``) is streamed from its file (docs/streaming.md). ``anndata`` is an optional
dependency: ``pip install fastnmf[anndata]``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .estimator import NMF
from .streaming import Chunks, as_source, is_out_of_core

__all__ = ["nmf"]

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
