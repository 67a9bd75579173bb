"""Every launcher's grid stays inside CUDA's limits at the GPU configs (axis 0 ≤ 2³¹−1, axes 1, 2 ≤ 65535).

No GPU needed: the tile choice is made as on a GPU (the configs' interpreter branch is switched off and an
H100/H200's 132 SMs assumed), and each kernel is replaced by a recorder of the grid it is launched with.
X is an expanded view (no memory), so shapes past the limits cost nothing.
"""

import pytest
import torch

from fastnmf import kernels
from fastnmf.kernels import configs, gemm, hals, mu_beta, mu_finalize, mu_frobenius, mu_sparse_kl, objective
from fastnmf.layouts import SparseMatrix

CUDA_GRID_LIMITS = (2**31 - 1, 65535, 65535)
# The GPU preset's dense shapes, and the shapes whose column count passes 65535 tiles of 64.
SHAPES = [(16384, 16384), (50000, 20000), (64, 4_300_000), (4_300_000, 64)]
RANKS = [16, 64, 256]
# Every (shape, rank) whose factors stay under 1 GiB (the wide and tall shapes at k = 16 only).
CASES = [(m, n, k) for m, n in SHAPES for k in RANKS if m * k <= 2**28 and n * k <= 2**28]


class _GridRecorder:
    def __init__(self, name, grids):
        self.name, self.grids = name, grids

    def __getitem__(self, grid):
        self.grids.append((self.name, tuple(grid)))
        return lambda *args, **kwargs: None


@pytest.fixture
def grids(monkeypatch):
    recorded = []
    monkeypatch.setattr(configs, "interpreting", lambda: False)
    monkeypatch.setattr(configs, "_sm_count", lambda index: 132)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    for module, name in ((gemm, "_matmul_tn_kernel"), (mu_frobenius, "_mu_frobenius_h_kernel"),
                         (mu_beta, "_mu_beta_h_kernel"), (mu_finalize, "_mu_finalize_kernel"),
                         (hals, "_hals_sweep_kernel"), (objective, "_beta_divergence_kernel"),
                         (mu_sparse_kl, "_mu_sparse_kl_h_kernel")):
        monkeypatch.setattr(module, name, _GridRecorder(name, recorded))
    return recorded


def _factors(m, n, k):
    X = torch.ones(1, 1).expand(m, n)  # strides (0, 0): no memory
    return X, torch.ones(1, 1).expand(m, k).contiguous(), torch.ones(1, 1).expand(k, n).contiguous()


def _assert_inside(recorded):
    assert recorded
    for name, grid in recorded:
        assert all(size >= 1 for size in grid), (name, grid)
        for size, limit in zip(grid, CUDA_GRID_LIMITS):
            assert size <= limit, f"{name}: grid {grid} exceeds CUDA's limits {CUDA_GRID_LIMITS}"


@pytest.mark.parametrize("m,n,k", CASES, ids=[f"{m}x{n}-k{k}" for m, n, k in CASES])
def test_dense_launchers_stay_inside_the_grid_limits(grids, m, n, k):
    X, W, H = _factors(m, n, k)
    kernels.mu_frobenius_update_h(X, W, H)
    kernels.mu_beta_update_h(X, W, H, beta=1.0, eps_r=1e-6)
    kernels.matmul_tn(W, X)
    kernels.factorization_divergence(X, W, H, beta=1.0, eps_r=1e-6)
    if k <= kernels.MAX_HALS_RANK:
        kernels.hals_sweeps(H, torch.ones_like(H), torch.eye(k))
    _assert_inside(grids)


def test_the_objective_of_a_very_wide_x_uses_a_one_dimensional_grid(grids):
    # 64 × 4.3·10⁶ took a (1, 67188) grid before: past axis 1's 65535, a launch failure on any GPU.
    X, W, H = _factors(64, 4_300_000, 16)
    kernels.factorization_divergence(X, W, H, beta=2.0, eps_r=0.0)
    ((name, grid),) = grids
    assert len(grid) == 1 and grid[0] >= 67188


def test_the_sparse_launcher_stays_inside_the_grid_limits(grids):
    m, n = 1_000_000, 100_000
    rows, cols = torch.arange(0, m, 997), torch.arange(0, m, 997) % n
    X = SparseMatrix.from_coo(rows, cols, torch.ones(rows.numel()), (m, n))
    W, H = torch.ones(m, 32), torch.ones(32, n)
    kernels.mu_sparse_kl_update_h(X, W, H, eps_r=1e-6)
    kernels.mu_sparse_kl_update_h(X.T, H.T, W.T, eps_r=1e-6)
    _assert_inside(grids)
