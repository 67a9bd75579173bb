"""Ways of holding X: the layout contract (:mod:`.base`) and the layouts fastnmf builds from user input.

- :class:`DenseMatrix` — a dense tensor;
- :class:`SparseMatrix` — the CSR of X and of Xᵀ (never densified);
- :class:`WeightedMatrix` — X with entry weights (dense weights or a sparse pattern).

A new layout is one subclass of :class:`Layout` (docs/extending.md); the one MU, HALS and objective of
``fastnmf.updates`` and ``fastnmf.objective`` run on it unchanged, and ``fastnmf.backends`` dispatches it
to the generic torch implementation unless a faster one is registered for it.
"""

from .base import BLOCK_ENTRIES, Block, BlockPart, Layout, column_blocks, row_blocks
from .dense import DenseBlock, DenseMatrix
from .sparse import SparseBlock, SparseMatrix
from .weighted import Complement, WeightedMatrix

__all__ = [
    "Layout", "Block", "BlockPart", "BLOCK_ENTRIES", "column_blocks", "row_blocks",
    "DenseMatrix", "DenseBlock", "SparseMatrix", "SparseBlock", "WeightedMatrix", "Complement", "as_layout",
]


def as_layout(X) -> Layout:
    """A layout for what validation made of X: a dense tensor becomes a :class:`DenseMatrix`; layouts pass."""
    return X if isinstance(X, Layout) else DenseMatrix(X)
