"""Launcher checks (shapes, dtypes, devices, precision), configs, and the tests' NaN-poisoned outputs."""

import math

import pytest
import torch

from fastnmf.kernels import (
    MUConfig,
    factorization_divergence,
    mu_beta_update_h,
    mu_frobenius_update_h,
    padded_rank,
)
from fastnmf.kernels import configs, launch
from fastnmf.kernels.testing import make_problem

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

LAUNCHERS = {
    "frobenius": lambda X, W, H, **kw: mu_frobenius_update_h(X, W, H, **kw),
    "beta": lambda X, W, H, **kw: mu_beta_update_h(X, W, H, beta=1.0, eps_r=1e-7, **kw),
    "objective": lambda X, W, H, **kw: factorization_divergence(X, W, H, beta=1.0, eps_r=1e-7, **kw),
}
launchers = pytest.mark.parametrize("launch_op", LAUNCHERS.values(), ids=LAUNCHERS.keys())


@launchers
def test_shapes_that_do_not_chain_are_named(launch_op):
    X, W, H = make_problem(5, 6, 3, device=DEVICE)
    with pytest.raises(ValueError, match=r"X \(5, 6\), W \(4, 3\), H \(3, 6\)"):
        launch_op(X, W[:4], H)
    with pytest.raises(ValueError, match=r"X \(5, 6\), W \(5, 3\), H \(2, 6\)"):
        launch_op(X, W, H[:2])
    with pytest.raises(ValueError, match=r"X \(5, 6\), W \(5, 3\), H \(3, 5\)"):
        launch_op(X, W, H[:, :5])
    with pytest.raises(ValueError, match=r"2-D.*X \(30,\)"):
        launch_op(X.reshape(-1), W, H)


@launchers
def test_wrong_dtypes_are_named(launch_op):
    X, W, H = make_problem(5, 6, 3, device=DEVICE)
    with pytest.raises(TypeError, match=r"X \(5, 6\) has dtype torch.float64"):
        launch_op(X.double(), W, H)
    with pytest.raises(TypeError, match=r"X \(5, 6\) has dtype torch.int32"):
        launch_op(X.int(), W, H)
    with pytest.raises(TypeError, match=r"W \(5, 3\) has dtype torch.float16; the factors must be float32"):
        launch_op(X, W.half(), H)
    with pytest.raises(TypeError, match=r"H \(3, 6\) has dtype torch.float64"):
        launch_op(X, W, H.double())
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        launch_op(X.tolist(), W, H)


@launchers
def test_mixed_devices_are_named(launch_op):
    X, W, H = make_problem(5, 6, 3, device=DEVICE)
    # The meta device stands in for a second device on machines with one.
    with pytest.raises(ValueError, match=r"X \(5, 6\) is on meta, W \(5, 3\) on .*same device"):
        launch_op(X.to("meta"), W, H)


@launchers
def test_cpu_tensors_without_the_interpreter_are_refused(launch_op, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    X, W, H = make_problem(5, 6, 3)
    with pytest.raises(ValueError, match=r"CUDA tensors, but X \(5, 6\) is on cpu.*TRITON_INTERPRET=1"):
        launch_op(X, W, H)


@launchers
def test_invalid_precision(launch_op):
    X, W, H = make_problem(5, 6, 3, device=DEVICE)
    with pytest.raises(ValueError, match="Invalid precision 'fp64'"):
        launch_op(X, W, H, precision="fp64")


def test_invalid_scalars():
    X, W, H = make_problem(5, 6, 3, device=DEVICE)
    with pytest.raises(ValueError, match="l1 = nan must be finite"):
        mu_frobenius_update_h(X, W, H, l1=math.nan)
    with pytest.raises(ValueError, match="eps_r = -1.0 must be ≥ 0"):
        mu_beta_update_h(X, W, H, beta=1.0, eps_r=-1.0)
    with pytest.raises(ValueError, match=r"block_k = 16 must cover the whole rank k = 20"):
        _, W20, H20 = make_problem(5, 6, 20, device=DEVICE)
        mu_beta_update_h(X, W20, H20, beta=1.0, eps_r=1e-7, config=MUConfig(16, 16, 16))


def test_empty_n_returns_an_empty_update():
    X, W, H = make_problem(5, 0, 3, device=DEVICE)
    assert mu_frobenius_update_h(X, W, H).shape == (3, 0)
    assert mu_beta_update_h(X, W, H, beta=0.5, eps_r=1e-7).shape == (3, 0)


def test_padded_rank_is_a_power_of_two_at_least_16():
    assert [padded_rank(k) for k in (1, 7, 16, 17, 33, 100, 128, 129)] == [16, 16, 16, 32, 64, 128, 128, 256]


def test_mu_config_rejects_tiles_tl_dot_cannot_use():
    with pytest.raises(ValueError, match="block_k = 8"):
        MUConfig(block_m=64, block_n=64, block_k=8)
    with pytest.raises(ValueError, match="block_n = 48"):
        MUConfig(block_m=64, block_n=48, block_k=16)
    with pytest.raises(ValueError, match="split_m = 0"):
        MUConfig(block_m=64, block_n=64, block_k=16, split_m=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter's single config")
def test_interpreter_uses_one_config_without_device_queries(monkeypatch):
    def no_device_queries(*args, **kwargs):
        raise AssertionError("a config function queried the device under the interpreter")

    monkeypatch.setattr(configs, "_sm_count", no_device_queries)
    cpu = torch.device("cpu")
    for m, n, k in [(10, 10, 1), (5000, 3000, 64), (100, 100, 300)]:
        assert configs.mu_frobenius_config(m, n, k, cpu) == configs.mu_frobenius_config(1, 1, k, cpu)
        assert configs.mu_beta_config(m, n, k, cpu).split_m == 1
        assert configs.mu_beta_config(m, n, k, cpu).block_k == padded_rank(k)
        assert configs.objective_config(m, n, k, cpu).block_m == configs.objective_config(1, 1, k, cpu).block_m


def test_the_test_setup_poisons_what_the_launchers_allocate():
    # tests/conftest.py replaces launch.new_output and launch.new_workspace (which the library leaves as
    # plain torch.empty): an entry no kernel writes stays NaN, or −1 in an integer output, and fails a test.
    like = torch.zeros(3, 4, device=DEVICE).T
    output = launch.new_output(like)
    assert output.dtype == torch.float32 and output.stride() == like.stride() and torch.isnan(output).all()
    assert torch.isnan(launch.new_workspace(2, 3, device=like.device)).all()
    assert torch.isnan(launch.new_workspace(4, device=like.device, dtype=torch.float64)).all()
    assert launch.new_workspace(5, device=like.device, dtype=torch.int32).tolist() == [-1] * 5


@pytest.mark.gpu
def test_gpu_configs_are_valid_for_many_shapes():
    device = torch.device("cuda")
    for m, n, k in [(64, 64, 1), (100000, 64, 16), (64, 100000, 200), (5000, 5000, 512)]:
        for make in (configs.mu_frobenius_config, configs.mu_beta_config):
            config = make(m, n, k, device)
            assert config.split_m >= 1 and config.block_k >= 16
        assert configs.mu_beta_config(m, n, k, device).block_k >= k


def test_launches_run_on_their_tensors_device():
    import contextlib

    from fastnmf.kernels import launch

    assert isinstance(launch.on_device(torch.device("cpu")), contextlib.nullcontext)
    # Built without touching CUDA (entering it would): the device index is the tensors', not the current one.
    context = launch.on_device(torch.device("cuda", 1))
    assert isinstance(context, torch.cuda.device) and context.idx == 1
