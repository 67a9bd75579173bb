"""The fused KL / IS / general-β MU kernel (fastnmf.kernels.mu_beta) against the autograd reference."""

import pytest
import torch

from fastnmf.kernels import MUConfig, mu_beta_cost, mu_beta_update_h
from fastnmf.kernels.configs import MAX_BETA_RANK
from fastnmf.kernels.testing import eps_r_for, make_problem, reference_update, relative_error

pytestmark = pytest.mark.interpreter  # the kernels run under the Triton interpreter without CUDA

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

BETAS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
# (m, n, k, l1, l2): the regularization alternates over the shapes so that every β meets both.
CASES = [
    (1, 1, 1, 0.0, 0.0),
    (97, 131, 7, 0.2, 0.5),
    (300, 64, 33, 0.0, 0.0),
    (64, 300, 5, 0.1, 0.0),
    (150, 70, 1, 0.0, 0.3),
    (80, 130, 20, 0.0, 0.0),
]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def step(X, W, H, side, **options):
    """One update of ``side`` ("H", or "W" via the transposed views, exactly as Backend.mu_update_w)."""
    if side == "H":
        return mu_beta_update_h(X, W, H, **options)
    return mu_beta_update_h(X.T, H.T, W.T, **options).T


def check_against_reference(m, n, k, beta, side, x_dtype, l1=0.0, l2=0.0, precision="ieee", tolerance=None,
                            config=None, problem=None):
    X, W, H = problem or make_problem(m, n, k, device=DEVICE)
    eps_r = eps_r_for(X)
    expected = reference_update(X, W, H, beta=beta, side=side, l1=l1, l2=l2, eps_r=eps_r)
    got = step(X.to(x_dtype), W, H, side, beta=beta, eps_r=eps_r, l1=l1, l2=l2, precision=precision,
               config=config)
    assert got.dtype == torch.float32 and got.device == X.device
    error = relative_error(got, expected)
    assert error <= (tolerance or TOLERANCE[x_dtype]), (
        f"β={beta} {side} update of {(m, n, k)}: relative error {error:.2e}"
    )
    return error


@pytest.mark.parametrize("side", ["H", "W"])
@pytest.mark.parametrize("m, n, k, l1, l2", CASES, ids=[f"{m}x{n}x{k}" + ("-reg" if l1 or l2 else "")
                                                        for m, n, k, l1, l2 in CASES])
@pytest.mark.parametrize("beta", BETAS, ids=[f"beta={b:g}" for b in BETAS])
def test_one_step_matches_reference(beta, m, n, k, l1, l2, side):
    check_against_reference(m, n, k, beta, side, torch.float32, l1=l1, l2=l2)


@pytest.mark.parametrize("beta", [-0.5, 2.5], ids=["beta=-0.5", "beta=2.5"])
def test_other_betas_use_the_general_path(beta):
    # β < 0 (x^β terms, γ = 1/(2−β)) and 1 < 2 < β < 3 (no floor, R^(β−2) with 0 < β−2 < 1).
    check_against_reference(97, 131, 7, beta, "H", torch.float32, l1=0.1)


@pytest.mark.parametrize("beta", [0.0, 1.0, 1.5], ids=["IS", "KL", "beta=1.5"])
def test_fp16_x_matches_reference_on_unrounded_data(beta):
    # The reference sees the fp32 data; the kernel reads X stored in fp16.
    check_against_reference(97, 131, 7, beta, "H", torch.float16)


@pytest.mark.parametrize("beta", [0.0, 1.0, 3.0], ids=["IS", "KL", "beta=3"])
@pytest.mark.parametrize("side", ["H", "W"])
def test_split_m_path_matches_reference(beta, side):
    # Force the split of the m loop (partial sums + finalize pass); KL's partial column sums are written
    # once per split and broadcast along n with a stride-0 view.
    config = MUConfig(block_m=32, block_n=64, block_k=32, split_m=3)
    check_against_reference(200, 90, 20, beta, side, torch.float32, l1=0.1, l2=0.2, config=config)


@pytest.mark.parametrize("beta", BETAS, ids=[f"beta={b:g}" for b in BETAS])
def test_zero_column_of_w_and_zero_row_of_x_follow_the_safeguard_rule(beta):
    X, W, H = make_problem(60, 50, 6, device=DEVICE)
    W[:, 2] = 0.0  # row 2 of H: numerator and denominator 0 → ratio 0, never 0/0 (KL: colsum 0)
    X[7, :] = 0.0  # row 7 of W: numerator 0, and R floored where WH is small
    for side in ("H", "W"):
        error = check_against_reference(60, 50, 6, beta, side, torch.float32, problem=(X, W, H))
        assert error <= 1e-5
    phi = torch.finfo(torch.float32).tiny ** 0.5
    got_h = step(X, W, H, "H", beta=beta, eps_r=eps_r_for(X))
    assert torch.all(got_h[2] == torch.tensor(phi, dtype=torch.float32))


def test_all_zero_x_gives_finite_factors():
    # eps_r falls back to eps(fp32); every numerator is 0 and every entry lands on the factor floor.
    X = torch.zeros(40, 30, device=DEVICE)
    _, W, H = make_problem(40, 30, 3, device=DEVICE)
    for beta in (0.0, 1.0, 0.5):
        got = mu_beta_update_h(X, W, H, beta=beta, eps_r=eps_r_for(X))
        assert torch.isfinite(got).all()
        assert torch.all(got == torch.tensor(torch.finfo(torch.float32).tiny ** 0.5))


def test_rank_above_the_on_chip_limit_is_refused_with_the_shapes():
    X, W, H = make_problem(4, 5, MAX_BETA_RANK + 1, device=DEVICE)
    with pytest.raises(ValueError, match=rf"k = {MAX_BETA_RANK + 1}.*W \(4, {MAX_BETA_RANK + 1}\)"):
        mu_beta_update_h(X, W, H, beta=1.0, eps_r=1e-7)


def test_cost_formula_counts_the_x_stream_and_the_products():
    bytes32, flops_kl = mu_beta_cost(1000, 2000, 16, 4, 1.0)
    bytes16, flops_is = mu_beta_cost(1000, 2000, 16, 2, 0.0)
    assert bytes32 - bytes16 == 1000 * 2000 * 2
    assert flops_is > flops_kl >= 4 * 1000 * 2000 * 16  # KL's denominator is a column sum, not a GEMM


@pytest.mark.gpu
@pytest.mark.parametrize("beta", [0.0, 1.0, 1.5], ids=["IS", "KL", "beta=1.5"])
def test_bf16_x_on_gpu(beta):
    check_against_reference(300, 257, 33, beta, "W", torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["tf32", "tf32x3"])
@pytest.mark.parametrize("beta", [0.0, 1.0], ids=["IS", "KL"])
def test_tf32_on_gpu(beta, precision):
    check_against_reference(1000, 700, 64, beta, "H", torch.float32, precision=precision, tolerance=3e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("k", [10, 150, 300])
@pytest.mark.parametrize("beta", [0.0, 1.0, 1.5], ids=["IS", "KL", "beta=1.5"])
def test_large_shapes_with_the_gpu_configs(beta, k):
    # The heuristic configs: split-m for a short n, the shrinking tiles for the larger ranks.
    check_against_reference(3000, 300, k, beta, "H", torch.float16)
