"""Backend dispatch: one place decides; clear errors when Triton cannot run."""

import pytest
import torch

from fastnmf import ops


def test_torch_backend_by_name_and_auto_on_cpu():
    assert ops.resolve_backend("torch", torch.device("cpu")).name == "torch"
    assert ops.resolve_backend("auto", torch.device("cpu")).name == "torch"


def test_triton_on_cpu_without_the_interpreter_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ops.resolve_backend("triton", torch.device("cpu"))


def test_float64_data_stays_on_the_torch_backend():
    # The Triton kernels compute with float32 factors: "auto" keeps float64 data on torch, and an explicit
    # "triton" says what to do instead of silently changing the dtype.
    assert ops.resolve_backend("auto", torch.device("cpu"), dtype=torch.float64).name == "torch"
    with pytest.raises(TypeError, match="backend='triton' computes with float32 factors, but X is float64"):
        ops.resolve_backend("triton", torch.device("cpu"), dtype=torch.float64)


def test_sparse_data_gets_the_sparse_backends():
    # The interpreter is on in the tests (conftest): "triton" resolves on the CPU.
    cpu = torch.device("cpu")
    assert ops.resolve_backend("torch", cpu, data="sparse").name == "torch-sparse"
    assert ops.resolve_backend("auto", cpu, data="sparse").name == "torch-sparse"
    assert ops.resolve_backend("triton", cpu, data="sparse").name == "triton-sparse"
    with pytest.raises(TypeError, match="backend='triton' computes with float32 factors, but X is float64"):
        ops.resolve_backend("triton", cpu, dtype=torch.float64, data="sparse")


def test_sparse_triton_on_cpu_without_the_interpreter_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ops.resolve_backend("triton", torch.device("cpu"), data="sparse")


def test_auto_picks_the_triton_sparse_backend_for_cuda_data(monkeypatch):
    # No GPU needed: only the device type is looked at; the backend's ops are not called.
    monkeypatch.setattr(ops, "triton_available", lambda: True)
    cuda = torch.device("cuda")
    assert ops.resolve_backend("auto", cuda, data="sparse").name == "triton-sparse"
    assert ops.resolve_backend("auto", cuda, dtype=torch.float64, data="sparse").name == "torch-sparse"


def test_weighted_data_has_no_triton_backend():
    with pytest.raises(ValueError, match="backend='triton' has no kernels for entry weights or missing values yet"):
        ops.resolve_backend("triton", torch.device("cpu"), data="weighted")
    assert ops.resolve_backend("auto", torch.device("cpu"), data="weighted").name == "torch-weighted"


def test_unknown_backend_and_precision():
    with pytest.raises(ValueError, match="Invalid backend 'jax'"):
        ops.resolve_backend("jax", torch.device("cpu"))
    with pytest.raises(ValueError, match="Invalid precision 'half'"):
        ops.resolve_backend("torch", torch.device("cpu"), "half")


def test_w_update_is_the_h_update_of_the_transposed_problem():
    calls = []

    def fake_update_h(X, W, H, **options):
        calls.append((X.shape, W.shape, H.shape))
        return H.clone()

    backend = ops.Backend("fake", fake_update_h, objective=None)
    X, W, H = torch.rand(7, 5), torch.rand(7, 2), torch.rand(2, 5)
    W_new = backend.mu_update_w(X, W, H, beta=2.0)
    assert calls == [((5, 7), (5, 2), (2, 7))]
    assert W_new.shape == W.shape and torch.equal(W_new, W)
