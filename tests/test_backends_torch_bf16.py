"""fastnmf.backends.torch_bf16: precision="bf16" computes the KL MU's m×n work on dense X in bfloat16."""

import numpy as np
import pytest
import torch

import fastnmf
from fastnmf.backends import resolve_backend
from fastnmf.backends.torch_bf16 import BFloat16KLRule
from fastnmf.layouts import DenseMatrix, SparseMatrix
from fastnmf.updates import MURule
from low_rank import low_rank_counts


def _problem(m=60, n=40, k=4, seed=0):
    X = torch.from_numpy(low_rank_counts((m, n), k, seed).astype(np.float32))
    g = torch.Generator().manual_seed(seed)
    return X, torch.rand(m, k, generator=g) + 0.1, torch.rand(k, n, generator=g) + 0.1


def test_kl_statistics_are_the_fp32_ones_to_bfloat16_rounding_for_both_factors():
    X, W, H = _problem()
    before = X.clone()
    layout = DenseMatrix(X)
    for data, left, right in ((layout, W, H), (layout.T, H.T, W.T)):  # the H update, then the W update
        fast = BFloat16KLRule(1.0, eps_r=1e-9).statistics(data, left, right)
        exact = MURule(1.0, eps_r=1e-9).statistics(data, left, right)
        assert fast.numerator.dtype == torch.float32
        torch.testing.assert_close(fast.numerator, exact.numerator, rtol=2e-2, atol=0)
        assert torch.equal(fast.denominator, exact.denominator)  # Wᵀ1 stays fp32
    assert torch.equal(X, before)
    assert len(layout.workspace._copies) == 1  # X and Xᵀ share one bfloat16 copy


@pytest.mark.parametrize("beta, sparse", [(2.0, False), (0.5, False), (1.0, True)])
def test_other_losses_and_sparse_x_keep_the_fp32_rule(beta, sparse):
    X, W, H = _problem()
    if sparse:
        rows, cols = X.nonzero(as_tuple=True)
        layout = SparseMatrix.from_coo(rows, cols, X[rows, cols], tuple(X.shape))
    else:
        layout = DenseMatrix(X)
    fast = BFloat16KLRule(beta, eps_r=1e-9).statistics(layout, W, H)
    exact = MURule(beta, eps_r=1e-9).statistics(layout, W, H)
    for name in ("numerator", "denominator", "gram"):
        a, b = getattr(fast, name), getattr(exact, name)
        assert (a is None and b is None) or torch.equal(a, b)


def test_a_bf16_fit_ends_where_the_fp32_fit_does():
    X, _, _ = _problem(200, 90, 5, seed=3)
    losses = {}
    for precision in ("auto", "bf16"):
        model = fastnmf.NMF(5, beta_loss="kullback-leibler", solver="mu", init="random", random_state=0,
                            max_iter=400, tol=0.0, precision=precision).fit(X.numpy())
        losses[precision] = model.loss_history_[-1]
        assert model.components_.dtype == np.float32 and np.isfinite(model.components_).all()
    assert abs(losses["bf16"] - losses["auto"]) <= 1e-3 * losses["auto"]


def test_bf16_is_a_mode_of_the_torch_backend_only():
    X = DenseMatrix(torch.rand(5, 4))
    assert resolve_backend("torch", X, "bf16").mu_rule is BFloat16KLRule
    assert resolve_backend("auto", X, "auto").mu_rule is MURule
    with pytest.raises(ValueError, match="precision='bf16' is a mode of the torch backend"):
        resolve_backend("triton", X, "bf16")
    with pytest.raises(ValueError, match=r"Invalid precision 'fp8'.*'bf16'"):
        resolve_backend("torch", X, "fp8")
