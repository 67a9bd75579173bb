"""fastnmf.backends.triton_backend: the kernels as update rules, against the torch backend."""

import numpy as np
import pytest
import torch

from fastnmf import NMF
from fastnmf.backends import Backend, resolve_backend, torch_backend
from fastnmf.backends.triton_backend import make_dense_backend
from fastnmf.kernels.testing import eps_r_for, make_problem, relative_error
from fastnmf.layouts import DenseMatrix

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _Ops:
    """Half-updates of a backend on dense X, as the solvers run them (``Layout.update_h`` / ``update_w``)."""

    def __init__(self, backend):
        self.backend, self.name, self.native_x_dtypes = backend, backend.name, backend.native_x_dtypes

    def mu_update_h(self, X, W, H, *, beta, l1=0.0, l2=0.0, eps_r):
        return DenseMatrix(X).update_h(self.backend.mu_rule(beta, l1, l2, eps_r=eps_r), W, H)[0]

    def mu_update_w(self, X, W, H, *, beta, l1=0.0, l2=0.0, eps_r):
        return DenseMatrix(X).update_w(self.backend.mu_rule(beta, l1, l2, eps_r=eps_r), W, H)[0]

    def objective(self, X, W, H, **options):
        return self.backend.objective(DenseMatrix(X), W, H, **options)


def make_backend(precision):
    return _Ops(make_dense_backend(precision))


TORCH_BACKEND = _Ops(torch_backend.make_backend())


def test_make_backend_returns_the_triton_backend():
    backend = make_dense_backend("ieee")
    assert isinstance(backend, Backend) and backend.name == "triton"
    assert backend.native_x_dtypes == (torch.float32, torch.float16, torch.bfloat16)
    with pytest.raises(ValueError, match="Invalid precision 'fp16'"):
        make_dense_backend("fp16")


def test_resolve_backend_gives_triton_on_this_machine():
    # On a CPU-only machine this needs the interpreter, which tests/conftest.py turns on.
    backend = resolve_backend("triton", DenseMatrix(torch.ones(2, 2, device=DEVICE)), "ieee")
    assert backend.name == "triton"


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0, 3.0], ids=["IS", "beta=0.5", "KL", "frobenius", "beta=3"])
def test_updates_and_objective_match_the_torch_backend_in_float64(beta):
    backend = make_backend("ieee")
    X, W, H = make_problem(97, 131, 7, device=DEVICE)
    eps_r = eps_r_for(X)
    options = dict(beta=beta, l1=0.1, l2=0.2, eps_r=eps_r)
    X64, W64, H64 = X.double(), W.double(), H.double()
    assert relative_error(backend.mu_update_h(X, W, H, **options),
                          TORCH_BACKEND.mu_update_h(X64, W64, H64, **options)) <= 1e-5
    assert relative_error(backend.mu_update_w(X, W, H, **options),
                          TORCH_BACKEND.mu_update_w(X64, W64, H64, **options)) <= 1e-5
    got = backend.objective(X, W, H, beta=beta, eps_r=eps_r)
    expected = TORCH_BACKEND.objective(X64, W64, H64, beta=beta, eps_r=eps_r)
    assert got.dtype == torch.float64 and got.dim() == 0
    assert abs(float(got) - float(expected)) <= 1e-5 * abs(float(expected))


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0], ids=["IS", "KL", "frobenius"])
def test_alternating_updates_never_increase_the_objective(beta):
    # The MM property of MU (Févotte & Idier 2011), which the safeguard rule keeps: ten half-iterations.
    backend = make_backend("ieee")
    X, W, H = make_problem(80, 60, 4, device=DEVICE)
    eps_r = eps_r_for(X)
    losses = [float(backend.objective(X, W, H, beta=beta, eps_r=eps_r))]
    for _ in range(5):
        H = backend.mu_update_h(X, W, H, beta=beta, eps_r=eps_r)
        losses.append(float(backend.objective(X, W, H, beta=beta, eps_r=eps_r)))
        W = backend.mu_update_w(X, W, H, beta=beta, eps_r=eps_r)
        losses.append(float(backend.objective(X, W, H, beta=beta, eps_r=eps_r)))
    assert all(later <= earlier * (1 + 1e-6) for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.9 * losses[0]
    assert W.stride() == (W.shape[1], 1)  # the W update kept W row-major through the transposed views


@pytest.mark.parametrize("beta", [1.0, 2.0], ids=["KL", "frobenius"])
def test_a_few_iterations_track_the_torch_backend(beta):
    triton_backend = make_backend("ieee")
    X, W0, H0 = make_problem(64, 50, 5, device=DEVICE)
    eps_r = eps_r_for(X)
    runs = {}
    for name, backend in (("triton", triton_backend), ("torch", TORCH_BACKEND)):
        W, H = W0.clone(), H0.clone()
        for _ in range(4):
            H = backend.mu_update_h(X, W, H, beta=beta, eps_r=eps_r)
            W = backend.mu_update_w(X, W, H, beta=beta, eps_r=eps_r)
        runs[name] = (W, H, float(backend.objective(X, W, H, beta=beta, eps_r=eps_r)))
    assert relative_error(runs["triton"][0], runs["torch"][0]) <= 1e-4
    assert relative_error(runs["triton"][1], runs["torch"][1]) <= 1e-4
    assert abs(runs["triton"][2] - runs["torch"][2]) <= 1e-5 * runs["torch"][2]


# --- full fits on the Triton backend (interpreted here, compiled on a GPU) follow the torch backend ------


def _data(m=50, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    W, H = torch.rand(m, 4, generator=g), torch.rand(4, n, generator=g)
    return (W @ H + 0.05 * torch.rand(m, n, generator=g)).to(DEVICE)


@pytest.mark.parametrize("beta_loss", ["frobenius", "kullback-leibler", 0.5, "itakura-saito"])
def test_loss_curve_matches_the_torch_backend(beta_loss):
    X = _data()
    options = dict(n_components=4, solver="mu", beta_loss=beta_loss, max_iter=30, tol=0.0, check_every=5,
                   init="random", random_state=0, alpha_W=0.01, l1_ratio=0.5)
    torch_fit = NMF(backend="torch", **options).fit(X)
    triton_fit = NMF(backend="triton", **options).fit(X)
    assert len(triton_fit.loss_history_) == len(torch_fit.loss_history_) == 7
    np.testing.assert_allclose(triton_fit.loss_history_, torch_fit.loss_history_, rtol=1e-4)
    assert triton_fit.components_.dtype == torch.float32


def test_half_precision_x_tracks_float32_on_the_triton_backend():
    X = _data()
    options = dict(n_components=4, solver="mu", beta_loss="kullback-leibler", max_iter=20, tol=0.0, check_every=5,
                   init="random", random_state=0)
    reference = NMF(backend="torch", **options).fit(X.half().float())
    half = NMF(backend="triton", **options).fit(X.half())
    np.testing.assert_allclose(half.loss_history_, reference.loss_history_, rtol=1e-2)


def test_beta_updates_above_the_fused_rank_cap_run_the_torch_rule(monkeypatch):
    from fastnmf.backends import triton_backend
    from fastnmf.kernels import mu_beta as kernel_module

    monkeypatch.setattr(triton_backend, "MAX_FUSED_BETA_RANK", 4)
    calls = []
    original = kernel_module.mu_beta_update_h
    monkeypatch.setattr("fastnmf.kernels.mu_beta_update_h", lambda *a, **k: calls.append(a[1].shape[1]) or original(*a, **k))
    backend = make_backend("ieee")
    for k in (4, 5):
        X, W, H = make_problem(40, 30, k, device=DEVICE)
        got = backend.mu_update_h(X, W, H, beta=1.0, eps_r=eps_r_for(X))
        expected = TORCH_BACKEND.mu_update_h(X.double(), W.double(), H.double(), beta=1.0, eps_r=eps_r_for(X))
        assert relative_error(got, expected) <= 1e-5
    assert calls == [4]  # rank 5 went to the torch rule, rank 4 to the kernel


@pytest.mark.parametrize("precision", ["tf32", "tf32x3"])
def test_the_objective_is_always_full_fp32(monkeypatch, precision):
    from fastnmf import kernels

    seen = []
    real = kernels.factorization_divergence
    monkeypatch.setattr(kernels, "factorization_divergence",
                        lambda *a, **k: seen.append(k["precision"]) or real(*a, **k))
    X, W, H = make_problem(20, 15, 3, device=DEVICE)
    make_dense_backend(precision).objective(DenseMatrix(X), W, H, beta=1.0, eps_r=eps_r_for(X))
    assert seen == ["ieee"]
