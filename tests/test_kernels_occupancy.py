"""Residency of compiled variants and the row split that fills whole waves (kernels/occupancy.py).

No GPU needed: the launchers run at the GPU configs with their kernels replaced by recorders (as in
test_kernels_grids), and a compiled kernel is stood in for by an object with Triton's attributes.
"""

from types import SimpleNamespace

import pytest
import torch
import triton

from fastnmf.kernels import configs, gemm, mu_beta, mu_finalize, mu_frobenius, occupancy
from fastnmf.kernels.launch import split_rows


def test_blocks_per_sm_follows_registers_warps_and_shared_memory():
    # The compile report's rows: 80 registers × 8 warps and 72 KB of shared memory fit 3 blocks (both limits).
    assert occupancy.blocks_per_sm(80, 8, 72 * 1024) == 3
    # 140 registers × 8 warps: 36 864 of 65 536 registers per block, one block.
    assert occupancy.blocks_per_sm(140, 8, 24 * 1024) == 1
    # The same registers with 4 warps: two blocks (8 warps resident either way).
    assert occupancy.blocks_per_sm(140, 4, 24 * 1024) == 3
    assert occupancy.blocks_per_sm(255, 4, 1024) == 2
    assert occupancy.blocks_per_sm(32, 4, 0) == 16  # 64 warps per SM at most
    assert occupancy.blocks_per_sm(16, 1, 0) == 32  # 32 blocks per SM at most
    assert occupancy.blocks_per_sm(64, 4, 120 * 1024) == 1  # shared memory binds
    assert occupancy.blocks_per_sm(None, 4, 0) is None


def test_wave_efficiency():
    assert occupancy.wave_efficiency(264, 264) == 1.0
    assert occupancy.wave_efficiency(300, 264) == pytest.approx(300 / 528)
    assert occupancy.wave_efficiency(10, 264) == pytest.approx(10 / 264)


@pytest.mark.parametrize("programs,slots,most,expected", [
    (157, 264, 100, 5),  # 50000×20000 at 128-column tiles: 785 programs in 3 full waves
    (300, 264, 100, 4),  # 1.14 waves unsplit (57 % busy) → 1200 programs in 4.5 waves (91 %)
    (2400, 264, 100, 1),  # 9.1 waves: 91 % busy without a split
    (264, 264, 100, 1),
    (10, 264, 3, 3),  # the cap binds: the most the rows allow
    (157, 264, 1, 1),
])
def test_split_for_waves(programs, slots, most, expected):
    split = occupancy.split_for_waves(programs, slots, most)
    assert split == expected
    if split > 1:
        assert all(occupancy.wave_efficiency(programs * s, slots) < occupancy.MIN_WAVE_EFFICIENCY for s in range(1, split))


def _compiled(registers, warps, shared):
    return SimpleNamespace(n_regs=registers, metadata=SimpleNamespace(num_warps=warps, shared=shared))


def test_remember_reads_a_compiled_kernel_on_cuda_only(monkeypatch):
    monkeypatch.setattr(occupancy, "device_limits", lambda index: (132, occupancy.SM90))
    monkeypatch.setattr(occupancy, "_RESIDENT", {})
    key = occupancy.variant_key("mu_beta", torch.device("cuda", 0), configs.MUConfig(16, 64, 16), "tf32x3", 1, 4)
    assert occupancy.resident_blocks(key) == occupancy.ASSUMED_BLOCKS_PER_SM
    occupancy.remember(key, _compiled(140, 8, 24 * 1024), torch.device("cpu"))  # the interpreter: ignored
    assert occupancy.resident_blocks(key) == occupancy.ASSUMED_BLOCKS_PER_SM
    occupancy.remember(key, None, torch.device("cuda", 0))  # a recorder's launch returns nothing
    occupancy.remember(key, SimpleNamespace(), torch.device("cuda", 0))  # no Triton metadata
    assert occupancy.resident_blocks(key) == occupancy.ASSUMED_BLOCKS_PER_SM
    occupancy.remember(key, _compiled(140, 8, 24 * 1024), torch.device("cuda", 0))
    assert occupancy.resident_blocks(key) == 1
    occupancy.remember(key, _compiled(64, 4, 16 * 1024), torch.device("cuda", 0))
    assert occupancy.resident_blocks(key) == 8
    assert occupancy.remembered() == [{"kernel": "mu_beta", "device": "cuda:0", "tiles": str(configs.MUConfig(16, 64, 16)),
                                       "choices": ["tf32x3", "1", "4"], "blocks_per_sm": 8}]
    occupancy.forget_all()
    assert occupancy.resident_blocks(key) == occupancy.ASSUMED_BLOCKS_PER_SM


def test_variant_key_sets_the_split_aside():
    device = torch.device("cuda", 1)
    tiles = configs.MUConfig(64, 128, 32, num_warps=8, num_stages=3)
    split = configs.MUConfig(64, 128, 32, split_m=5, num_warps=8, num_stages=3)
    assert occupancy.variant_key("k", device, tiles, "tf32") == occupancy.variant_key("k", device, split, "tf32")
    assert occupancy.variant_key("k", device, tiles, "tf32") != occupancy.variant_key("k", device, tiles, "ieee")
    assert occupancy.variant_key("k", device, tiles) != occupancy.variant_key("k", torch.device("cuda", 0), tiles)


class _Recorder:
    """A kernel stand-in that records its grid and returns a compiled kernel's attributes."""

    def __init__(self, grids, compiled=None):
        self.grids, self.compiled = grids, compiled

    def __getitem__(self, grid):
        self.grids.append(tuple(grid))
        return lambda *args, **kwargs: self.compiled


def _frobenius(X, W, H):
    return mu_frobenius.mu_frobenius_update_h(X, W, H, precision="tf32x3")


def _beta(X, W, H):
    return mu_beta.mu_beta_update_h(X, W, H, beta=1.0, eps_r=1e-6, precision="tf32x3")


def _gemm(X, W, H):
    return gemm.matmul_tn(W, X, precision="tf32x3")


@pytest.mark.parametrize("module,name,update", [
    (mu_frobenius, "_mu_frobenius_h_kernel", _frobenius),
    (mu_beta, "_mu_beta_h_kernel", _beta),
    (gemm, "_matmul_tn_kernel", _gemm),
], ids=["frobenius", "kl", "matmul_tn"])
def test_a_launch_teaches_the_next_config_its_residency(monkeypatch, module, name, update):
    grids, keys = [], []
    monkeypatch.setattr(configs, "interpreting", lambda: False)
    monkeypatch.setattr(configs, "_sm_count", lambda index: 132)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(occupancy, "_RESIDENT", {})
    monkeypatch.setattr(module, name, _Recorder(grids))
    monkeypatch.setattr(mu_finalize, "_mu_finalize_kernel", _Recorder([]))
    remember = occupancy.remember
    monkeypatch.setattr(occupancy, "remember", lambda key, compiled, device: (keys.append(key),
                                                                               remember(key, compiled, device)))
    m, n, k = 50000, 20000, 32
    X = torch.ones(1, 1).expand(m, n)  # strides (0, 0): no memory
    W, H = torch.rand(m, k), torch.rand(k, n)

    tiles = configs.beta_tiles(32, "tf32x3") if name == "_mu_beta_h_kernel" else configs.frobenius_tiles(32, "tf32x3")
    most = m // (4 * tiles.block_m)

    def expected_split(slots):
        return split_rows(m, occupancy.split_for_waves(columns, slots, most), tiles.block_m)[1]

    update(X, W, H)
    columns, assumed_split = grids[-1]
    assert assumed_split == expected_split(occupancy.ASSUMED_BLOCKS_PER_SM * 132)
    # What a launch on a GPU would have remembered for this variant: one block per SM.
    occupancy._RESIDENT[keys[-1]] = 1
    update(X, W, H)
    assert grids[-1] == (columns, expected_split(132))
    assert expected_split(132) != assumed_split


def test_the_hals_column_block_follows_the_learned_residency(monkeypatch):
    from fastnmf.kernels import hals

    grids = []
    monkeypatch.setattr(configs, "interpreting", lambda: False)
    monkeypatch.setattr(configs, "_sm_count", lambda index: 132)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(occupancy, "_RESIDENT", {})
    monkeypatch.setattr(hals, "_hals_sweep_kernel", _Recorder(grids))
    k, n = 16, 20000
    H, A, B = torch.rand(k, n), torch.rand(k, n), torch.eye(k) + 0.1
    hals.hals_sweeps(H, A, B, max_sweeps=2)
    tiles = configs.hals_tiles(16)
    assert grids[-1] == (triton.cdiv(n, 64),)  # 128 columns: 157 programs < 264 slots; 64: 313
    # One resident block per SM at 128 columns (as a launch there would report): 157 ≥ 132, no shrinking.
    occupancy._RESIDENT[occupancy.variant_key("hals_sweep", H.device, tiles)] = 1
    hals.hals_sweeps(H, A, B, max_sweeps=2)
    assert grids[-1] == (triton.cdiv(n, tiles.block_n),)
