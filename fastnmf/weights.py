"""Entry weights and missing values: X together with non-negative weights M of its shape.

The weighted objective is ``Σ_ij M_ij d_β(X_ij | (WH)_ij)``: an entry of weight 0 is left out, whatever X
holds there (NaN with ``missing_values=np.nan``, huge or negative garbage). :func:`weighted_data` validates
the weights, applies ``missing_values``, checks X only where the weight is positive, and returns one of:

- the plain (dense or sparse) X, when nothing is weighted — ``missing_values=np.nan`` on data without NaN
  costs nothing afterwards;
- a :class:`WeightedMatrix` whose weights are a :class:`fastnmf.sparse.SparseMatrix` (a *pattern*: weight 0
  outside it, e.g. the observed entries of a ratings matrix). X is then kept at the pattern only, with the
  same entry order as M, and every product costs O(nnz(M)·k);
- a :class:`WeightedMatrix` whose weights are dense: a tensor of X's shape, or :class:`Complement` (all
  ones except the NaN entries of a sparse X). Products visit every entry in bounded column blocks,
  O(m·n·k) (``fastnmf.backend_weighted``).

In every case the entries of weight 0 hold 0 in the stored X, so that the initialization (which sees X
only) and the safeguard floor ``eps_r = eps · max(X)`` do not depend on what the user left there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .sparse import SparseMatrix
from .validation import as_tensor, check_finite_non_negative, check_sparse_values

__all__ = ["WeightedMatrix", "Complement", "weighted_data", "check_missing_values"]

_NAN_HINT = " Pass missing_values=np.nan to treat NaN entries as missing (weight 0)."


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
class WeightedMatrix:
    """X (dense tensor or :class:`SparseMatrix`, 0 wherever the weight is 0) with entry weights ``M``
    (dense tensor, :class:`SparseMatrix` with X's pattern, or :class:`Complement`); ``.T`` transposes both.

    Offers the tensor-like surface of the fit path (``shape``, ``dtype``, ``device``, ``max``, ``mean``,
    ``to``, ``/``), all about X.
    """

    X: object
    M: object

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

    def to(self, dtype: torch.dtype | None = None) -> "WeightedMatrix":
        return WeightedMatrix(self.X.to(dtype), self.M)

    def __truediv__(self, scale: float) -> "WeightedMatrix":
        return WeightedMatrix(self.X / scale, self.M)

    def column_block(self, columns: slice, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense m×b blocks ``(X[:, columns], M[:, columns])`` in ``dtype`` (dense weights only)."""
        X_block = self.X[:, columns].to(dtype) if isinstance(self.X, torch.Tensor) else self.X.column_block(columns, dtype)
        M = self.M
        M_block = M[:, columns].to(dtype) if isinstance(M, torch.Tensor) else M.column_block(columns, dtype)
        return X_block, M_block


def check_missing_values(missing_values) -> None:
    """``missing_values`` is None or NaN (the only missing-value marker fastnmf reads)."""
    if missing_values is None:
        return
    if isinstance(missing_values, float) and math.isnan(missing_values):
        return
    raise ValueError(f"Invalid missing_values={missing_values!r}: expected None or np.nan.")


def _nan_error(X, name: str) -> ValueError:
    try:
        if isinstance(X, SparseMatrix):
            check_sparse_values(X, name, hint=_NAN_HINT)
        else:
            check_finite_non_negative(X, name, hint=_NAN_HINT)
    except ValueError as error:
        return error
    raise AssertionError("unreachable: X holds NaN")  # pragma: no cover


def weighted_data(X, weights=None, missing_values=None, name: str = "X"):
    """Combine X (from ``as_tensor(..., check_values=False)``) with ``weights`` and ``missing_values``.

    Returns the plain X when nothing is weighted, else a :class:`WeightedMatrix` (see the module
    docstring). Raises ValueError, naming the value and its position, for: NaN in X without
    ``missing_values=np.nan``; negative or non-finite X where the weight is positive; negative, NaN or
    infinite weights; weights of another shape than X.
    """
    check_missing_values(missing_values)
    is_sparse = isinstance(X, SparseMatrix)
    stored = X.values if is_sparse else X
    nan = torch.isnan(stored)
    has_nan = bool(nan.any())
    if has_nan and missing_values is None:
        raise _nan_error(X, name)
    if weights is None:
        return _missing_only(X, nan, has_nan, name)
    M, _ = as_tensor(weights, "weights", device=X.device)
    if tuple(M.shape) != tuple(X.shape):
        raise ValueError(
            f"weights has shape {tuple(M.shape)} but {name} has shape {tuple(X.shape)}: entry weights need "
            f"one non-negative weight per entry of {name}."
        )
    if isinstance(M, SparseMatrix):
        return _on_pattern(X, M, name)
    return _dense_weights(X, M, nan, has_nan, name)


def _check(X, name: str) -> None:
    if isinstance(X, SparseMatrix):
        check_sparse_values(X, name)
    else:
        check_finite_non_negative(X, name)


def _missing_only(X, nan, has_nan: bool, name: str):
    """Weights 1, except 0 at the NaN entries of X."""
    if not has_nan:
        _check(X, name)
        return X
    if isinstance(X, SparseMatrix):
        rows, columns = X.by_column.col_indices()[nan], X.column_indices()[nan]
        holes = SparseMatrix.from_coo(rows, columns, torch.ones(rows.numel(), dtype=X.dtype, device=X.device), X.shape)
        X_clean = X.with_values(X.values.masked_fill(nan, 0.0))
        _check(X_clean, name)
        return WeightedMatrix(X_clean, Complement(holes))
    X_clean = X.masked_fill(nan, 0.0)
    _check(X_clean, name)
    return WeightedMatrix(X_clean, ~nan)  # bool weights: 1 byte per entry, cast per block


def _dense_weights(X, M: torch.Tensor, nan, has_nan: bool, name: str):
    """Weights given as a dense tensor of X's shape."""
    if isinstance(X, SparseMatrix):
        rows, columns = X.by_column.col_indices(), X.column_indices()
        ignored = (M[rows, columns] == 0) | nan
        X_clean = X.with_values(X.values.masked_fill(ignored, 0.0))
        if has_nan:
            M = M.clone()
            M[rows[nan], columns[nan]] = 0
    else:
        X_clean = X.masked_fill((M == 0) | nan, 0.0)
        if has_nan:
            M = M.masked_fill(nan, 0)
    _check(X_clean, name)
    return WeightedMatrix(X_clean, M)


def _on_pattern(X, M: SparseMatrix, name: str):
    """Weights given as a sparse matrix: X is needed at its stored entries only."""
    rows, columns, weight = M.row_indices(), M.by_row.col_indices(), M.by_row.values()
    x = _values_at(X, rows, columns)
    # Entries of weight 0, and missing entries, carry nothing: leave them out of the pattern.
    keep = (weight > 0) & ~torch.isnan(x)
    X_pattern, M_pattern = SparseMatrix.from_coo(rows[keep], columns[keep], (x[keep], weight[keep]), X.shape)
    _check(X_pattern, name)
    return WeightedMatrix(X_pattern, M_pattern)


def _values_at(X, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``X[rows, columns]`` for a dense or sparse X (0 where a sparse X stores nothing), O(len · log nnz)."""
    if not isinstance(X, SparseMatrix):
        return X[rows, columns]
    n = X.shape[1]
    stored = X.row_indices() * n + X.by_row.col_indices()  # ascending: row-major order
    wanted = rows * n + columns
    if stored.numel() == 0:
        return torch.zeros(wanted.numel(), dtype=X.dtype, device=X.device)
    position = torch.searchsorted(stored, wanted).clamp_max_(stored.numel() - 1)
    found = stored[position] == wanted
    return torch.where(found, X.by_row.values()[position], torch.zeros((), dtype=X.dtype, device=X.device))
