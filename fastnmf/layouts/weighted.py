"""Entry weights as a layout: X together with non-negative weights M of its shape.

The weighted objective is ``Σ_ij M_ij d_β(X_ij | (WH)_ij)``: an entry of weight 0 is left out, whatever X
holds there. :func:`fastnmf.weights.weighted_data` builds a :class:`WeightedMatrix` from the user's X,
weights and ``missing_values``; the weights are either

- a :class:`fastnmf.layouts.SparseMatrix` (a *pattern*: weight 0 outside it, e.g. the observed entries of a
  ratings matrix; X is then kept at the pattern only, with the same entry order as M): one sparse block,
  every product O(nnz(M)·k);
- dense: a tensor of X's shape, or :class:`Complement` (all ones except the NaN entries of a sparse X):
  m×b column blocks of X and M, every product O(m·n·k), never an m×n temporary — except MU at β ∈ {1, 2}
  with :class:`Complement` weights, whose updates and objective use the sparse X and its holes only,
  O((nnz + holes)·k) (:attr:`WeightedMatrix.sparse_complement`).

The entries of weight 0 hold 0 in the stored X, so that the initialization (which sees X only) and the
safeguard floor ``eps_r = eps · max(X)`` do not depend on what the user left there.

As a layout, a :class:`WeightedMatrix` is :attr:`~fastnmf.layouts.Layout.weighted`: its blocks carry the
weights, so the one MU of ``fastnmf.updates`` forms ``Wᵀ(M∘X∘(WH)^(β−2))`` and ``Wᵀ(M∘(WH)^(β−1))`` (the
weights break the Gram trick and the column sums) and the one objective sums ``M ∘ d_β``. HALS has no
weighted form. The maths: docs/maths.md, section "Sparse and weighted X".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import BlockPart, Layout, column_blocks
from .dense import DenseBlock
from .sparse import SparseBlock, SparseMatrix

__all__ = ["WeightedMatrix", "Complement"]

_ALL = slice(None)


@dataclass(frozen=True)
class Complement:
    """Weights ``M = 1 − Z`` for the 0/1 pattern Z of the missing entries (``holes``) of a sparse X."""

    holes: SparseMatrix

    @property
    def T(self) -> "Complement":
        return Complement(self.holes.T)

    @property
    def shape(self):
        return self.holes.shape

    def column_block(self, columns: slice, dtype: torch.dtype) -> torch.Tensor:
        return 1.0 - self.holes.column_block(columns, dtype)


@dataclass(frozen=True)
class WeightedMatrix(Layout):
    """X (dense tensor or :class:`SparseMatrix`, 0 wherever the weight is 0) with entry weights ``M``
    (dense tensor, :class:`SparseMatrix` with X's pattern, or :class:`Complement`); ``.T`` transposes both.

    Offers the tensor-like surface of the fit path (``shape``, ``dtype``, ``device``, ``max``, ``mean``,
    ``to``, ``/``), all about X.
    """

    X: object
    M: object
    weighted = True
    description = "entry weights or missing values"

    @property
    def on_pattern(self) -> bool:
        """True when the weights are a sparse pattern shared with X (products at the pattern only)."""
        return isinstance(self.M, SparseMatrix)

    @property
    def T(self) -> "WeightedMatrix":
        return WeightedMatrix(self.X.T, self.M.T)

    @property
    def shape(self):
        return self.X.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.X.dtype

    @property
    def device(self) -> torch.device:
        return self.X.device

    def numel(self) -> int:
        return self.X.numel()

    def element_size(self) -> int:
        return self.X.element_size()

    def max(self) -> torch.Tensor:
        return self.X.max()

    def mean(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return self.X.mean(dtype=dtype)

    @property
    def nnz(self) -> int | None:
        return self.X.nnz if isinstance(self.X, SparseMatrix) else None

    def to(self, dtype: torch.dtype | None = None) -> "WeightedMatrix":
        return WeightedMatrix(self.X.to(dtype), self.M)

    def astype(self, dtype: torch.dtype) -> "WeightedMatrix":
        return self if dtype == self.dtype else self.to(dtype)

    def init_data(self):
        return self.X

    def blocks(self, bounded: bool = False):
        if self.on_pattern:
            yield BlockPart(_ALL, _ALL, SparseBlock(self.X, self.M.values))
            return
        # Dense weights: m×b column blocks of X and M (every entry is visited; bounded either way).
        m, n = self.shape
        for columns in column_blocks(m, n):
            yield BlockPart(_ALL, columns, DenseBlock(*self.column_block(columns, self.dtype)))

    def __truediv__(self, scale: float) -> "WeightedMatrix":
        return WeightedMatrix(self.X / scale, self.M)

    # --- sparse X with a few entries left out (Complement weights): the pass at O((nnz + holes)·k) -------

    @property
    def sparse_complement(self) -> bool:
        """Sparse X with weights 1 except at the sparse ``holes`` (missing values, held-out entries): for MU
        at β ∈ {1, 2} every product and the objective cost O((nnz + holes)·k), not a pass over all m·n."""
        return isinstance(self.X, SparseMatrix) and isinstance(self.M, Complement)

    def _complement_rule(self, rule) -> bool:
        from ..updates import MURule  # the rules import the layouts: a module-level import would cycle

        return self.sparse_complement and isinstance(rule, MURule) and rule.beta in (1.0, 2.0)

    def update_h(self, rule, W: torch.Tensor, H: torch.Tensor):
        """MU at β ∈ {1, 2} on a sparse complement (Z = the holes, X 0 there, so ``M∘X = X``):
        numerator ``Wᵀ(X / R)`` (KL) or ``WᵀX`` at X's stored entries; denominator ``Wᵀ(1 − Z) =
        colsum(W) − WᵀZ`` (KL) or ``Wᵀ((1 − Z)∘R) = (WᵀW)H − Wᵀ(Z∘R)``, R = WH sampled at the holes only.
        Every other rule: the blocked pass over all entries (``rule.update``)."""
        if not self._complement_rule(rule):
            return rule.update(self, W, H)
        from ..updates import MUStatistics

        holes = self.M.holes
        if rule.beta == 1.0:
            r = self.X.sampled_product(W, H).clamp_min_(rule.eps_r)
            numerator = self.X.left_product(W, self.X.values.to(r.dtype) / r)
            denominator = W.sum(dim=0).unsqueeze(1) - holes.left_product(W)  # the holes store ones: WᵀZ
        else:
            numerator = self.X.left_product(W)
            denominator = (W.T @ W) @ H - holes.left_product(W, holes.sampled_product(W, H))
        return rule.apply(H, MUStatistics(numerator, denominator))

    def update_w(self, rule, W: torch.Tensor, H: torch.Tensor):
        W_new_t, fit = self.T.update_h(rule, H.T, W.T)
        return W_new_t.T, fit

    def complement_objective(self, W: torch.Tensor, H: torch.Tensor, beta: float, eps_r: float) -> torch.Tensor:
        """``Σ_(1−Z) d_β(x | r)`` for β ∈ {1, 2}: the sparse objective of X (holes not stored) minus the holes'
        zero-data terms ``d_β(0 | r)`` (r for KL, ½r² for Frobenius; unfloored, as the sparse objective's
        zeros), float64."""
        from ..objective import objective

        r = self.M.holes.sampled_product(W.double(), H.double())
        at_holes = torch.sum(r) if beta == 1.0 else 0.5 * torch.sum(r * r)
        return objective(self.X, W, H, beta=beta, eps_r=eps_r) - at_holes

    def column_block(self, columns: slice, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense m×b blocks ``(X[:, columns], M[:, columns])`` in ``dtype`` (dense weights only)."""
        X_block = self.X[:, columns].to(dtype) if isinstance(self.X, torch.Tensor) else self.X.column_block(columns, dtype)
        M = self.M
        M_block = M[:, columns].to(dtype) if isinstance(M, torch.Tensor) else M.column_block(columns, dtype)
        return X_block, M_block


