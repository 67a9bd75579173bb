"""Where streamed X comes from: row chunks read from disk, from host memory, or from user code.

A *source* has ``shape`` (m, n), ``dtype`` (numpy), ``sparse`` and ``read(start, stop, out=None)``: rows
``start:stop`` as a dense numpy array (written into ``out`` when given: the reused buffers that keep anonymous
memory bounded — slices of a memory map would count as the map's pages, copies into fresh arrays as anonymous
memory) or as a scipy CSR matrix. Sources:

- :class:`ArrayRows`: anything 2-D that slices rows — ``np.memmap``, an ``h5py`` dataset (``read_direct``
  into the buffer), a backed AnnData's dense ``.X``, an in-memory numpy array;
- :class:`SparseRows`: a scipy CSR/CSC matrix, or a backed AnnData's sparse ``.X`` (anything whose row slices
  are scipy sparse matrices);
- :class:`Chunks`: user code — ``Chunks(read, shape, dtype)`` with ``read(start, stop)`` returning the rows, or
  ``Chunks.from_blocks(factory, shape, dtype)`` for an iterator of consecutive row blocks of any sizes.

:func:`as_source` picks one; :func:`is_out_of_core` says which inputs are streamed without being asked to.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["ArrayRows", "SparseRows", "Chunks", "as_source", "is_out_of_core", "ChunkReadError"]


class ChunkReadError(OSError):
    """Reading a chunk of a streamed X failed (I/O error, truncated file, a reader that raised)."""


def _numpy_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise TypeError(f"A streamed X must hold real numbers, got dtype {dtype}.")
    return dtype


class ArrayRows:
    """Rows of a dense 2-D array-like (memmap, h5py dataset, numpy array), read into caller buffers."""

    sparse = False

    def __init__(self, array):
        if len(array.shape) != 2:
            raise ValueError(f"Expected a 2-D X, got shape {tuple(array.shape)}.")
        self.array, self.shape, self.dtype = array, tuple(int(s) for s in array.shape), _numpy_dtype(array.dtype)

    def read(self, start: int, stop: int, out: np.ndarray | None = None):
        if out is None:
            return np.array(self.array[start:stop], dtype=self.dtype if self.dtype.kind == "f" else np.float64)
        if hasattr(self.array, "read_direct") and out.dtype == self.dtype:  # h5py: straight into the buffer
            self.array.read_direct(out, np.s_[start:stop], np.s_[0:stop - start])
        else:
            np.copyto(out[:stop - start], self.array[start:stop], casting="unsafe")
        return out[:stop - start]


class SparseRows:
    """Row slices of a scipy sparse matrix or of any sparse dataset sliced into scipy matrices."""

    sparse = True

    def __init__(self, matrix):
        if sp.issparse(matrix) and matrix.format not in ("csr", "csc"):
            matrix = matrix.tocsr()
        self.matrix, self.shape, self.dtype = matrix, tuple(int(s) for s in matrix.shape), _numpy_dtype(matrix.dtype)

    def read(self, start: int, stop: int, out=None):
        block = self.matrix[start:stop]
        return block.tocsr() if sp.issparse(block) else sp.csr_matrix(np.asarray(block))


class Chunks:
    """X given by code: ``read(start, stop)`` returns rows ``start:stop`` (numpy or scipy sparse).

    ``Chunks.from_blocks(factory, shape, dtype)``: ``factory()`` returns a fresh iterator of consecutive row
    blocks (of any sizes) covering X once; then the blocks are the chunks (``chunk_rows`` does not apply).
    """

    def __init__(self, read, shape, dtype=np.float64, *, sparse: bool = False):
        if len(shape) != 2:
            raise ValueError(f"Chunks needs a 2-D shape, got {tuple(shape)}.")
        self._read, self.shape, self.dtype = read, (int(shape[0]), int(shape[1])), _numpy_dtype(dtype)
        self.sparse, self.factory = bool(sparse), None

    @classmethod
    def from_blocks(cls, factory, shape, dtype=np.float64, *, sparse: bool = False) -> "Chunks":
        chunks = cls(None, shape, dtype, sparse=sparse)
        chunks.factory = factory
        return chunks

    def read(self, start: int, stop: int, out=None):
        block = self._read(start, stop)
        if not sp.issparse(block):
            block = np.asarray(block)
        if block.shape != (stop - start, self.shape[1]):
            raise ValueError(f"Chunks.read({start}, {stop}) returned a block of shape {block.shape}, expected "
                             f"{(stop - start, self.shape[1])}.")
        return block.tocsr() if sp.issparse(block) else block


def is_out_of_core(X) -> bool:
    """Inputs streamed by default: memory maps, h5py datasets, backed AnnData matrices, :class:`Chunks`."""
    if isinstance(X, (Chunks, np.memmap)):
        return True
    module = type(X).__module__
    return module.startswith("h5py") or (module.startswith("anndata") and hasattr(X, "shape"))


def as_source(X):
    """The source that streams X (``read`` as in the module docstring)."""
    if isinstance(X, (ArrayRows, SparseRows, Chunks)):
        return X
    if type(X).__module__.startswith("torch"):
        if X.device.type != "cpu":
            raise ValueError(f"X is already on {X.device}: chunk_rows / memory_budget stream X from the host; "
                             "pass it as a CPU tensor or numpy array with device='cuda', or leave them unset.")
        if X.layout != torch.strided:
            coo = X.detach().to_sparse_coo().coalesce()
            return SparseRows(sp.csr_matrix((coo.values().numpy(), coo.indices().numpy()), shape=tuple(X.shape)))
        return ArrayRows(X.detach().numpy())
    if sp.issparse(X):
        return SparseRows(X)
    if isinstance(X, np.ndarray) or type(X).__module__.startswith("h5py"):
        return ArrayRows(X)
    if hasattr(X, "shape") and hasattr(X, "__getitem__") and hasattr(X, "dtype"):
        probe = X[0:1]  # a backed sparse dataset slices into scipy matrices, a dense one into arrays
        return SparseRows(X) if sp.issparse(probe) else ArrayRows(X)
    raise TypeError(f"Cannot stream X of type {type(X).__name__}: pass an array-like that slices rows, a scipy "
                    "sparse matrix, or fastnmf.Chunks.")

