"""Entry weights and missing values from the user's input: validation, and the layout they make.

:func:`weighted_data` validates the weights, applies ``missing_values``, checks X only where the weight is
positive (NaN with ``missing_values=np.nan``, huge or negative garbage elsewhere is ignored), and returns
the plain (dense or sparse) X when nothing is weighted — ``missing_values=np.nan`` on data without NaN
costs nothing afterwards — else a :class:`fastnmf.layouts.WeightedMatrix`.
"""

from __future__ import annotations

import math

import torch

from .layouts.sparse import SparseMatrix
from .layouts.weighted import Complement, WeightedMatrix
from .validation import as_tensor, check_finite_non_negative, check_sparse_values

__all__ = ["weighted_data", "check_missing_values"]

_NAN_HINT = " Pass missing_values=np.nan to treat NaN entries as missing (weight 0)."


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
        rows, columns = X.by_column.col_indices(), X.column_indices()
        holes = SparseMatrix.from_coo(rows[nan], columns[nan], torch.ones(int(nan.sum()), dtype=X.dtype, device=X.device),
                                      X.shape)
        # The missing entries leave X's pattern (not stored zeros): the sparse-complement pass counts each
        # entry of X once, stored or hole (WeightedMatrix.update_h).
        kept = ~nan
        X_clean = SparseMatrix.from_coo(rows[kept], columns[kept], X.values[kept], X.shape)
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
