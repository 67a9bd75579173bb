"""Chunks of a streamed X on the compute device, the next one read while the current one computes.

:class:`ChunkLoader` walks the row chunks of a source once per call of :meth:`ChunkLoader.chunks`, yielding
``(rows, chunk)`` with ``chunk`` a :class:`fastnmf.layouts.DenseMatrix` or :class:`~fastnmf.layouts.SparseMatrix`
on the device, in the compute dtype, divided by the fit's scale. A background thread reads chunk c+1 while
chunk c computes (disk or page cache → host). Dense chunks go into two reused host buffers — anonymous
memory stays at two chunks whatever X's size — and, on CUDA, the buffers are pinned and each is copied on a
side stream into one of two reused device buffers; events, not synchronizations, order the copy after the
previous use of its buffers and the compute after the copy. Sparse chunks are new (O(nnz of a chunk)) arrays.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
import torch

from ..layouts import DenseMatrix, SparseMatrix
from .sources import ChunkReadError

__all__ = ["ChunkLoader", "row_ranges"]

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def row_ranges(m: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` of ``chunk_rows`` rows (the last one shorter)."""
    return [(start, min(start + chunk_rows, m)) for start in range(0, m, chunk_rows)]


def sparse_chunk(block, dtype: torch.dtype, device, scale: float) -> SparseMatrix:
    coo = block.tocoo()
    values = torch.from_numpy(np.asarray(coo.data, dtype=_NUMPY[dtype]))
    if scale != 1.0:
        values = values / scale
    rows = torch.from_numpy(coo.row.astype(np.int64))
    cols = torch.from_numpy(coo.col.astype(np.int64))
    return SparseMatrix.from_coo(rows.to(device), cols.to(device), values.to(device), block.shape)


class ChunkLoader:
    """The chunks of ``source`` over ``ranges`` on ``device`` in ``dtype``, values divided by ``scale``."""

    def __init__(self, source, ranges, device, dtype: torch.dtype, scale: float = 1.0):
        self.source, self.ranges, self.device, self.dtype = source, list(ranges), torch.device(device), dtype
        self.scale = float(scale)
        self._host = self._device_buffers = None
        self.reads = 0  # chunks read (tests count the passes with it)

    def with_scale(self, scale: float) -> "ChunkLoader":
        return ChunkLoader(self.source, self.ranges, self.device, self.dtype, scale)

    def with_dtype(self, dtype: torch.dtype) -> "ChunkLoader":
        return ChunkLoader(self.source, self.ranges, self.device, dtype, self.scale)

    # --- reading ----------------------------------------------------------------------------------------

    def _buffers(self):
        if self._host is None:
            height = max(stop - start for start, stop in self.ranges)
            shape = (height, self.source.shape[1])
            pinned = self.device.type == "cuda"
            self._host = [torch.empty(shape, dtype=self.dtype, pin_memory=pinned) for _ in range(2)]
            if pinned:
                self._device_buffers = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in range(2)]
        return self._host

    def _read(self, index: int, blocks=None):
        start, stop = self.ranges[index]
        try:
            if blocks is not None:  # Chunks.from_blocks: the next block of the user's iterator
                block = next(blocks)
                block = block.tocsr() if sp.issparse(block) else np.asarray(block)
                if block.shape != (stop - start, self.source.shape[1]):
                    raise ValueError(f"the block iterator gave shape {block.shape} where the first pass saw "
                                     f"{(stop - start, self.source.shape[1])}")
                if self.source.sparse or sp.issparse(block):
                    return sp.csr_matrix(block)
                buffer = self._buffers()[index % 2].numpy()
                np.copyto(buffer[:stop - start], block, casting="unsafe")
                return buffer[:stop - start]
            if self.source.sparse:
                return self.source.read(start, stop)
            return self.source.read(start, stop, out=self._buffers()[index % 2].numpy())
        except Exception as error:  # noqa: BLE001 — any reader failure names its chunk
            raise ChunkReadError(f"Reading rows {start}:{stop} of the streamed X (chunk {index + 1} of "
                                 f"{len(self.ranges)}) failed: {type(error).__name__}: {error}") from error

    def _to_device(self, index: int, block, streams):
        rows = slice(*self.ranges[index])
        if sp.issparse(block):
            return rows, sparse_chunk(block, self.dtype, self.device, self.scale)
        host = torch.from_numpy(block)
        if self.scale != 1.0:
            host.div_(self.scale)  # in the reused buffer: no allocation
        if self.device.type != "cuda":
            return rows, DenseMatrix(host)
        copy_stream, ready, free = streams
        target = self._device_buffers[index % 2][:host.shape[0]]
        with torch.cuda.stream(copy_stream):
            copy_stream.wait_event(free[index % 2])  # the compute that last read this device buffer is done
            target.copy_(host, non_blocking=True)
            ready[index % 2].record(copy_stream)
        torch.cuda.current_stream(self.device).wait_event(ready[index % 2])
        return rows, DenseMatrix(target)

    def chunks(self):
        """One pass: ``(rows, chunk)`` for every chunk, in order."""
        blocks = iter(self.source.factory()) if getattr(self.source, "factory", None) is not None else None
        streams = None
        if self.device.type == "cuda" and not self.source.sparse:
            self._buffers()
            streams = (torch.cuda.Stream(self.device), [torch.cuda.Event() for _ in range(2)],
                       [torch.cuda.Event() for _ in range(2)])
            for event in streams[2]:
                event.record(torch.cuda.current_stream(self.device))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastnmf-chunks") as reader:
            pending = reader.submit(self._read, 0, blocks)
            for index in range(len(self.ranges)):
                block = pending.result()
                self.reads += 1
                if streams is not None and index + 1 < len(self.ranges):
                    # The host buffer of chunk c+1 was last copied from for chunk c−1: wait for that copy.
                    streams[1][(index + 1) % 2].synchronize()
                chunk = self._to_device(index, block, streams)
                if index + 1 < len(self.ranges):
                    pending = reader.submit(self._read, index + 1, blocks)
                yield chunk
                if streams is not None:
                    streams[2][index % 2].record(torch.cuda.current_stream(self.device))
