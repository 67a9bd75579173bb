"""The fused sparse KL kernel (fastnmf.kernels.mu_sparse_kl) against the dense autograd reference.

One step, fp32, 1e-5 relative to max|ref| (docs/kernels.md, section "The Triton interpreter"). Under the
interpreter every program (a few columns of X) runs in Python, ~5–10 ms each: the shapes stay small.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import HAS_CUDA
from fastnmf import NMF, non_negative_factorization
from fastnmf.kernels import SparseMUConfig, mu_sparse_kl_cost, mu_sparse_kl_update_h
from fastnmf.kernels.configs import MAX_BETA_RANK, mu_sparse_kl_config, sparse_kl_tiles
from fastnmf.kernels.testing import eps_r_for, make_problem, reference_update, relative_error
from fastnmf.layouts import SparseMatrix

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
    pytest.mark.interpreter,  # the kernels run under the Triton interpreter without CUDA
]

DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")
PHI = torch.finfo(torch.float32).tiny ** 0.5  # the factor floor of fastnmf.safeguard

# (m, n, k, l1, l2): odd shapes, 1×1, a rank above min(m, n); the regularization alternates.
CASES = [
    (1, 1, 1, 0.0, 0.0),
    (63, 97, 5, 0.0, 0.0),
    (131, 17, 20, 0.2, 0.5),
    (7, 5, 9, 0.1, 0.0),
    (40, 23, 3, 0.0, 0.3),
]


def as_sparse(X: torch.Tensor, values_dtype: torch.dtype | None = None) -> SparseMatrix:
    """The stored (non-zero) entries of a dense X as a SparseMatrix, values in ``values_dtype``."""
    rows, cols = X.nonzero(as_tuple=True)
    values = X[rows, cols]
    return SparseMatrix.from_coo(rows, cols, values.to(values_dtype or X.dtype), X.shape)


def step(X: SparseMatrix, W, H, side, **options):
    """One update of ``side`` ("H", or "W" via the transposed views, exactly as Backend.mu_update_w)."""
    if side == "H":
        return mu_sparse_kl_update_h(X, W, H, **options)
    return mu_sparse_kl_update_h(X.T, H.T, W.T, **options).T


def check_against_reference(X, W, H, side, *, l1=0.0, l2=0.0, values_dtype=None, config=None, tolerance=1e-5):
    """The sparse step on the stored entries of X == the dense reference step on X (float64)."""
    X_sparse = as_sparse(X, values_dtype)
    # The reference sees exactly the values the kernel reads (fp16/bf16 rounding included).
    X_seen = X.to(values_dtype).float() if values_dtype is not None else X
    eps_r = eps_r_for(X_seen)
    W_before, H_before = W.clone(), H.clone()
    expected = reference_update(X_seen, W, H, beta=1.0, side=side, l1=l1, l2=l2, eps_r=eps_r)
    got = step(X_sparse, W, H, side, eps_r=eps_r, l1=l1, l2=l2, config=config)
    assert got.dtype == torch.float32 and got.device == W.device and got.shape == expected.shape
    assert torch.isfinite(got).all(), f"{side} update: non-finite entries (an unwritten NaN-poisoned output?)"
    assert torch.equal(W, W_before) and torch.equal(H, H_before), "the launcher modified its inputs"
    error = relative_error(got, expected)
    assert error <= tolerance, f"KL {side} update of {tuple(X.shape)}, k={W.shape[1]}: relative error {error:.2e}"
    return got, error


def sparse_problem(m, n, k, *, zero_fraction=0.7, seed=0):
    X, W, H = make_problem(m, n, k, device=DEVICE, zero_fraction=zero_fraction, seed=seed)
    return X, W, H


def test_outputs_are_nan_poisoned_by_the_test_setup():
    # tests/conftest.py makes launch.new_output fill NaN: an output entry the kernel does not write stays
    # NaN and fails check_against_reference (which this file's comparisons all go through).
    from fastnmf.kernels import launch

    assert torch.isnan(launch.new_output(torch.zeros(3, 5, device=DEVICE))).all()


@pytest.mark.parametrize("side", ["H", "W"])
@pytest.mark.parametrize("m, n, k, l1, l2", CASES, ids=[f"{m}x{n}x{k}" + ("-reg" if l1 or l2 else "")
                                                        for m, n, k, l1, l2 in CASES])
def test_one_step_matches_the_dense_reference(m, n, k, l1, l2, side):
    X, W, H = sparse_problem(m, n, k)
    check_against_reference(X, W, H, side, l1=l1, l2=l2)


@pytest.mark.parametrize("side", ["H", "W"])
def test_empty_rows_and_columns_follow_the_safeguard_rule(side):
    X, W, H = sparse_problem(41, 29, 6, zero_fraction=0.5, seed=1)
    empty_rows, empty_columns = [0, 17, 40], [0, 11, 28]  # first and last included
    X[empty_rows, :] = 0.0
    X[:, empty_columns] = 0.0
    W[:, 2] = 0.0  # a zero column of W: KL denominator colsum 0 and numerator 0 → ratio 0, never 0/0
    W[5, :] = 0.0  # a zero row of W where X has stored entries: (WH)_5j = 0 is floored at eps_r, 0·(x/eps_r) = 0
    assert X[5].count_nonzero() > 0
    got, _ = check_against_reference(X, W, H, side, l1=0.1)
    # No stored entries: numerator 0, so the new entries sit on the factor floor φ (as in the dense update).
    if side == "H":
        assert torch.all(got[:, empty_columns] == PHI)
        assert torch.all(got[2] == PHI)
    else:
        assert torch.all(got[empty_rows, :] == PHI)


@pytest.mark.parametrize("side", ["H", "W"])
def test_all_zero_pattern_gives_the_factor_floor(side):
    # nnz = 0: no program enters its loop; eps_r falls back to eps(fp32). Every numerator is 0, so every
    # entry lands on the fp32 factor floor (the float64 reference's floor is 1.5e-154: no relative error).
    X = torch.zeros(9, 13, device=DEVICE)
    _, W, H = make_problem(9, 13, 3, device=DEVICE)
    X_sparse = as_sparse(X)
    assert X_sparse.nnz == 0
    got = step(X_sparse, W, H, side, eps_r=eps_r_for(X), l1=0.1, l2=0.1)
    assert got.shape == (W if side == "W" else H).shape
    assert torch.all(got == PHI)


def test_explicitly_stored_zeros_add_nothing():
    X, W, H = sparse_problem(30, 20, 4, zero_fraction=0.3, seed=2)
    rows, cols = torch.meshgrid(torch.arange(30), torch.arange(20), indexing="ij")
    every_entry = SparseMatrix.from_coo(rows.flatten(), cols.flatten(), X.flatten(), X.shape)  # zeros stored
    eps_r = eps_r_for(X)
    expected = reference_update(X, W, H, beta=1.0, side="H", eps_r=eps_r)
    assert relative_error(mu_sparse_kl_update_h(every_entry, W, H, eps_r=eps_r), expected) <= 1e-5


@pytest.mark.parametrize("side", ["H", "W"])
def test_several_chunks_per_column_with_a_masked_remainder(side):
    # 4 entries per chunk: columns of ~20 stored entries take several chunks plus a partial one; a rank tile
    # wider than the rank (32 for k = 7) exercises the masked rank lanes.
    X, W, H = sparse_problem(61, 37, 7, zero_fraction=0.6, seed=3)
    check_against_reference(X, W, H, side, l2=0.2, config=SparseMUConfig(block_nnz=4, block_k=32, num_warps=1))


@pytest.mark.parametrize("side", ["H", "W"])
def test_several_columns_per_program_of_unequal_lengths(side):
    # 8 columns per program over 37 columns (a masked remainder of 5) and 61 rows (the W side: 8 rows of X
    # per program, 7 of them in the last); one dense column and one dense row make a program's loop run
    # far past its other columns' ends, which must add nothing.
    X, W, H = sparse_problem(61, 37, 7, zero_fraction=0.8, seed=5)
    X[:, 9] = torch.rand(61) + 0.5
    X[12, :] = torch.rand(37) + 0.5
    config = SparseMUConfig(block_nnz=4, block_k=8, num_warps=1, block_cols=8)
    check_against_reference(X, W, H, side, l1=0.1, config=config)


def test_padded_lanes_add_nothing_at_a_zero_reconstruction_floor():
    # eps_r = 0 is allowed: a padded lane's r is 0 there, and its 0 / 0 must not reach the numerator.
    X, W, H = sparse_problem(20, 11, 3, zero_fraction=0.5, seed=6)
    expected = reference_update(X, W, H, beta=1.0, side="H", eps_r=0.0)
    got = mu_sparse_kl_update_h(as_sparse(X), W, H, eps_r=0.0,
                                config=SparseMUConfig(block_nnz=16, block_k=4, num_warps=1, block_cols=4))
    assert torch.isfinite(got).all()
    assert relative_error(got, expected) <= 1e-5


@pytest.mark.parametrize("side", ["H", "W"])
def test_fp16_values(side):
    X, W, H = sparse_problem(50, 33, 6, seed=4)
    check_against_reference(X, W, H, side, values_dtype=torch.float16, l1=0.05)


def test_any_strides_of_w_and_h():
    # Column-major W (its rows are copied to row-major before the gather) and a non-contiguous H.
    X, W, H = sparse_problem(37, 26, 5, seed=5)
    eps_r = eps_r_for(X)
    expected = reference_update(X, W, H, beta=1.0, side="H", eps_r=eps_r)
    W_column_major = W.T.contiguous().T
    H_strided = torch.empty(5, 52, device=DEVICE)[:, ::2]
    H_strided.copy_(H)
    got = mu_sparse_kl_update_h(as_sparse(X), W_column_major, H_strided, eps_r=eps_r)
    assert relative_error(got, expected) <= 1e-5


def _bad_call(case):
    X, W, H = make_problem(6, 5, 2, device=DEVICE)
    X_sparse = as_sparse(X)
    options = dict(eps_r=1e-7)
    if case == "dense-x":
        return (X, W, H), options
    if case == "w-rows":
        return (X_sparse, W[:4], H), options
    if case == "rank-mismatch":
        return (X_sparse, W, H[:1]), options
    if case == "float64-w":
        return (X_sparse, W.double(), H), options
    if case == "float64-values":
        return (as_sparse(X.double()), W, H), options
    if case == "mixed-devices":
        return (X_sparse, W, torch.empty(2, 5, device="meta")), options
    if case == "negative-eps":
        return (X_sparse, W, H), dict(eps_r=-1.0)
    if case == "nan-l1":
        return (X_sparse, W, H), dict(eps_r=1e-7, l1=float("nan"))
    if case == "narrow-config":
        return (X_sparse, W, H), dict(eps_r=1e-7, config=SparseMUConfig(16, 1))
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case, error, match",
    [
        ("dense-x", TypeError, r"X must be a fastnmf\.layouts\.SparseMatrix, got Tensor"),
        ("w-rows", ValueError, r"shapes do not chain.*X \(6, 5\) \(sparse, \d+ stored entries\), W \(4, 2\), H \(2, 5\)"),
        ("rank-mismatch", ValueError, r"shapes do not chain.*W \(6, 2\), H \(1, 5\)"),
        ("float64-w", TypeError, r"W \(6, 2\) has dtype torch\.float64; the factors must be float32"),
        ("float64-values", TypeError, r"X \(6, 5\) has values of dtype torch\.float64; expected one of float32"),
        ("mixed-devices", ValueError, r"H \(2, 5\) on meta; all three must be on the same device"),
        ("negative-eps", ValueError, r"eps_r = -1\.0 must be ≥ 0"),
        ("nan-l1", ValueError, r"l1 = nan must be finite"),
        ("narrow-config", ValueError, r"config\.block_k = 1 must cover the whole rank k = 2 \(W \(6, 2\)\)"),
    ],
)
def test_launcher_errors_name_the_shapes(case, error, match):
    args, options = _bad_call(case)
    with pytest.raises(error, match=match):
        mu_sparse_kl_update_h(*args, **options)


def test_rank_above_the_on_chip_limit_is_refused_with_the_shapes():
    X, W, H = make_problem(3, 4, MAX_BETA_RANK + 1, device=DEVICE)
    with pytest.raises(ValueError, match=rf"k = {MAX_BETA_RANK + 1}.*W \(3, {MAX_BETA_RANK + 1}\)"):
        mu_sparse_kl_update_h(as_sparse(X), W, H, eps_r=1e-7)


def test_gpu_tiles_respect_the_register_budget():
    for k_pad in (4, 8, 16, 32, 64, 128, 256, 512):
        for mean_nnz in (1, 10, 100, 10_000):
            tiles = sparse_kl_tiles(k_pad, mean_nnz)
            assert tiles.block_k == k_pad
            assert tiles.block_cols * tiles.block_nnz * k_pad <= 4096 and 1 <= tiles.num_warps <= 8
            assert tiles.block_cols * tiles.block_nnz * k_pad >= min(2048 if k_pad == 512 else 4096, 16 * k_pad)
    assert sparse_kl_tiles(16, 3).block_nnz == 16 and sparse_kl_tiles(16, 100).block_nnz == 128
    # The GPU preset's W update (10⁶ × 10⁵, 1.1·10⁷ entries: 11 per row of X) at k = 32: 8 rows of 16
    # entries per program and 8 warps, where one row per program took 1 warp.
    assert sparse_kl_tiles(32, 11) == SparseMUConfig(block_nnz=16, block_k=32, num_warps=8, block_cols=8)
    # Its H update (110 entries per column): one column of 128 entries.
    assert sparse_kl_tiles(32, 110) == SparseMUConfig(block_nnz=128, block_k=32, num_warps=8, block_cols=1)
    assert sparse_kl_tiles(4, 1).block_cols == 32  # the cap on columns per program
    if not HAS_CUDA:  # the interpreter gets one config, whatever the pattern; the rank tile covers k
        assert mu_sparse_kl_config(10, 5, 5, DEVICE) == mu_sparse_kl_config(10_000, 5, 5, DEVICE)
        assert mu_sparse_kl_config(10, 5, 5, DEVICE).block_k == 8


def test_cost_formula_counts_the_stored_entries():
    bytes32, flops = mu_sparse_kl_cost(10_000, 1000, 2000, 16, 4)
    bytes16, _ = mu_sparse_kl_cost(10_000, 1000, 2000, 16, 2)
    assert bytes32 - bytes16 == 10_000 * 2
    assert flops >= 4 * 10_000 * 16
    assert mu_sparse_kl_cost(20_000, 1000, 2000, 16, 4)[1] > flops


# --- the "triton" backend on sparse X: fits ---------------------------------------------------------------


def _counts(m=31, n=23, seed=0):
    """Poisson-like counts with ~70 % zeros, an all-zero row and an all-zero column."""
    rng = np.random.RandomState(seed)
    X = np.where(rng.rand(m, n) < 0.3, rng.poisson(3.0, size=(m, n)) + 1.0, 0.0).astype(np.float32)
    X[2] = 0.0
    X[:, 5] = 0.0
    return X


def _starting_point(m, n, k, seed=1):
    rng = np.random.RandomState(seed)
    return (rng.rand(m, k) + 0.1).astype(np.float32), (rng.rand(k, n) + 0.1).astype(np.float32)


@pytest.mark.slow  # whole fits under the interpreter (~0.9 s on 2 cores)
def test_kl_fit_on_sparse_x_matches_the_torch_backend():
    X = _counts()
    W0, H0 = _starting_point(*X.shape, 4)
    options = dict(n_components=4, init="custom", beta_loss="kullback-leibler", solver="mu", max_iter=5, tol=0.0,
                   check_every=1, alpha_W=0.01, l1_ratio=0.5)
    fits = {backend: NMF(backend=backend, **options) for backend in ("torch", "triton")}
    factors = {backend: (model.fit_transform(sp.csr_matrix(X), W=W0, H=H0), model.components_)
               for backend, model in fits.items()}
    assert len(fits["triton"].loss_history_) == len(fits["torch"].loss_history_) == 6  # the start, 5 iterations
    np.testing.assert_allclose(fits["triton"].loss_history_, fits["torch"].loss_history_, rtol=1e-4)
    for got, expected in zip(factors["triton"], factors["torch"]):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.max())


@pytest.mark.slow
def test_functional_api_with_backend_triton_on_scipy_csr(monkeypatch):
    X = _counts(seed=3)
    W0, H0 = _starting_point(*X.shape, 3, seed=4)
    options = dict(n_components=3, init="custom", beta_loss="kullback-leibler", solver="mu", max_iter=5, tol=0.0)
    calls = []

    def counted(X, W, H, **kw):
        calls.append((tuple(X.shape), tuple(W.shape)))
        return mu_sparse_kl_update_h(X, W, H, **kw)

    monkeypatch.setattr("fastnmf.kernels.mu_sparse_kl_update_h", counted)
    W_triton, H_triton, n_iter = non_negative_factorization(sp.csr_matrix(X), W0, H0, backend="triton", **options)
    # Every update went through the fused kernel: H on X (by columns), W on Xᵀ (by rows).
    assert sorted(calls) == [((23, 31), (23, 3))] * 5 + [((31, 23), (31, 3))] * 5
    monkeypatch.undo()
    W_torch, H_torch, _ = non_negative_factorization(sp.csr_matrix(X), W0, H0, backend="torch", **options)
    assert n_iter == 5 and W_triton.dtype == np.float32
    np.testing.assert_allclose(W_triton, W_torch, rtol=1e-4, atol=1e-4 * W_torch.max())
    np.testing.assert_allclose(H_triton, H_torch, rtol=1e-4, atol=1e-4 * H_torch.max())


@pytest.mark.parametrize("beta_loss, solver", [("frobenius", "mu"), ("frobenius", "hals"), (0.5, "mu")])
def test_other_losses_on_the_triton_sparse_backend_use_the_torch_sparse_ops(beta_loss, solver):
    X = _counts(seed=5)
    W0, H0 = _starting_point(*X.shape, 3, seed=6)
    options = dict(n_components=3, init="custom", beta_loss=beta_loss, solver=solver, max_iter=4, tol=0.0)
    W_triton, H_triton, _ = non_negative_factorization(sp.csr_matrix(X), W0, H0, backend="triton", **options)
    W_torch, H_torch, _ = non_negative_factorization(sp.csr_matrix(X), W0, H0, backend="torch", **options)
    np.testing.assert_array_equal(W_triton, W_torch)
    np.testing.assert_array_equal(H_triton, H_torch)


# --- GPU only ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("side", ["H", "W"])
def test_bf16_values_on_gpu(side):
    X, W, H = sparse_problem(300, 257, 33, seed=7)
    check_against_reference(X, W, H, side, values_dtype=torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.parametrize("k", [10, 150, 512])
@pytest.mark.parametrize("side", ["H", "W"])
def test_large_shapes_with_the_gpu_configs(side, k):
    # ~1 % and ~30 % stored entries: short columns (BLOCK_NNZ = 16) and long ones (the register cap).
    for zero_fraction in (0.99, 0.7):
        X, W, H = sparse_problem(3000, 2000, k, zero_fraction=zero_fraction, seed=8)
        check_against_reference(X, W, H, side, l1=0.1)


def test_cost_counts_the_gathers_of_a_factor_larger_than_l2():
    # 10⁶ × 10⁵, 1.1·10⁷ stored entries, k = 64: W (256 MB) does not fit in L2, every gather reads HBM.
    big, _ = mu_sparse_kl_cost(11_000_000, 1_000_000, 100_000, 64, 4)
    assert big >= 4 * 11_000_000 * 64 > 2.8e9
    # A W of 4 MB fits: read once.
    small, _ = mu_sparse_kl_cost(11_000_000, 16_384, 100_000, 64, 4)
    assert small < 4 * 11_000_000 * 64 and small >= 4 * 16_384 * 64

