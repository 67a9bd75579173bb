"""Chunk sources and the chunk loader (``fastnmf.streaming.sources``, ``.loader``) and the chunk size."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import fastnmf
from fastnmf.layouts.streamed import chunk_rows_for_budget
from fastnmf.params import parse_bytes
from fastnmf.streaming import ArrayRows, ChunkReadError, Chunks, SparseRows, as_source, is_out_of_core
from fastnmf.streaming.loader import ChunkLoader, row_ranges


class FakeDataset:
    """An h5py-like dataset: shape, dtype, slicing and read_direct (h5py itself is not a dependency)."""

    __module__ = "h5py._hl.dataset"

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.direct_reads = array, array.shape, array.dtype, 0

    def __getitem__(self, index):
        return self.array[index]

    def read_direct(self, out, source_sel, dest_sel):
        self.direct_reads += 1
        out[dest_sel] = self.array[source_sel]


def test_sources_are_picked_by_what_x_is(tmp_path):
    X = np.arange(12.0).reshape(4, 3)
    np.save(tmp_path / "x.npy", X)
    memmap = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert isinstance(as_source(memmap), ArrayRows) and is_out_of_core(memmap)
    assert isinstance(as_source(sp.csr_matrix(X)), SparseRows) and not is_out_of_core(sp.csr_matrix(X))
    assert isinstance(as_source(FakeDataset(X)), ArrayRows) and is_out_of_core(FakeDataset(X))
    assert isinstance(as_source(torch.from_numpy(X)), ArrayRows) and not is_out_of_core(X)
    chunks = Chunks(lambda a, b: X[a:b], X.shape)
    assert as_source(chunks) is chunks and is_out_of_core(chunks)
    with pytest.raises(TypeError, match="Cannot stream X of type"):
        as_source(object())


def test_dense_rows_go_into_the_callers_buffer():
    X = np.arange(20.0).reshape(5, 4)
    dataset = FakeDataset(X)
    buffer = np.zeros((3, 4))
    rows = as_source(dataset).read(2, 4, out=buffer)
    assert np.shares_memory(rows, buffer)
    np.testing.assert_array_equal(rows, X[2:4])
    assert dataset.direct_reads == 1


def test_chunks_checks_what_the_reader_returns():
    chunks = Chunks(lambda a, b: np.ones((b - a + 1, 3)), (5, 3))
    with pytest.raises(ValueError, match=r"returned a block of shape \(3, 3\), expected \(2, 3\)"):
        chunks.read(0, 2)


def test_loader_yields_every_chunk_once_in_order_and_names_a_failing_one():
    X = np.arange(30.0).reshape(10, 3)
    loader = ChunkLoader(ArrayRows(X), row_ranges(10, 4), "cpu", torch.float64, scale=2.0)
    seen = [(rows, chunk.tensor.clone()) for rows, chunk in loader.chunks()]
    assert [rows for rows, _ in seen] == [slice(0, 4), slice(4, 8), slice(8, 10)]
    np.testing.assert_array_equal(torch.cat([t for _, t in seen]).numpy(), X / 2.0)

    def broken(a, b):
        if a >= 4:
            raise OSError("truncated file")
        return X[a:b]

    with pytest.raises(ChunkReadError, match=r"rows 4:8 .*chunk 2 of 3.*truncated file"):
        for _ in ChunkLoader(Chunks(broken, X.shape), row_ranges(10, 4), "cpu", torch.float64).chunks():
            pass


def test_sparse_chunks_stay_sparse():
    X = sp.random(9, 6, density=0.3, random_state=0, format="csr")
    loader = ChunkLoader(SparseRows(X), row_ranges(9, 5), "cpu", torch.float32)
    dense = torch.cat([chunk.by_row.to_dense() for _, chunk in loader.chunks()])
    np.testing.assert_allclose(dense.numpy(), X.toarray(), rtol=1e-6)


def test_memory_budget_sizes_and_chunk_rows():
    assert parse_bytes("500MB") == 500 * 10**6 and parse_bytes("2GiB") == 2 * 2**30 and parse_bytes("4096") == 4096
    with pytest.raises(ValueError, match="cannot read 'two gigs'"):
        parse_bytes("two gigs")
    # Dense: rows · n · itemsize · (4 + t), t = 1 for β = 2, 3 otherwise.
    assert chunk_rows_for_budget(10**6, 1000, 4, 2.0) == 10**6 // (1000 * 4 * 5)
    assert chunk_rows_for_budget(10**6, 1000, 4, 1.0) == 10**6 // (1000 * 4 * 7)
    assert chunk_rows_for_budget(10, 1000, 4, 1.0) == 1  # never zero
    assert chunk_rows_for_budget(10**6, 1000, 4, 1.0, nnz_per_row=10.0) == 10**6 // 400


def test_a_memory_budget_string_reaches_the_fit():
    X = np.random.RandomState(0).rand(40, 30)
    W, H, _ = fastnmf.non_negative_factorization(X, n_components=3, init="random", random_state=0, max_iter=5,
                                                 memory_budget="10kB")  # 10 kB / (30 · 8 · 5) = 8 rows a chunk
    W_ref, H_ref, _ = fastnmf.non_negative_factorization(X, n_components=3, init="random", random_state=0, max_iter=5)
    np.testing.assert_allclose(W, W_ref, rtol=1e-10)
    np.testing.assert_allclose(H, H_ref, rtol=1e-10)
