"""fastnmf.tl.nmf on AnnData (scanpy's conventions): the same result as NMF on the same matrix, dense,
CSR, a layer, a gene mask, backed files; the h5ad round trip; a clear ImportError without anndata."""

import sys

import numpy as np
import pytest
import scipy.sparse as sp

from low_rank import low_rank_counts
import fastnmf
from fastnmf import tl

anndata = pytest.importorskip("anndata")  # in the test extra: CI installs it

OPTIONS = dict(init="random", random_state=0, max_iter=30, tol=0.0, beta_loss="kullback-leibler")


def counts(shape=(120, 40), seed=0):
    return low_rank_counts(shape, 4, seed, dtype=np.float32)


def reference(X, **options):
    model = fastnmf.NMF(4, **{**OPTIONS, **options})
    return model.fit_transform(X), model


@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_nmf_stores_usages_programs_and_the_fit_like_pca(storage):
    X = counts()
    adata = anndata.AnnData(X=sp.csr_matrix(X) if storage == "csr" else X)
    assert tl.nmf(adata, 4, **OPTIONS) is None
    W, model = reference(sp.csr_matrix(X) if storage == "csr" else X)
    np.testing.assert_allclose(adata.obsm["X_nmf"], W, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(adata.varm["nmf_components"], model.components_.T, rtol=1e-5, atol=1e-7)
    assert adata.uns["nmf"]["n_iter"] == 30
    assert adata.uns["nmf"]["params"]["beta_loss"] == "kullback-leibler"
    np.testing.assert_allclose(adata.uns["nmf"]["loss_history"], model.loss_history_)


def test_a_layer_a_gene_mask_and_key_added():
    X = counts()
    adata = anndata.AnnData(X=np.zeros_like(X), layers={"counts": X})
    adata.var["highly_variable"] = np.arange(X.shape[1]) % 3 != 0
    annotated = tl.nmf(adata, 4, layer="counts", mask_var="highly_variable", key_added="programs", copy=True, **OPTIONS)
    assert "programs" not in adata.obsm  # copy=True leaves the input alone
    mask = adata.var["highly_variable"].to_numpy()
    W, model = reference(X[:, mask])
    np.testing.assert_allclose(annotated.obsm["programs"], W, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(annotated.varm["programs"][~mask], 0.0)
    np.testing.assert_allclose(annotated.varm["programs"][mask], model.components_.T, rtol=1e-5, atol=1e-7)


def test_results_survive_the_h5ad_round_trip(tmp_path):
    adata = anndata.AnnData(X=counts())
    tl.nmf(adata, 4, **OPTIONS)
    path = tmp_path / "annotated.h5ad"
    adata.write_h5ad(path)
    back = anndata.read_h5ad(path)
    np.testing.assert_array_equal(back.obsm["X_nmf"], adata.obsm["X_nmf"])
    np.testing.assert_array_equal(back.varm["nmf_components"], adata.varm["nmf_components"])
    assert back.uns["nmf"]["n_iter"] == 30 and back.uns["nmf"]["params"]["random_state"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["dense", "csr"])
def test_a_backed_file_is_streamed_and_gives_the_in_memory_result(tmp_path, storage):
    X = counts()
    path = tmp_path / "cells.h5ad"
    anndata.AnnData(X=sp.csr_matrix(X) if storage == "csr" else X).write_h5ad(path)
    backed = anndata.read_h5ad(path, backed="r")
    # MU on both sides: a stream runs KL with MU, where in memory "auto" picks Newton (docs/streaming.md).
    tl.nmf(backed, 4, memory_budget="20kB", **OPTIONS, solver="mu")  # a few rows per chunk
    W, model = reference(X, solver="mu")
    np.testing.assert_allclose(backed.obsm["X_nmf"], W, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(backed.varm["nmf_components"], model.components_.T, rtol=1e-4, atol=1e-6)
    backed.file.close()


def test_bad_masks_are_named():
    adata = anndata.AnnData(X=counts())
    with pytest.raises(ValueError, match="'highly_variable' is not a column of adata.var"):
        tl.nmf(adata, 4, mask_var="highly_variable")
    with pytest.raises(ValueError, match="boolean column or array of length n_vars = 40"):
        tl.nmf(adata, 4, mask_var=np.ones(3, dtype=bool))


def test_without_anndata_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "anndata", None)
    with pytest.raises(ImportError, match=r"pip install 'fastnmf\[anndata\]'"):
        tl.nmf(object(), 3)


def test_consensus_nmf_and_select_k_store_their_tables(tmp_path):
    X = counts()
    adata = anndata.AnnData(X=X)
    tl.consensus_nmf(adata, 4, n_replicates=3, beta_loss="kullback-leibler", max_iter=50, random_state=0)
    assert adata.obsm["X_cnmf"].shape == (120, 4) and adata.varm["cnmf_components"].shape == (40, 4)
    assert adata.uns["cnmf"]["k"] == 4 and 0 < adata.uns["cnmf"]["kept"] <= 12
    table = tl.select_k(adata, [3, 4], n_replicates=2, beta_loss="kullback-leibler", max_iter=50)
    assert adata.uns["nmf_select_k"]["ks"] == [3, 4] == table["ks"]
    adata.write_h5ad(tmp_path / "k.h5ad")
    assert anndata.read_h5ad(tmp_path / "k.h5ad").uns["nmf_select_k"]["suggested_k"] in (3, 4)
