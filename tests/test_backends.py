"""Backend dispatch and the registry: one place decides; capabilities checked there; clear errors."""

import pytest
import torch

import fastnmf.backends as backends
from fastnmf.backends import registry, resolve_backend, resolve_solver
from fastnmf.layouts import DenseMatrix, Layout, SparseMatrix, WeightedMatrix


def _dense(dtype=torch.float32, device="cpu"):
    return DenseMatrix(torch.ones((3, 2), dtype=dtype, device=device))


def _sparse(dtype=torch.float32):
    rows, cols = torch.tensor([0, 2]), torch.tensor([1, 0])
    return SparseMatrix.from_coo(rows, cols, torch.ones(2, dtype=dtype), (3, 2))


def _weighted():
    X = torch.ones((3, 2))
    return WeightedMatrix(X, torch.ones((3, 2)))


def _FakeCuda(layout):
    """``layout`` as if it lived on CUDA (only the device type is looked at; nothing is computed)."""
    on_cuda = type("OnCuda", (type(layout),), {"__slots__": (), "device": property(lambda self: torch.device("cuda"))})
    object.__setattr__(layout, "__class__", on_cuda)  # WeightedMatrix is a frozen dataclass
    return layout


def test_torch_backend_by_name_and_auto_on_cpu():
    assert resolve_backend("torch", _dense()).name == "torch"
    assert resolve_backend("auto", _dense()).name == "torch"


def test_triton_on_cpu_without_the_interpreter_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        resolve_backend("triton", _dense())


def test_float64_data_stays_on_the_torch_backend():
    # The Triton kernels compute with float32 factors: "auto" keeps float64 data on torch, and an explicit
    # "triton" says what to do instead of silently changing the dtype.
    assert resolve_backend("auto", _dense(torch.float64)).name == "torch"
    with pytest.raises(TypeError, match="backend='triton' computes with float32 factors, but X is float64"):
        resolve_backend("triton", _dense(torch.float64))


def test_sparse_data_gets_the_sparse_backends():
    # The interpreter is on in the tests (conftest): "triton" resolves on the CPU.
    assert resolve_backend("torch", _sparse()).name == "torch"
    assert resolve_backend("auto", _sparse()).name == "torch"
    assert resolve_backend("triton", _sparse()).name == "triton-sparse"
    with pytest.raises(TypeError, match="backend='triton' computes with float32 factors, but X is float64"):
        resolve_backend("triton", _sparse(torch.float64))


def test_sparse_triton_on_cpu_without_the_interpreter_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        resolve_backend("triton", _sparse())


def test_auto_picks_triton_for_cuda_data_that_has_kernels(monkeypatch):
    # No GPU needed: only the device type is looked at; the backend's rules are not called.
    monkeypatch.setattr(backends, "triton_available", lambda: True)
    assert backends._implementation("auto", _FakeCuda(_sparse())) == "triton"
    assert backends._implementation("auto", _FakeCuda(_dense())) == "triton"
    assert backends._implementation("auto", _FakeCuda(_sparse(torch.float64))) == "torch"
    # Weighted data has no kernels: "auto" stays on torch even on CUDA.
    assert backends._implementation("auto", _FakeCuda(_weighted())) == "torch"


def test_weighted_data_has_no_triton_backend_and_no_hals():
    with pytest.raises(ValueError, match="backend='triton' has no kernels for entry weights or missing values yet"):
        resolve_backend("triton", _weighted())
    assert resolve_backend("auto", _weighted()).name == "torch"
    with pytest.raises(ValueError, match="solver='hals' does not support entry weights or missing values; use solver='mu'"):
        resolve_backend("torch", _weighted(), solver="hals")
    assert resolve_solver("auto", 2.0, _weighted()) == "mu"
    assert resolve_solver("auto", 2.0, _dense()) == "hals"
    assert resolve_solver("auto", 1.0, _dense()) == "newton"
    assert resolve_solver("auto", 1.0, _sparse(torch.float32)) == "newton"
    assert resolve_solver("auto", 1.0, _weighted()) == "mu"  # MU keeps its sparse path for missing values
    assert resolve_solver("auto", 1.0, _dense(), precision="bf16") == "mu"  # the bf16 mode is MU's
    assert resolve_solver("auto", 1.5, _dense()) == "mu"
    # On CUDA the fused MU kernels run for KL (no GPU measurement of Newton yet); float64 data runs torch.
    assert resolve_solver("auto", 1.0, _FakeCuda(_dense())) == "mu"
    assert resolve_solver("auto", 1.0, _FakeCuda(_dense(torch.float64))) == "newton"


def test_unknown_backend_and_precision():
    with pytest.raises(ValueError, match="Invalid backend 'jax'"):
        resolve_backend("jax", _dense())
    with pytest.raises(ValueError, match="Invalid precision 'half'"):
        resolve_backend("torch", _dense(), "half")


def test_a_new_layout_finds_the_generic_torch_entry_and_can_register_its_own(monkeypatch):
    class Toy(DenseMatrix):
        pass

    assert registry.find("torch", Toy).layout is Layout
    assert registry.find("triton", Toy).layout is DenseMatrix  # a subclass inherits its parent's kernels
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    registry.register("torch", Toy, lambda precision: "toy backend", solvers=("mu",))
    assert resolve_backend("torch", Toy(torch.ones(2, 2))) == "toy backend"
    with pytest.raises(ValueError, match="solver='hals' does not support dense X"):
        resolve_backend("torch", Toy(torch.ones(2, 2)), solver="hals")


@pytest.mark.slow  # a fresh interpreter importing torch: ~3 s on 2 cores
def test_the_triton_implementation_is_imported_only_when_used():
    # Importing fastnmf (and the contract and registry) compiles no kernel: Triton loads on first use.
    import subprocess
    import sys

    code = ("import sys; import fastnmf.backends.contract, fastnmf.backends.registry; "
            "assert 'fastnmf.backends.triton_backend' not in sys.modules; "
            "assert 'fastnmf.kernels' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
