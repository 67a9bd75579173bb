"""The tiled β-divergence kernel (fastnmf.kernels.objective) against fastnmf.losses.beta_divergence."""

import pytest
import torch

from fastnmf.kernels import ObjectiveConfig, factorization_divergence, factorization_divergence_cost
from fastnmf.kernels.testing import eps_r_for, make_problem
from fastnmf.losses import beta_divergence

pytestmark = pytest.mark.interpreter  # the kernels run under the Triton interpreter without CUDA

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

BETAS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, -0.5]
SHAPES = [(1, 1, 1), (97, 131, 7), (300, 64, 33), (64, 300, 5), (80, 130, 20)]


def expected_divergence(X, W, H, beta, eps_r):
    """The definition, in float64 on the CPU, with the fp32 data the kernel reads."""
    return beta_divergence(X.double().cpu(), W.double().cpu() @ H.double().cpu(), beta, eps_r=eps_r)


def relative_difference(got, expected):
    assert got.dtype == torch.float64 and got.dim() == 0
    return abs(float(got) - float(expected)) / max(abs(float(expected)), 1e-300)


@pytest.mark.parametrize("m, n, k", SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in SHAPES])
@pytest.mark.parametrize("beta", BETAS, ids=[f"beta={b:g}" for b in BETAS])
def test_matches_beta_divergence(beta, m, n, k):
    X, W, H = make_problem(m, n, k, device=DEVICE)  # ~10 % exact zeros: 0·log 0, dropped IS terms
    eps_r = eps_r_for(X)
    got = factorization_divergence(X, W, H, beta=beta, eps_r=eps_r)
    assert got.device == X.device
    assert relative_difference(got, expected_divergence(X, W, H, beta, eps_r)) <= 1e-5


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0, 1.5], ids=["IS", "KL", "frobenius", "beta=1.5"])
def test_transposed_views_and_fp16_x(beta):
    X, W, H = make_problem(90, 110, 6, device=DEVICE)
    eps_r = eps_r_for(X)
    # D(Xᵀ | Hᵀ Wᵀ) = D(X | WH): the kernel reads the transposed views through their strides.
    got = factorization_divergence(X.T, H.T, W.T, beta=beta, eps_r=eps_r)
    assert relative_difference(got, expected_divergence(X, W, H, beta, eps_r)) <= 1e-5
    X16 = X.half()
    got16 = factorization_divergence(X16, W, H, beta=beta, eps_r=eps_r)
    assert relative_difference(got16, expected_divergence(X16.float(), W, H, beta, eps_r)) <= 1e-5


def test_rank_chunks_and_small_tiles():
    # Several rank chunks (k = 40 over 16-wide chunks) and many small tiles of X.
    X, W, H = make_problem(70, 50, 40, device=DEVICE)
    eps_r = eps_r_for(X)
    config = ObjectiveConfig(block_m=32, block_n=16, block_k=16)
    for beta in (1.0, 2.0, 0.5):
        got = factorization_divergence(X, W, H, beta=beta, eps_r=eps_r, config=config)
        assert relative_difference(got, expected_divergence(X, W, H, beta, eps_r)) <= 1e-5


def test_floor_applies_where_wh_vanishes():
    # A zero column of W and a zero row of H make WH exactly 0 on a block: the floor eps_r keeps the
    # KL / IS terms finite, exactly as the definition with eps_r does.
    X, W, H = make_problem(60, 40, 4, device=DEVICE)
    W[:10] = 0.0
    eps_r = eps_r_for(X)
    for beta in (0.0, 1.0, 0.5):
        got = factorization_divergence(X, W, H, beta=beta, eps_r=eps_r)
        assert torch.isfinite(got)
        assert relative_difference(got, expected_divergence(X, W, H, beta, eps_r)) <= 1e-5


def test_empty_x_has_zero_divergence():
    X, W, H = make_problem(0, 5, 2, device=DEVICE)
    assert float(factorization_divergence(X, W, H, beta=1.0, eps_r=1e-7)) == 0.0


def test_cost_formula():
    bytes32, flops = factorization_divergence_cost(100, 200, 8, 4)
    bytes16, _ = factorization_divergence_cost(100, 200, 8, 2)
    assert bytes32 - bytes16 == 100 * 200 * 2 and flops >= 2 * 100 * 200 * 8


@pytest.mark.gpu
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0], ids=["IS", "KL", "frobenius"])
def test_bf16_x_on_gpu(beta):
    X, W, H = make_problem(500, 300, 16, device=DEVICE)
    eps_r = eps_r_for(X)
    Xb = X.bfloat16()
    got = factorization_divergence(Xb, W, H, beta=beta, eps_r=eps_r)
    assert relative_difference(got, expected_divergence(Xb.float(), W, H, beta, eps_r)) <= 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0], ids=["IS", "KL", "frobenius"])
def test_tf32_on_gpu(beta):
    X, W, H = make_problem(1000, 700, 64, device=DEVICE)
    eps_r = eps_r_for(X)
    got = factorization_divergence(X, W, H, beta=beta, eps_r=eps_r, precision="tf32")
    assert relative_difference(got, expected_divergence(X, W, H, beta, eps_r)) <= 3e-3
