"""The fused Frobenius MU kernel (fastnmf.kernels.mu_frobenius) against the autograd reference, one step."""

import pytest
import torch

from fastnmf.kernels import MUConfig, mu_frobenius_cost, mu_frobenius_update_h
from fastnmf.kernels.testing import eps_r_for, make_problem, reference_update, relative_error

pytestmark = pytest.mark.interpreter  # the kernels run under the Triton interpreter without CUDA

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# (m, n, k): a single entry, odd sizes that leave masked remainders in every tile, m > tile with a rank
# above one tile of 32, n over several column tiles, k = 1, k = 20.
SHAPES = [(1, 1, 1), (97, 131, 7), (300, 64, 33), (64, 300, 5), (150, 70, 1), (80, 130, 20)]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def step(X, W, H, side, **options):
    """One update of ``side`` ("H", or "W" via the transposed views, exactly as Backend.mu_update_w)."""
    if side == "H":
        return mu_frobenius_update_h(X, W, H, **options)
    return mu_frobenius_update_h(X.T, H.T, W.T, **options).T


def check_against_reference(m, n, k, side, x_dtype, l1=0.0, l2=0.0, precision="ieee", tolerance=None, config=None):
    X, W, H = make_problem(m, n, k, device=DEVICE)
    eps_r = eps_r_for(X)
    expected = reference_update(X, W, H, beta=2.0, side=side, l1=l1, l2=l2, eps_r=eps_r)
    got = step(X.to(x_dtype), W, H, side, l1=l1, l2=l2, precision=precision, config=config)
    assert got.dtype == torch.float32 and got.device == X.device
    error = relative_error(got, expected)
    assert error <= (tolerance or TOLERANCE[x_dtype]), f"{side} update of {(m, n, k)}: relative error {error:.2e}"
    return error


@pytest.mark.parametrize("side", ["H", "W"])
@pytest.mark.parametrize("m, n, k", SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in SHAPES])
def test_one_step_matches_reference(m, n, k, side):
    check_against_reference(m, n, k, side, torch.float32)


@pytest.mark.parametrize("side", ["H", "W"])
@pytest.mark.parametrize("m, n, k", [(97, 131, 7), (64, 300, 5)], ids=["97x131x7", "64x300x5"])
def test_one_step_with_l1_l2_matches_reference(m, n, k, side):
    check_against_reference(m, n, k, side, torch.float32, l1=0.3, l2=0.7)


@pytest.mark.parametrize("side", ["H", "W"])
def test_fp16_x_matches_reference_on_unrounded_data(side):
    # The reference sees the fp32 data; the kernel reads X stored in fp16 (rounding ≈ 5e-4 relative).
    check_against_reference(97, 131, 7, side, torch.float16, l1=0.1)


@pytest.mark.parametrize("side", ["H", "W"])
def test_split_m_path_matches_reference(side):
    # Force the split of the m loop (partial sums + finalize pass), used on a GPU when n is small.
    config = MUConfig(block_m=32, block_n=64, block_k=32, split_m=3)
    check_against_reference(200, 90, 20, side, torch.float32, l1=0.1, l2=0.2, config=config)


def test_rank_tiles_cover_a_rank_above_one_tile():
    # k = 40 with 16-wide rank tiles: three programs per column tile, Gram product over three chunks.
    config = MUConfig(block_m=64, block_n=32, block_k=16)
    check_against_reference(70, 50, 40, "H", torch.float32, l2=0.5, config=config)


def test_zero_column_of_w_and_zero_row_of_x_follow_the_safeguard_rule():
    X, W, H = make_problem(60, 50, 6, device=DEVICE)
    W[:, 2] = 0.0  # row 2 of H: numerator and denominator are both 0 → ratio 0 → factor floor
    X[7, :] = 0.0  # row 7 of W: numerator 0
    eps_r = eps_r_for(X)
    for side in ("H", "W"):
        got = step(X, W, H, side)
        expected = reference_update(X, W, H, beta=2.0, side=side, eps_r=eps_r)
        assert torch.isfinite(got).all(), f"{side} update produced NaN/Inf"
        assert relative_error(got, expected) <= 1e-5
    phi = torch.finfo(torch.float32).tiny ** 0.5
    got_h = step(X, W, H, "H")
    assert torch.all(got_h[2] == torch.tensor(phi, dtype=torch.float32))


def test_transposed_x_storage_and_output_layout():
    X, W, H = make_problem(90, 70, 5, device=DEVICE)
    expected = reference_update(X, W, H, beta=2.0, side="H", eps_r=eps_r_for(X))
    X_column_major = X.T.contiguous().T  # same values, strides (1, m)
    got = mu_frobenius_update_h(X_column_major, W, H)
    assert relative_error(got, expected) <= 1e-5
    # The W update writes into the caller's layout of W (row-major here), no copy back.
    new_w = step(X, W, H, "W")
    assert new_w.shape == W.shape and new_w.stride() == W.stride()


def test_inputs_are_not_modified():
    X, W, H = make_problem(40, 30, 4, device=DEVICE)
    before = (X.clone(), W.clone(), H.clone())
    step(X, W, H, "H")
    step(X, W, H, "W")
    for original, now in zip(before, (X, W, H)):
        assert torch.equal(original, now)


def test_cost_formula_counts_the_x_stream_and_the_products():
    bytes32, flops = mu_frobenius_cost(1000, 2000, 16, 4)
    bytes16, _ = mu_frobenius_cost(1000, 2000, 16, 2)
    assert bytes32 - bytes16 == 1000 * 2000 * 2
    assert flops >= 2 * 1000 * 2000 * 16


@pytest.mark.gpu
@pytest.mark.parametrize("side", ["H", "W"])
def test_bf16_x_on_gpu(side):
    check_against_reference(300, 257, 33, side, torch.bfloat16, l1=0.1)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["tf32", "tf32x3"])
def test_tf32_on_gpu(precision):
    check_against_reference(1000, 700, 64, "H", torch.float32, precision=precision, tolerance=3e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("side", ["H", "W"])
def test_large_shape_with_the_gpu_configs(side):
    # The heuristic configs (several column tiles, split-m when n is small, rank tiles above 128).
    check_against_reference(3000, 300, 150, side, torch.float16)
