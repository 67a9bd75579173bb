"""The fused HALS sweep (fastnmf.kernels.hals), the WᵀX GEMM (fastnmf.kernels.gemm) and the triton backend's
HALS rule, against the torch sweep (``fastnmf.updates.hals_sweeps_``), the torch backend's HALS rule, and
the per-column twin ``fastnmf.kernels.testing.hals_sweeps_by_column``."""

import numpy as np
import pytest
import torch
import triton

from fastnmf import NMF
from fastnmf.backends import torch_backend
from fastnmf.backends.triton_backend import make_dense_backend
from fastnmf.kernels import (
    MAX_HALS_RANK,
    HALSConfig,
    MUConfig,
    hals_sweeps,
    hals_sweeps_cost,
    matmul_tn,
    matmul_tn_cost,
)
from fastnmf.kernels import hals, launch
from fastnmf.kernels.configs import hals_sweep_config
from fastnmf.kernels.testing import hals_sweeps_by_column, make_problem, relative_error
from fastnmf.layouts import DenseMatrix
from fastnmf.safeguard import factor_floor, hals_step_sizes
from fastnmf.updates import hals_sweeps_

pytestmark = pytest.mark.interpreter  # the kernels run under the Triton interpreter without CUDA

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
PHI = factor_floor(torch.float32)

# (m, n, k): a single entry, odd sizes (masked remainders; H: two column blocks of 128 under the
# interpreter), three column blocks for H, k = 1, and k = 33 (a padded rank of 64).
SHAPES = [(1, 1, 1), (97, 131, 7), (64, 300, 5), (150, 70, 1), (40, 50, 33)]
PENALTIES = {"plain": (0.0, 0.0), "l1_l2": (0.3, 0.7)}


def products(X, W, H, side):
    """``(H or Wᵀ, A, B)`` of the H update, or of the W update on the transposed problem (views)."""
    if side == "W":
        X, W, H = X.T, H.T, W.T
    return H, W.T @ X, W.T @ W


def torch_sweeps(H, A, B, **options):
    expected = H.clone()
    hals_sweeps_(expected, A, B, **options)
    return expected


class _HALS:
    """HALS half-updates of a backend on dense X, as the solvers run them (``Layout.update_h`` / ``update_w``):
    ``(new factor, fit)``."""

    def __init__(self, backend):
        self.backend = backend

    def hals_update_h(self, X, W, H, *, l1=0.0, l2=0.0, max_sweeps=1, delta=0.1):
        rule = self.backend.hals_rule(l1, l2, max_sweeps=max_sweeps, delta=delta, fit=True)
        return DenseMatrix(X).update_h(rule, W, H)

    def hals_update_w(self, X, W, H, *, l1=0.0, l2=0.0, max_sweeps=1, delta=0.1):
        rule = self.backend.hals_rule(l1, l2, max_sweeps=max_sweeps, delta=delta, fit=True)
        return DenseMatrix(X).update_w(rule, W, H)


def make_backend(precision):
    return _HALS(make_dense_backend(precision))


TORCH_BACKEND = _HALS(torch_backend.make_backend())


@pytest.mark.parametrize("max_sweeps", [1, 3])
@pytest.mark.parametrize("penalty", list(PENALTIES))
@pytest.mark.parametrize("side", ["H", "W"])
@pytest.mark.parametrize("m, n, k", SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in SHAPES])
def test_fused_sweep_matches_the_torch_sweep(m, n, k, side, penalty, max_sweeps):
    X, W, H = make_problem(m, n, k, device=DEVICE)
    l1, l2 = PENALTIES[penalty]
    target, A, B = products(X, W, H, side)
    options = dict(l1=l1, l2=l2, max_sweeps=max_sweeps, delta=0.0)
    got, sweeps = hals_sweeps(target, A, B, **options)
    expected = torch_sweeps(target, A, B, **options)
    assert got.dtype == torch.float32 and got.stride() == target.stride()
    error = relative_error(got, expected)
    assert error <= 1e-5, f"{side} sweep of {(m, n, k)}: relative error {error:.2e}"
    assert sweeps.dtype == torch.int32 and sweeps.min() >= 1 and sweeps.max() <= max_sweeps


@pytest.mark.parametrize("side", ["H", "W"])
def test_a_term_at_the_floor_is_left_unchanged(side):
    # A column of W (row of H) at the floor φ: curvature ≈ m·φ² → step 0 (fastnmf.safeguard.hals_step_sizes).
    X, W, H = make_problem(97, 131, 7, device=DEVICE)
    W[:, 2] = PHI
    H[4, :] = PHI
    target, A, B = products(X, W, H, side)
    degenerate = 2 if side == "H" else 4
    options = dict(l1=0.1, max_sweeps=3, delta=0.0)
    got, _ = hals_sweeps(target, A, B, **options)
    assert torch.equal(got[degenerate], target[degenerate])
    assert relative_error(got, torch_sweeps(target, A, B, **options)) <= 1e-5


# (m, n, k, side): odd shapes for the per-column early stop; under the interpreter's 128-column blocks,
# 131 and 300 columns leave a masked last block, and the W sides sweep the 97 and 150 rows of W.
EARLY_STOP_SHAPES = [(97, 131, 7, "H"), (97, 131, 7, "W"), (64, 300, 5, "H"), (150, 70, 3, "W"), (40, 50, 33, "H")]


def block_sweeps(per_column, block_n):
    """The sweep count of each block of ``block_n`` columns: the most over its columns."""
    return torch.stack([chunk.max() for chunk in per_column.split(block_n)]).to(torch.int32)


@pytest.mark.parametrize("m, n, k, side", EARLY_STOP_SHAPES, ids=[f"{m}x{n}x{k}-{side}"
                                                                    for m, n, k, side in EARLY_STOP_SHAPES])
def test_early_stop_is_per_column_as_the_torch_twin(m, n, k, side):
    # δ = 0.05: within one H the columns stop after anything from 2 sweeps to all 10 (checked below; at
    # 40x50x33 after 2 to 4), each keeping its own values.
    X, W, H = make_problem(m, n, k, device=DEVICE)
    target, A, B = products(X, W, H, side)
    options = dict(l1=0.05, l2=0.1, max_sweeps=10, delta=0.05)
    got, sweeps = hals_sweeps(target, A, B, **options)
    expected, per_column = hals_sweeps_by_column(target, A, B, **options)
    assert relative_error(got, expected) <= 1e-5, f"{side} sweeps of {(m, n, k)}"
    assert len(set(per_column.tolist())) > 1 and 2 <= int(per_column.min()) < 10, per_column.tolist()
    block_n = hals_sweep_config(target.shape[1], k, target.device).block_n  # the config hals_sweeps used
    assert torch.equal(sweeps.cpu(), block_sweeps(per_column.cpu(), block_n))


@pytest.mark.parametrize("side", ["H", pytest.param("W", marks=pytest.mark.slow)])
def test_early_stop_does_not_depend_on_the_column_blocks(side):
    # A rule per block of columns (all of a block's columns stop together) would give a different H for
    # 16-column blocks than for one block of 128 columns; per column, the split does not matter.
    X, W, H = make_problem(120, 100, 6, device=DEVICE)
    target, A, B = products(X, W, H, side)
    options = dict(l1=0.05, max_sweeps=12, delta=0.1)
    one, one_sweeps = hals_sweeps(target, A, B, config=HALSConfig(block_n=128, block_k=16), **options)
    many, many_sweeps = hals_sweeps(target, A, B, config=HALSConfig(block_n=16, block_k=16), **options)
    assert one_sweeps.shape == (1,) and many_sweeps.shape == (triton.cdiv(target.shape[1], 16),)
    assert relative_error(many, one) <= 1e-6
    assert int(one_sweeps) == int(many_sweeps.max()) and len(set(many_sweeps.tolist())) > 1
    expected, per_column = hals_sweeps_by_column(target, A, B, **options)
    assert relative_error(one, expected) <= 1e-5
    assert torch.equal(many_sweeps.cpu(), block_sweeps(per_column.cpu(), 16))


def test_an_unwritten_column_block_stays_poisoned():
    # tests/conftest.py NaN-fills what the launchers allocate (−1 for the int32 sweep counts): launching by
    # hand only the first of the two 128-column blocks of a 200-column H leaves the second one poisoned.
    X, W, H = make_problem(30, 200, 4, device=DEVICE)
    H, A, B = products(X, W, H, "H")
    out = launch.new_output(H)
    sweeps = launch.new_workspace(2, device=H.device, dtype=torch.int32)
    hals._hals_sweep_kernel[(1,)](
        H, A, B, hals_step_sizes(B, 0.0).contiguous(), out, sweeps,
        200, 4, 1,
        *H.stride(), *A.stride(), *B.stride(), *out.stride(),
        0.0, PHI, 0.0,
        EARLY_STOP=False, BLOCK_N=128, BLOCK_K=16,
    )
    assert torch.isfinite(out[:, :128]).all() and torch.isnan(out[:, 128:]).all()
    assert sweeps.tolist() == [1, -1]


@pytest.mark.parametrize("side", ["H", "W"])
def test_backend_hals_update_matches_the_torch_backend_with_its_fit(side):
    X, W, H = make_problem(97, 131, 7, device=DEVICE)
    triton_backend = make_backend("ieee")
    options = dict(l1=0.1, l2=0.2, max_sweeps=3, delta=0.0)
    update = "hals_update_h" if side == "H" else "hals_update_w"
    got, fit = getattr(triton_backend, update)(X, W, H, **options)
    expected, expected_fit = getattr(TORCH_BACKEND, update)(X, W, H, **options)
    assert relative_error(got, expected) <= 1e-5
    assert got.stride() == expected.stride()  # the W update keeps W row-major through the transposed views
    assert fit.dtype == torch.float64 and fit.dim() == 0
    assert abs(float(fit) - float(expected_fit)) <= 1e-5 * abs(float(expected_fit))
    # fit = ½‖X − W_new H_new‖² − ½‖X‖² of the new pair, in float64.
    W_new, H_new = (W, got) if side == "H" else (got, H)
    residual = X.double() - W_new.double() @ H_new.double()
    exact = 0.5 * float(residual.square().sum()) - 0.5 * float(X.double().square().sum())
    assert abs(float(fit) - exact) <= 1e-5 * abs(exact)


@pytest.mark.parametrize("side", ["H", "W"])
def test_half_precision_x_follows_the_float32_update(side):
    X, W, H = make_problem(97, 131, 7, device=DEVICE)
    options = dict(l1=0.1, max_sweeps=3, delta=0.0)
    update = "hals_update_h" if side == "H" else "hals_update_w"
    got, fit = getattr(make_backend("ieee"), update)(X.half(), W, H, **options)
    expected, expected_fit = getattr(TORCH_BACKEND, update)(X, W, H, **options)
    assert relative_error(got, expected) <= 1e-2
    assert abs(float(fit) - float(expected_fit)) <= 1e-2 * abs(float(expected_fit))


def test_inputs_are_not_modified():
    X, W, H = make_problem(40, 30, 4, device=DEVICE)
    before = (X.clone(), W.clone(), H.clone())
    backend = make_backend("ieee")
    backend.hals_update_h(X, W, H, max_sweeps=2)
    backend.hals_update_w(X, W, H, max_sweeps=2)
    for original, now in zip(before, (X, W, H)):
        assert torch.equal(original, now)


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_matmul_tn_reads_x_in_its_storage_dtype(x_dtype):
    X, W, H = make_problem(97, 131, 7, device=DEVICE, x_dtype=x_dtype)
    expected = W.double().T @ X.double()  # on the stored (rounded) values: only the fp32 accumulation differs
    got = matmul_tn(W, X)
    assert got.shape == (7, 131) and got.dtype == torch.float32 and got.is_contiguous()
    assert relative_error(got, expected) <= 1e-5
    # Column-major W, the split m loop, and the W update's H Xᵀ through transposed views of H and X.
    assert relative_error(matmul_tn(W.T.contiguous().T, X), expected) <= 1e-5
    split = MUConfig(block_m=16, block_n=64, block_k=16, split_m=3)
    assert relative_error(matmul_tn(W, X, config=split), expected) <= 1e-5
    assert relative_error(matmul_tn(H.T, X.T), H.double() @ X.double().T) <= 1e-5


def test_matmul_tn_covers_a_rank_above_one_tile():
    # k = 40 with 16-wide rank tiles: three consecutive programs per column tile (rank fastest on axis 0),
    # with and without the split of the m loop.
    X, W, _ = make_problem(70, 50, 40, device=DEVICE)
    expected = W.double().T @ X.double()
    for split_m in (1, 3):
        got = matmul_tn(W, X, config=MUConfig(block_m=16, block_n=32, block_k=16, split_m=split_m))
        assert relative_error(got, expected) <= 1e-5


def test_checks_name_the_shapes():
    X, W, H = make_problem(20, 30, 4, device=DEVICE)
    _, A, B = products(X, W, H, "H")
    with pytest.raises(ValueError, match=r"H \(4, 30\), A \(4, 29\), B \(4, 4\)"):
        hals_sweeps(H, A[:, :29], B)
    with pytest.raises(TypeError, match=r"A \(4, 30\) has dtype torch.float64"):
        hals_sweeps(H, A.double(), B)
    with pytest.raises(ValueError, match="max_sweeps = 0"):
        hals_sweeps(H, A, B, max_sweeps=0)
    with pytest.raises(ValueError, match="delta = -1.0"):
        hals_sweeps(H, A, B, delta=-1.0)
    big = torch.zeros(MAX_HALS_RANK + 1, 3, device=DEVICE)
    with pytest.raises(ValueError, match=f"rank {MAX_HALS_RANK + 1} is above"):
        hals_sweeps(big, big, torch.zeros(MAX_HALS_RANK + 1, MAX_HALS_RANK + 1, device=DEVICE))
    with pytest.raises(ValueError, match=r"W \(20, 4\), X \(19, 30\)"):
        matmul_tn(W, X[:19])
    with pytest.raises(TypeError, match=r"W \(20, 4\) has dtype torch.float16"):
        matmul_tn(W.half(), X)
    with pytest.raises(ValueError, match=r"X \(20, 30\), W \(20, 4\), H \(5, 30\)"):
        make_backend("ieee").hals_update_h(X, W, torch.ones(5, 30, device=DEVICE))


def test_ranks_above_the_fused_limit_sweep_with_torch_on_the_triton_products():
    X, W, H = make_problem(6, 5, MAX_HALS_RANK + 1, device=DEVICE)
    got, fit = make_backend("ieee").hals_update_h(X, W, H, max_sweeps=2, delta=0.0)
    expected, expected_fit = TORCH_BACKEND.hals_update_h(X, W, H, max_sweeps=2, delta=0.0)
    assert relative_error(got, expected) <= 1e-5
    assert abs(float(fit) - float(expected_fit)) <= 1e-5 * abs(float(expected_fit))


def test_empty_columns():
    X, W, H = make_problem(10, 0, 3, device=DEVICE)
    H_new, fit = make_backend("ieee").hals_update_h(X, W, H, max_sweeps=2)
    assert H_new.shape == (3, 0) and float(fit) == 0.0


def test_cost_formulas():
    bytes32, flops = matmul_tn_cost(1000, 2000, 16, 4)
    bytes16, _ = matmul_tn_cost(1000, 2000, 16, 2)
    assert bytes32 - bytes16 == 1000 * 2000 * 2 and flops == 2 * 1000 * 2000 * 16
    one, _ = hals_sweeps_cost(2000, 16, 1)
    three, flops3 = hals_sweeps_cost(2000, 16, 3)
    assert one == three and flops3 >= 3 * 2 * 16 * 16 * 2000  # H once in, once out, whatever the sweeps


def _data(m=24, n=20, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    W, H = torch.rand(m, k, generator=g), torch.rand(k, n, generator=g)
    return (W @ H + 0.05 * torch.rand(m, n, generator=g)).to(DEVICE)


# Small enough for the interpreter. The inner sweep count is fixed (4 = Gillis & Glineur's 1 + ⌊ρ/2⌋ at
# 24×20, k = 3): with inner_iter="auto" the torch backend counts a per-row launch cost the fused kernel
# does not have, so the two backends would run different numbers of sweeps.
FIT = dict(n_components=3, solver="hals", max_iter=10, tol=0.0, check_every=2, init="random", random_state=0,
           inner_iter=4)


@pytest.mark.slow  # whole fits under the interpreter (~0.7 s each on 2 cores)
@pytest.mark.parametrize("extrapolate", [False, True], ids=["a-hals", "extrapolated"])
def test_full_hals_fit_matches_the_torch_backend(extrapolate):
    # The fused sweep's early stop is the torch backend's per-column rule, whatever the column blocks, so
    # the curves agree to rounding with the default δ = 0.1.
    X = _data()
    options = dict(FIT, alpha_W=0.01, l1_ratio=0.5, extrapolate=extrapolate)
    torch_fit = NMF(backend="torch", **options).fit(X)
    triton_fit = NMF(backend="triton", **options).fit(X)
    assert len(triton_fit.loss_history_) == len(torch_fit.loss_history_) == 6
    np.testing.assert_allclose(triton_fit.loss_history_, torch_fit.loss_history_, rtol=1e-4)
    assert triton_fit.components_.dtype == torch.float32


@pytest.mark.slow
def test_full_hals_fit_on_half_precision_x():
    # The torch backend's HALS cannot take fp16 X with fp32 factors (W.T @ X); the triton GEMM reads it as is.
    X = _data()
    reference = NMF(backend="torch", **FIT).fit(X.half().float())
    half = NMF(backend="triton", **FIT).fit(X.half())
    np.testing.assert_allclose(half.loss_history_, reference.loss_history_, rtol=1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("side", ["H", "W"])
@pytest.mark.parametrize("k", [16, 100, 300])
def test_gpu_configs_match_the_torch_sweep(side, k):
    X, W, H = make_problem(3000, 2500, k, device=DEVICE)
    target, A, B = products(X, W, H, side)
    options = dict(l1=0.1, l2=0.1, max_sweeps=4, delta=0.0)
    got, _ = hals_sweeps(target, A, B, **options)
    assert relative_error(got, torch_sweeps(target, A, B, **options)) <= 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("x_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("precision", ["ieee", "tf32"])
def test_gpu_half_x_and_tf32_products(x_dtype, precision):
    X, W, H = make_problem(3000, 2500, 64, device=DEVICE)
    got, _ = make_backend(precision).hals_update_h(X.to(x_dtype), W, H, max_sweeps=3, delta=0.0)
    expected, _ = TORCH_BACKEND.hals_update_h(X.double(), W.double(), H.double(), max_sweeps=3, delta=0.0)
    assert relative_error(got, expected) <= 1e-2
