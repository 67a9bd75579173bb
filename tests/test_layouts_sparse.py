"""Sparse X (scipy.sparse, torch sparse): the same factorization as dense X, without ever densifying it."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fastnmf import NMF, non_negative_factorization
from fastnmf.layouts import DenseMatrix, base
from fastnmf.losses import beta_divergence, divergence
from fastnmf.objective import objective
from fastnmf.updates import MURule
from fastnmf.validation import as_tensor

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

M, N, K = 31, 23, 4
FORMATS = ["scipy-csr", "scipy-csc", "scipy-coo", "torch-coo", "torch-csr"]
_SCIPY_CLASSES = [getattr(sp, name) for name in dir(sp) if name.endswith(("_matrix", "_array"))
                  and isinstance(getattr(sp, name), type) and name != "sparray"]


def _counts(m=M, n=N, density=0.25, seed=0):
    """Poisson-like counts with ~75 % zeros, an all-zero row and an all-zero column (the hard cases)."""
    rng = np.random.RandomState(seed)
    X = np.where(rng.rand(m, n) < density, rng.poisson(3.0, size=(m, n)) + 1.0, 0.0)
    X[2] = 0.0
    X[:, 5] = 0.0
    return X


def _as_format(X: np.ndarray, fmt: str):
    coo = sp.coo_matrix(X)
    if fmt.startswith("scipy"):
        return coo.asformat(fmt.split("-")[1])
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    tensor = torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data), X.shape, check_invariants=False)
    return tensor if fmt == "torch-coo" else tensor.coalesce().to_sparse_csr()


def _to_numpy(array):
    return array.numpy() if isinstance(array, torch.Tensor) else array


@pytest.fixture
def never_dense(monkeypatch):
    """Every way scipy and torch turn a sparse matrix into a dense one raises inside the test."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"a sparse matrix was densified ({type(self).__name__})")

    for cls in _SCIPY_CLASSES:
        for method in ("toarray", "todense"):
            if hasattr(cls, method):
                monkeypatch.setattr(cls, method, refuse)
    monkeypatch.setattr(torch.Tensor, "to_dense", refuse)


@pytest.fixture
def small_blocks(monkeypatch):
    """Tiny blocks, so that the blocked code paths run several blocks on small data."""
    monkeypatch.setattr(base, "BLOCK_ENTRIES", 64)  # 2 columns of 31 rows per block


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("fmt", FORMATS)
def test_sparse_equals_dense_after_20_iterations(fmt, beta, never_dense, small_blocks):
    X = _counts()
    options = dict(n_components=K, init="random", random_state=0, max_iter=20, tol=0.0, beta_loss=beta, solver="mu")
    W_sparse, H_sparse, n_iter = non_negative_factorization(_as_format(X, fmt), **options)
    W_dense, H_dense, _ = non_negative_factorization(X, **options)
    assert n_iter == 20
    assert type(W_sparse) is (torch.Tensor if fmt.startswith("torch") else np.ndarray)
    np.testing.assert_allclose(_to_numpy(W_sparse), W_dense, rtol=1e-5, atol=1e-5 * W_dense.max())
    np.testing.assert_allclose(_to_numpy(H_sparse), H_dense, rtol=1e-5, atol=1e-5 * H_dense.max())


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.0, 0.5, 1.5, 3.0, -0.5])
def test_objective_equals_the_dense_objective(beta, small_blocks):
    X = _counts()
    rng = np.random.RandomState(1)
    W, H = torch.from_numpy(rng.rand(M, K)), torch.from_numpy(rng.rand(K, N))
    X_sparse, _ = as_tensor(sp.csr_matrix(X))
    eps_r = 1e-12
    dense = objective(DenseMatrix(torch.from_numpy(X)), W, H, beta=beta, eps_r=eps_r)
    assert float(objective(X_sparse, W, H, beta=beta, eps_r=eps_r)) == pytest.approx(float(dense), rel=1e-10)


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.0, 0.5, 1.5, 3.0, -0.5])
def test_entrywise_divergence_sums_to_the_divergence(beta):
    X = torch.from_numpy(_counts())
    R = torch.from_numpy(np.random.RandomState(2).rand(M, N)) + 0.1
    assert float(divergence(X, R, beta).sum()) == pytest.approx(float(beta_divergence(X, R, beta)), rel=1e-12)


def test_mu_update_equals_the_dense_update_for_every_beta(small_blocks):
    X = _counts()
    X_sparse, _ = as_tensor(sp.csc_matrix(X))
    rng = np.random.RandomState(3)
    W, H = torch.from_numpy(rng.rand(M, K)), torch.from_numpy(rng.rand(K, N))
    for beta in (2.0, 1.0, 0.0, 0.5, 1.5, 3.0, -0.5):
        rule = MURule(beta, 0.1, 0.2, eps_r=1e-12)
        expected, _ = rule.update(DenseMatrix(torch.from_numpy(X)), W, H)
        torch.testing.assert_close(rule.update(X_sparse, W, H)[0], expected, rtol=1e-12, atol=0)


def test_hals_equals_dense_hals(never_dense):
    X = _counts()
    options = dict(n_components=K, init="random", random_state=0, max_iter=15, tol=0.0, solver="hals", inner_iter=3)
    W_sparse, H_sparse, _ = non_negative_factorization(sp.csr_matrix(X), **options)
    W_dense, H_dense, _ = non_negative_factorization(X, **options)
    np.testing.assert_allclose(W_sparse, W_dense, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(H_sparse, H_dense, rtol=1e-8, atol=1e-10)


def test_estimator_transform_and_inverse_transform(never_dense):
    X = _counts()
    options = dict(n_components=K, beta_loss="kullback-leibler", max_iter=30, random_state=0)
    model_sparse = NMF(**options).fit(sp.csr_matrix(X))
    model_dense = NMF(**options).fit(X)  # nndsvda start: the randomized SVD of the sparse matrix
    np.testing.assert_allclose(model_sparse.components_, model_dense.components_, rtol=1e-7, atol=1e-9)
    assert model_sparse.reconstruction_err_ == pytest.approx(model_dense.reconstruction_err_, rel=1e-9)
    np.testing.assert_allclose(model_sparse.loss_history_, model_dense.loss_history_, rtol=1e-9)
    W = model_sparse.transform(sp.csr_matrix(X))
    np.testing.assert_allclose(W, model_dense.transform(X), rtol=1e-7, atol=1e-9)
    # inverse_transform is W @ components_: dense by definition, also for sparse W.
    reconstruction = model_sparse.inverse_transform(sp.csr_matrix(W))
    assert isinstance(reconstruction, np.ndarray) and reconstruction.shape == X.shape
    np.testing.assert_allclose(reconstruction, W @ model_sparse.components_, rtol=1e-12)


def test_output_follows_the_input_library_and_dtype():
    X = _counts()
    W, H, _ = non_negative_factorization(sp.csr_matrix(X.astype(np.float32)), n_components=K, max_iter=3)
    assert isinstance(W, np.ndarray) and W.dtype == np.float32 and H.dtype == np.float32
    W, H, _ = non_negative_factorization(sp.csr_matrix(X.astype(np.int64)), n_components=K, max_iter=3)
    assert W.dtype == np.float64
    X_torch = _as_format(X.astype(np.float32), "torch-csr")
    W, H, _ = non_negative_factorization(X_torch, n_components=K, max_iter=3)
    assert isinstance(W, torch.Tensor) and W.dtype == torch.float32 and W.device == X_torch.device


def test_duplicates_are_summed_and_explicit_zeros_are_zeros():
    # COO may repeat an entry (scipy and torch sum repeats) and store zeros explicitly.
    rows, cols = [0, 0, 1, 2, 3], [1, 1, 2, 0, 3]
    values = [1.0, 2.0, 0.0, 4.0, 5.0]
    X_coo = sp.coo_matrix((values, (rows, cols)), shape=(4, 5))
    dense = np.zeros((4, 5))
    np.add.at(dense, (rows, cols), values)
    options = dict(n_components=2, init="random", random_state=0, max_iter=10, tol=0.0, beta_loss=0.5)
    W_sparse, H_sparse, _ = non_negative_factorization(X_coo, **options)
    W_dense, H_dense, _ = non_negative_factorization(dense, **options)
    np.testing.assert_allclose(W_sparse, W_dense, rtol=1e-10)
    np.testing.assert_allclose(H_sparse, H_dense, rtol=1e-10)


@pytest.mark.parametrize("beta_loss", ["frobenius", "kullback-leibler"])
def test_huge_shape_with_few_entries_never_allocates_m_by_n(beta_loss):
    # 200000 × 100000 in float64 would be 149 GiB dense; the fit needs O(nnz + (m + n)·k) memory.
    m, n, nnz = 200_000, 100_000, 3000
    rng = np.random.RandomState(0)
    X = sp.coo_matrix((rng.rand(nnz) + 0.5, (rng.randint(m, size=nnz), rng.randint(n, size=nnz))), shape=(m, n))
    model = NMF(3, beta_loss=beta_loss, solver="mu", init="random", max_iter=5, random_state=0).fit(X)
    assert model.components_.shape == (3, n) and np.isfinite(model.components_).all()
    assert all(np.isfinite(model.loss_history_))


def test_all_zero_sparse_x_gives_finite_factors():
    X = sp.csr_matrix((5, 4))
    for beta in ("frobenius", "kullback-leibler", "itakura-saito", 0.5):
        W, H, _ = non_negative_factorization(X, n_components=2, init="random", beta_loss=beta, solver="mu", max_iter=5)
        assert np.isfinite(W).all() and np.isfinite(H).all()


def test_triton_backend_with_float64_sparse_x_is_a_clear_error():
    # backend='triton' runs sparse X (tests/test_kernels_mu_sparse_kl.py), with float32 factors like dense X.
    with pytest.raises(TypeError, match="backend='triton' computes with float32 factors, but X is float64"):
        non_negative_factorization(sp.csr_matrix(_counts()), n_components=K, backend="triton")


def test_sparse_matrix_transpose_swaps_the_two_copies():
    X = _counts()
    X_sparse, _ = as_tensor(sp.csr_matrix(X))
    rng = np.random.RandomState(4)
    W, H = torch.from_numpy(rng.rand(M, K)), torch.from_numpy(rng.rand(K, N))
    # The transposed problem Xᵀ ≈ Hᵀ Wᵀ reads X by rows: its "Wᵀ Y" is (X Hᵀ)ᵀ, its SDDMM is row-major.
    torch.testing.assert_close(X_sparse.T.left_product(H.T), (torch.from_numpy(X) @ H.T).T)
    expected = (W @ H)[X_sparse.row_indices(), X_sparse.by_row.col_indices()]
    torch.testing.assert_close(X_sparse.T.sampled_product(H.T, W.T), expected)
    assert X_sparse.T.T.by_row is X_sparse.by_row


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("fmt", FORMATS)
def test_factorization_loss_of_sparse_x_equals_the_dense_one_and_scikit_learns(fmt, beta, never_dense, small_blocks):
    from sklearn.decomposition._nmf import _beta_divergence

    from fastnmf import factorization_loss

    X = _counts()
    rng = np.random.RandomState(1)
    W, H = rng.rand(M, K) + 0.05, rng.rand(K, N) + 0.05
    expected = _beta_divergence(X, W, H, beta)
    sparse_input = _as_format(X, fmt)
    got = factorization_loss(sparse_input, torch.from_numpy(W) if fmt.startswith("torch") else W,
                             torch.from_numpy(H) if fmt.startswith("torch") else H, beta)
    assert got == pytest.approx(expected, rel=1e-12)


def test_factorization_loss_with_weights_of_one_is_the_unweighted_loss_and_ignores_missing_entries():
    from fastnmf import factorization_loss

    X = _counts()
    rng = np.random.RandomState(2)
    W, H = rng.rand(M, K) + 0.05, rng.rand(K, N) + 0.05
    plain = factorization_loss(X, W, H, "kullback-leibler")
    assert factorization_loss(X, W, H, "kullback-leibler", weights=np.ones_like(X)) == pytest.approx(plain, rel=1e-12)
    holes = X.copy()
    holes[0, 0], holes[3, 7] = np.nan, np.nan
    mask = np.ones_like(X)
    mask[0, 0] = mask[3, 7] = 0.0
    assert factorization_loss(holes, W, H, 1.0, missing_values=np.nan) == pytest.approx(
        factorization_loss(X, W, H, 1.0, weights=mask), rel=1e-12)
