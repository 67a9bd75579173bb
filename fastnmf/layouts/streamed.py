"""X streamed in row chunks from disk or host memory: a layout that reads X once per iteration.

:class:`StreamedMatrix` owns its pass (docs/architecture.md, "Layouts"). One iteration reads every chunk
X_c once: the chunk's rows of W are updated (they need X_c, the current H and H's k×k or k-vector
statistics), then, with the new W_c, the chunk's share of the H statistics is added (``rule.statistics`` is
additive over rows); after the last chunk ``rule.apply`` updates H. That is exactly the W-then-H order of the
in-memory solvers with X read once instead of twice.

The objective of iterate t (the ``tol`` test) comes from pass t+1: when the solver asks for it, the layout
runs the next pass, adding each chunk's ``D(X_c | W_c H)`` before W_c is updated, and keeps the new iterate
for the solver's next ``iteration`` call — so a check costs no extra pass and ``n_iter`` is the in-memory
fit's. (Before the first iteration, and for HALS extrapolation, whose half-updates come separately, the
objective is a pass of its own.) The first pass, when the layout is made, validates the values (finite,
non-negative) and measures ``max``, ``mean`` and nnz.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..objective import objective as torch_objective
from ..streaming.loader import ChunkLoader, row_ranges, sparse_chunk
from ..validation import check_finite_non_negative
from .base import BlockPart, Layout
from .dense import DenseMatrix
from .sparse import SparseMatrix

__all__ = ["StreamedMatrix", "chunk_rows_for_budget", "DEFAULT_MEMORY_BUDGET"]

#: the memory budget of X's chunks when X is not in memory and neither chunk_rows nor memory_budget is set.
DEFAULT_MEMORY_BUDGET = 512 << 20


def chunk_rows_for_budget(budget: int, n: int, itemsize: int, beta: float, *, nnz_per_row: float | None = None) -> int:
    """Rows per chunk so that a pass stays within ``budget`` bytes beyond the factors.

    Dense X: two host buffers and, on a GPU, two device buffers of ``rows × n`` values, plus the update's
    temporaries — one ``rows × n`` block for β = 2 (the objective's reconstruction), three for other β
    (``W_c H`` and the two β terms): ``rows · n · itemsize · (4 + t)``. Sparse X: ~40 bytes per stored entry
    (values and indices of the chunk's two CSRs, the SDDMM values, the host copy) and, for β ∉ {1, 2}, the
    three dense temporaries of a row block.
    """
    temporaries = 1 if beta == 2.0 else 3
    if nnz_per_row is not None:
        per_row = 40.0 * max(nnz_per_row, 1.0) + (0 if beta in (1.0, 2.0) else 3 * n * itemsize)
    else:
        per_row = float(n * itemsize * (4 + temporaries))
    return max(1, int(budget // per_row))


class StreamedMatrix(Layout):
    """X read in row chunks from ``source`` (``fastnmf.streaming.sources``) onto ``device``, in ``dtype``."""

    weighted = False
    description = "streamed X (chunks of rows)"

    def __init__(self, source, *, chunk_rows: int | None, device, dtype: torch.dtype, loader: ChunkLoader | None = None,
                 stats: dict | None = None):
        self.source, self.chunk_rows = source, chunk_rows
        self.implicit_zeros = bool(source.sparse)
        if loader is None:
            ranges = None if getattr(source, "factory", None) is not None else row_ranges(source.shape[0], chunk_rows)
            loader, stats = self._first_pass(source, ranges, device, dtype)
        self.loader, self.stats = loader, stats
        self._pending = None  # the next iterate, computed when the objective of the current one was asked for
        self._rules = None  # (rule_w, rule_h, update_w, update_h) of the last iteration

    @staticmethod
    def _first_pass(source, ranges, device, dtype):
        """Validate every chunk; measure max, sum and nnz (and the block sizes of a block iterator)."""
        measured = dict(max=0.0, sum=0.0, nnz=0 if source.sparse else None)

        def measure(rows: slice, chunk) -> None:
            values = chunk.by_row.values() if isinstance(chunk, SparseMatrix) else chunk.tensor
            try:
                check_finite_non_negative(values, "X")
            except ValueError as error:
                raise ValueError(f"{error} (in the chunk of rows {rows.start}:{rows.stop}; positions are within "
                                 "the chunk)") from None
            if values.numel():
                measured["max"] = max(measured["max"], float(values.max()))
                measured["sum"] += float(values.sum(dtype=torch.float64))
            if source.sparse:
                measured["nnz"] += int(values.numel())

        if ranges is None:  # Chunks.from_blocks: the blocks are the chunks; their sizes come from this pass
            ranges, start = [], 0
            for block in source.factory():
                chunk = (sparse_chunk(sp.csr_matrix(block), dtype, "cpu", 1.0) if source.sparse
                         else DenseMatrix(torch.as_tensor(np.asarray(block)).to(dtype)))
                measure(slice(start, start + block.shape[0]), chunk)
                ranges.append((start, start + block.shape[0]))
                start += block.shape[0]
            if start != source.shape[0]:
                raise ValueError(f"The blocks of the Chunks iterator cover {start} rows; its shape says {source.shape[0]}.")
        else:
            for rows, chunk in ChunkLoader(source, ranges, torch.device("cpu"), dtype).chunks():
                measure(rows, chunk)
        return ChunkLoader(source, ranges, device, dtype), measured

    def _derived(self, loader) -> "StreamedMatrix":
        return StreamedMatrix(self.source, chunk_rows=self.chunk_rows, device=loader.device, dtype=loader.dtype,
                              loader=loader, stats=self.stats)

    # --- the tensor-like surface ---------------------------------------------------------------------------

    @property
    def shape(self):
        return tuple(self.source.shape)

    @property
    def dtype(self):
        return self.loader.dtype

    @property
    def device(self):
        return self.loader.device

    @property
    def nnz(self):
        return self.stats["nnz"]

    @property
    def n_chunks(self) -> int:
        return len(self.loader.ranges)

    def max(self):
        return self.stats["max"] / self.loader.scale

    def mean(self, dtype=None):
        m, n = self.shape
        return self.stats["sum"] / self.loader.scale / (m * n)

    def __truediv__(self, scale):
        return self._derived(self.loader.with_scale(self.loader.scale * scale))

    def astype(self, dtype):
        return self if dtype == self.dtype else self._derived(self.loader.with_dtype(dtype))

    def init_data(self):
        return self  # the random start reads shape, mean() and device only (nndsvd is refused in fastnmf.fit)

    # --- passes ----------------------------------------------------------------------------------------------

    def chunks(self):
        """``(rows, chunk layout)`` for every chunk, read once."""
        return self.loader.chunks()

    def blocks(self, bounded=False):
        for rows, chunk in self.chunks():
            for part in chunk.blocks(bounded):
                start = rows.start + (part.rows.start or 0)
                stop = rows.start + (part.rows.stop if part.rows.stop is not None else rows.stop - rows.start)
                yield BlockPart(slice(start, stop), part.columns, part.block)

    def update_w(self, rule, W, H):
        parts, fit = [], None
        for rows, chunk in self.chunks():
            W_c, fit_c = chunk.update_w(rule, W[rows], H)
            parts.append(W_c)
            fit = fit_c if fit is None else fit + fit_c
        return torch.cat(parts), fit

    def update_h(self, rule, W, H):
        statistics = None
        for rows, chunk in self.chunks():
            part = rule.statistics(chunk, W[rows], H)
            statistics = part if statistics is None else statistics + part
        return rule.apply(H, statistics)

    def _key(self, W, H, rules):
        return (id(W), W._version, id(H), H._version, tuple(id(r) for r in rules[:2]), rules[2:])

    def _pass(self, rules, W, H, measure=None):
        """One read of X: the next iterate (and, with ``measure = (per_chunk, beta, eps_r)``, the
        objective of (W, H) from the same chunks)."""
        rule_w, rule_h, update_w, update_h = rules
        parts, statistics = [], None
        total = torch.zeros((), dtype=torch.float64, device=W.device)
        for rows, chunk in self.chunks():
            W_c = W[rows]
            if measure is not None:
                per_chunk, beta, eps_r = measure
                total += per_chunk(chunk, W_c, H, beta=beta, eps_r=eps_r)
            if update_w:
                W_c, _ = chunk.update_w(rule_w, W_c, H)
            if update_h:
                part = rule_h.statistics(chunk, W_c, H)
                statistics = part if statistics is None else statistics + part
            parts.append(W_c)
        W_new = torch.cat(parts) if update_w else W
        H_new = rule_h.apply(H, statistics)[0] if update_h else H
        return W_new, H_new, total

    def iteration(self, rule_w, rule_h, W, H, update_w=True, update_h=True):
        rules = (rule_w, rule_h, update_w, update_h)
        self._rules = rules
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == self._key(W, H, rules) and pending[1] is W and pending[2] is H:
            return pending[3], pending[4]
        W_new, H_new, _ = self._pass(rules, W, H)
        return W_new, H_new

    def objective(self, W, H, *, beta: float, eps_r: float, per_chunk=torch_objective) -> torch.Tensor:
        """``D_β(X | WH)`` summed over the chunks — from the pass that makes the next iterate when the last
        call was an ``iteration`` (module docstring), else from a pass of its own."""
        if self._rules is None:
            total = torch.zeros((), dtype=torch.float64, device=W.device)
            for rows, chunk in self.chunks():
                total += per_chunk(chunk, W[rows], H, beta=beta, eps_r=eps_r)
            return total
        W_new, H_new, total = self._pass(self._rules, W, H, measure=(per_chunk, beta, eps_r))
        self._pending = (self._key(W, H, self._rules), W, H, W_new, H_new)
        return total

