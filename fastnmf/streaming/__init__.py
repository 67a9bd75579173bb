"""X larger than memory: row chunks streamed from disk or host memory, one read per iteration.

:mod:`.sources` reads chunks (memory maps, h5py datasets, backed AnnData, scipy sparse, user code through
:class:`Chunks`), :mod:`.loader` brings them to the device with the next read overlapping the current
compute, and ``fastnmf.layouts.streamed.StreamedMatrix`` is the layout that runs the one-pass iteration.
:func:`streamed_input` is what the fit path calls. docs/streaming.md: when X is streamed, the chunk size,
the memory formula.
"""

from __future__ import annotations

import numpy as np
import torch

from ..validation import InputKind
from .sources import ArrayRows, ChunkReadError, Chunks, SparseRows, as_source, is_out_of_core

__all__ = ["Chunks", "ArrayRows", "SparseRows", "ChunkReadError", "as_source", "is_out_of_core", "streamed_input",
           "should_stream"]


def should_stream(X, params: dict) -> bool:
    """Stream X when asked to (``chunk_rows`` or ``memory_budget``) or when it is not in memory."""
    return params["chunk_rows"] is not None or params["memory_budget"] is not None or is_out_of_core(X)


def streamed_input(X, params: dict, beta: float):
    """``(StreamedMatrix, InputKind)`` for X: chunk rows from ``chunk_rows``, else from the memory budget."""
    from ..layouts.streamed import DEFAULT_MEMORY_BUDGET, StreamedMatrix, chunk_rows_for_budget

    source = as_source(X)
    m, n = source.shape
    if m == 0 or n == 0:
        raise ValueError(f"Found empty X of shape {(m, n)}; NMF needs at least one entry.")
    dtype = torch.float32 if source.dtype in (np.float32, np.float16) else torch.float64
    device = torch.device(params["device"]) if params["device"] is not None else torch.device("cpu")
    chunk_rows = params["chunk_rows"]
    if chunk_rows is None and getattr(source, "factory", None) is None:
        budget = params["memory_budget"] or DEFAULT_MEMORY_BUDGET
        stored = getattr(getattr(source, "matrix", None), "nnz", None)
        chunk_rows = chunk_rows_for_budget(budget, n, torch.empty((), dtype=dtype).element_size(), beta,
                                           nnz_per_row=None if not source.sparse or stored is None else stored / m)
    layout = StreamedMatrix(source, chunk_rows=None if chunk_rows is None else min(int(chunk_rows), m), device=device,
                            dtype=dtype)
    if isinstance(X, torch.Tensor):
        kind = InputKind(is_torch=True, device=X.device)
    else:
        kind = InputKind(is_torch=False, numpy_dtype=np.dtype(np.float32 if dtype == torch.float32 else np.float64))
    return layout, kind
