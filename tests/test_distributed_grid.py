"""The process grid's geometry and the sharding helpers (``fastnmf.distributed.grid``, ``.sharding``):
no process group needed."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import fastnmf.distributed as fd
from fastnmf.distributed.grid import ProcessGrid, split_ranges, split_sizes


def test_split_sizes_are_as_even_as_possible_first_ones_larger():
    assert split_sizes(301, 4) == [76, 75, 75, 75]
    assert split_sizes(3, 2) == [2, 1]
    assert split_sizes(1, 3) == [1, 0, 0]
    assert [len(r) for r in split_ranges(10, 3)] == [4, 3, 3] and split_ranges(10, 3)[2] == range(7, 10)


# Every grid on every shape it fits (a shape smaller than the grid is refused: tested below).
FITTING = [(shape, grid) for shape in [(301, 203), (3, 5), (7, 2)]
           for grid in [(1, 1), (2, 1), (1, 2), (2, 2), (4, 1), (2, 3)] if shape[0] >= grid[0] and shape[1] >= grid[1]]


@pytest.mark.parametrize("shape, grid", FITTING)
def test_owned_parts_cover_both_factors_exactly_once(shape, grid):
    m, n = shape
    rows, columns = grid
    owned_rows = np.zeros(m, dtype=int)
    owned_columns = np.zeros(n, dtype=int)
    for rank in range(rows * columns):
        r, c = fd.owned_parts(shape, grid, rank)
        owned_rows[r.start:r.stop] += 1
        owned_columns[c.start:c.stop] += 1
        block = fd.shard(np.zeros(shape), grid, rank)
        assert r.start >= block.rows.start and r.stop <= block.rows.stop  # W's part lies in the block's rows
        assert c.start >= block.columns.start and c.stop <= block.columns.stop
    assert (owned_rows == 1).all() and (owned_columns == 1).all()


def test_positions_are_row_major():
    grid = ProcessGrid(2, 3)
    assert [grid.position_of(r) for r in range(6)] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    with pytest.raises(ValueError, match="rank 6 is not in a 2×3 grid"):
        grid.position_of(6)


def global_matrix():
    rng = np.random.RandomState(0)
    X = rng.poisson(0.7, size=(11, 7)).astype(np.float64)
    return X


@pytest.mark.parametrize("kind", ["numpy", "memmap", "csr", "coo", "csc", "torch", "torch-coo", "torch-csr"])
def test_shard_returns_the_block_in_the_input_kind(kind, tmp_path):
    X = global_matrix()
    if kind == "memmap":
        path = tmp_path / "x.npy"
        np.save(path, X)
        given = np.load(path, mmap_mode="r")
    else:
        given = {"numpy": X, "csr": sp.csr_matrix(X), "coo": sp.coo_matrix(X), "csc": sp.csc_matrix(X),
                 "torch": torch.from_numpy(X), "torch-coo": torch.from_numpy(X).to_sparse(),
                 "torch-csr": torch.from_numpy(X).to_sparse_csr()}.get(kind)
    blocks = np.zeros_like(X)
    for rank in range(6):
        part = fd.shard(given, (3, 2), rank)
        block = part.X
        if kind == "memmap":
            assert isinstance(block, np.memmap)  # a view: nothing outside the block read
        if sp.issparse(block):
            block = block.toarray()
        elif isinstance(block, torch.Tensor):
            assert (block.layout == torch.sparse_csr) == (kind == "torch-csr")
            block = block.to_dense().numpy() if block.layout != torch.strided else block.numpy()
        blocks[part.rows.start:part.rows.stop, part.columns.start:part.columns.stop] += block
    np.testing.assert_array_equal(blocks, X)


def test_shard_refuses_a_matrix_smaller_than_the_grid():
    with pytest.raises(ValueError, match=r"X of shape \(1, 7\) is too small for a 2×1 grid"):
        fd.shard(np.ones((1, 7)), (2, 1), 0)
    with pytest.raises(ValueError, match="Invalid grid"):
        fd.shard(np.ones((4, 4)), "2x2", 0)
    with pytest.raises(ValueError, match="no process group is initialized"):
        fd.shard(np.ones((4, 4)), None, 0)


def test_fitting_without_a_process_group_says_what_to_do():
    with pytest.raises(RuntimeError, match="init_process_group"):
        fd.non_negative_factorization(np.ones((4, 4)), 2)


def test_unknown_options_are_named():
    with pytest.raises(TypeError, match=r"unexpected options \['n_iterations'\]"):
        fd.non_negative_factorization(np.ones((4, 4)), 2, n_iterations=3)
