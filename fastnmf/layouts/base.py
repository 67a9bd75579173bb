"""The layout contract: what the one MU, the one HALS and the one objective need from a way of holding X.

A *layout* is X held some way — a dense tensor (:class:`fastnmf.layouts.DenseMatrix`), a sparse matrix
(:class:`fastnmf.layouts.SparseMatrix`), X with entry weights (:class:`fastnmf.layouts.WeightedMatrix`), and
whatever comes next (shards of a process grid, batches, streams of row chunks). Every product is written
for the H update of ``X ≈ WH`` (W m×k, H k×n); the W update is the H update of ``Xᵀ ≈ Hᵀ Wᵀ`` on
:attr:`Layout.T` (views, no copies).

A layout provides (docs/architecture.md, section "Layouts"):

- :meth:`Layout.blocks`: the parts of X where entries are *stored*, each a :class:`Block` — the values x,
  their weights (or None), the reconstruction ``WH`` at those entries and the product ``Wᵀ·V`` for values V
  shaped like x. Blocks cover disjoint rectangles (rows × columns) of X; their products add up.
- flags: :attr:`weighted` (weights present: no Gram or column-sum shortcuts, no HALS) and
  :attr:`implicit_zeros` (entries outside the blocks are zeros of X that still count — sparse X — so the
  terms that do not vanish at x = 0 need a pass over every entry: :meth:`power_products`,
  :meth:`zero_divergence_sum`).
- the pass over its data: :meth:`update_h`, :meth:`update_w` and :meth:`iteration` (W then H) call the
  update rules of ``fastnmf.updates``; a layout that streams its data or ends its products in collectives
  overrides them (statistics are additive over rows and columns: ``rule.statistics`` of each part, summed
  or all-reduced, then ``rule.apply``).
- the tensor-like surface of the fit path: ``shape``, ``dtype``, ``device``, ``max()``, ``mean()``,
  ``/ scale``, :meth:`astype`, :meth:`init_data`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator, NamedTuple

import torch

from ..losses import zero_data_divergence

__all__ = ["Layout", "Block", "BlockPart", "BLOCK_ENTRIES", "column_blocks", "row_blocks"]

# Passes that visit every entry form blocks of at most this many entries (16 MiB in float32, 32 MiB in
# float64): bounded memory, and blocks large enough that their GEMMs run at full speed.
BLOCK_ENTRIES = 1 << 22


def column_blocks(m: int, n: int) -> list[slice]:
    """``slice``s of ≤ ``BLOCK_ENTRIES // m`` columns (at least one) covering ``range(n)``."""
    width = max(1, BLOCK_ENTRIES // max(m, 1))
    return [slice(start, min(start + width, n)) for start in range(0, n, width)]


def row_blocks(m: int, n: int) -> list[slice]:
    """``slice``s of ≤ ``BLOCK_ENTRIES // n`` rows (at least one) covering ``range(m)``."""
    height = max(1, BLOCK_ENTRIES // max(n, 1))
    return [slice(start, min(start + height, m)) for start in range(0, m, height)]


class Block(ABC):
    """Stored entries of one part of X, and the two products every update needs there."""

    @property
    @abstractmethod
    def x(self) -> torch.Tensor:
        """X's values at the stored entries (a dense tensor for a dense block, a vector for a sparse one)."""

    @property
    def weight(self) -> torch.Tensor | None:
        """Entry weights shaped like :attr:`x`, or None (every stored entry has weight 1)."""
        return None

    @abstractmethod
    def reconstruction(self, W: torch.Tensor, H: torch.Tensor, workspace=None) -> torch.Tensor:
        """``(WH)`` at the stored entries, shaped like :attr:`x` (a tensor the caller may modify). A dense
        block writes it into a reused buffer of its layout's workspace, overwritten by the next call, or of
        ``workspace`` (a :class:`fastnmf.layouts.dense.Workspace`) when the caller needs two at once; other
        blocks return a new tensor."""

    @abstractmethod
    def wt_dot(self, W: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``Wᵀ·V`` (k × the block's columns) for V with :attr:`x`'s shape, holding ``values``."""


class BlockPart(NamedTuple):
    """A block and where it lies in X: rows of X (and W), columns of X (and H)."""

    rows: slice
    columns: slice
    block: Block


_ALL = slice(None)


class Layout(ABC):
    """X held some way (see the module docstring). Subclasses implement the abstract members."""

    #: weights present (the objective is ``Σ M_ij d_β(X_ij | (WH)_ij)``): no Gram trick, no HALS.
    weighted: bool = False
    #: entries outside the blocks are zeros of X that count (sparse X without weights).
    implicit_zeros: bool = False
    #: what this layout holds, for error messages ("entry weights or missing values").
    description: str = "this data layout"

    # --- the tensor-like surface of the fit path -------------------------------------------------------

    @property
    @abstractmethod
    def shape(self) -> tuple[int, int]: ...

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype: ...

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    def T(self) -> "Layout":
        """Xᵀ as a layout (views). A layout without one overrides :meth:`update_w` instead."""
        raise NotImplementedError(f"{type(self).__name__} has no transposed view: it must override update_w.")

    @property
    def nnz(self) -> int | None:
        """Stored entries, or None when every entry is stored (dense)."""
        return None

    @property
    def nbytes(self) -> int:
        """Bytes X's values take (for memory messages)."""
        m, n = self.shape
        return (self.nnz if self.nnz is not None else m * n) * torch.empty((), dtype=self.dtype).element_size()

    @abstractmethod
    def max(self) -> torch.Tensor | float:
        """Largest entry of X (0-d tensor or float)."""

    @abstractmethod
    def mean(self, dtype: torch.dtype | None = None) -> torch.Tensor | float:
        """Mean of all m·n entries of X."""

    @abstractmethod
    def __truediv__(self, scale: float) -> "Layout":
        """X / scale (the power-of-two rescaling of ``fastnmf.scaling``)."""

    @abstractmethod
    def astype(self, dtype: torch.dtype) -> "Layout":
        """X with values in ``dtype`` (self when it already is)."""

    @abstractmethod
    def init_data(self):
        """What ``fastnmf.init`` reads: a dense tensor or a ``SparseMatrix`` holding X (0 where unweighted)."""

    # --- the parts of X ------------------------------------------------------------------------------

    @abstractmethod
    def blocks(self, bounded: bool = False) -> Iterator[BlockPart]:
        """The stored parts of X. ``bounded=True``: none larger than about ``BLOCK_ENTRIES`` temporaries of
        the reconstruction (the objective's passes); ``False``: whatever is fastest (the updates)."""

    # --- products with defaults written against the blocks ----------------------------------------------

    def wt_x(self, W: torch.Tensor) -> torch.Tensor:
        """``WᵀX`` (k×n), summed over the blocks (X's values only: weights do not enter, and the rules
        call it for unweighted layouts only)."""
        k, n = W.shape[1], self.shape[1]
        return accumulate_columns(((part.columns, part.block.wt_dot(W[part.rows], part.block.x))
                                   for part in self.blocks()), (k, n), W)

    def gram(self, W: torch.Tensor) -> torch.Tensor:
        """``WᵀW`` (k×k). A sharded layout all-reduces it."""
        return W.T @ W

    def component_norms(self, W: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(‖w_j‖, ‖h_j‖)`` for every component j (columns of W, rows of H). A sharded layout, whose
        solver holds parts of the factors, all-reduces the squares."""
        return W.norm(dim=0), H.norm(dim=1)

    def column_sums(self, W: torch.Tensor) -> torch.Tensor:
        """``Wᵀ1`` as a k×1 column (the KL denominator, broadcast over the columns of H)."""
        return W.sum(dim=0).unsqueeze(1)

    def power_products(self, W: torch.Tensor, H: torch.Tensor, exponent: float, eps_r: float | None) -> torch.Tensor:
        """``Wᵀ max(WH, eps_r)^exponent`` (k×n) over *every* entry, m×b column blocks of WH at a time
        (4·m·n·k flops, bounded memory). ``eps_r=None``: no floor (β > 2)."""
        m, n = self.shape
        out = torch.empty(H.shape, dtype=H.dtype, device=H.device)
        for columns in column_blocks(m, n):
            R = W @ H[:, columns]
            if eps_r is not None:
                R.clamp_min_(eps_r)
            out[:, columns] = W.T @ (R.reciprocal_() if exponent == -1.0 else R.pow_(exponent))
        return out

    def zero_divergence_sum(self, W: torch.Tensor, H: torch.Tensor, beta: float, eps_r: float) -> torch.Tensor:
        """``Σ d_β(0 | r)`` over every entry (float64), with r = WH unfloored for β ∈ {1, 2} (closed forms
        from the factors' sums and Grams) and ``max(WH, eps_r)`` otherwise (column blocks of WH)."""
        W64, H64 = W.double(), H.double()
        if beta == 0.0:
            return torch.zeros((), dtype=torch.float64, device=W.device)
        if beta == 1.0:
            return torch.dot(W64.sum(dim=0), H64.sum(dim=1))
        if beta == 2.0:
            return 0.5 * torch.sum((W64.T @ W64) * (H64 @ H64.T))
        m, n = self.shape
        total = torch.zeros((), dtype=torch.float64, device=W.device)
        for columns in column_blocks(m, n):
            # WH in the factors' dtype, then float64 for the powers — as the dense objective does.
            R = (W @ H[:, columns]).double()
            if beta < 2.0:
                R.clamp_min_(eps_r)
            total += zero_data_divergence(R, beta).sum()
        return total

    # --- the pass over the data ----------------------------------------------------------------------

    def update_h(self, rule, W: torch.Tensor, H: torch.Tensor):
        """``rule``'s update of H for ``X ≈ WH``: ``(H_new, fit)`` (``fastnmf.updates``)."""
        return rule.update(self, W, H)

    def update_w(self, rule, W: torch.Tensor, H: torch.Tensor):
        """``rule``'s update of W: the H update of ``Xᵀ ≈ Hᵀ Wᵀ``; returns ``(W_new, fit)``."""
        W_new_t, fit = rule.update(self.T, H.T, W.T)
        return W_new_t.T, fit

    def iteration(self, rule_w, rule_h, W: torch.Tensor, H: torch.Tensor, update_w: bool = True,
                  update_h: bool = True):
        """One iteration, W then H (scikit-learn's order); returns ``(W, H)``."""
        if update_w:
            W, _ = self.update_w(rule_w, W, H)
        if update_h:
            H, _ = self.update_h(rule_h, W, H)
        return W, H


def accumulate_columns(parts, shape, like: torch.Tensor) -> torch.Tensor:
    """Sum ``(columns, k×b product)`` pairs into a k×n tensor; a single full-width part is returned as is."""
    total = None
    for columns, product in parts:
        if total is None and columns == _ALL and tuple(product.shape) == tuple(shape):
            total = product
            continue
        if total is None:
            total = torch.zeros(shape, dtype=product.dtype, device=like.device)
        total[:, columns] += product
    return total if total is not None else torch.zeros(shape, dtype=like.dtype, device=like.device)
