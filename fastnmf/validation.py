"""Input validation: every bad input is rejected before any work, with the problem and the value named.

numpy (and anything array-like) goes through scikit-learn's ``check_array`` — the messages users and
``check_estimator`` already know — then through the same non-negativity check as torch tensors.
Sparse input (scipy.sparse in any format, torch sparse COO/CSR/CSC/BSR) becomes a
:class:`fastnmf.layouts.SparseMatrix` — never a dense array — and its stored values get the same checks,
with messages naming the (row, column) of the entry.
Nothing here modifies its input: conversions make copies only when the dtype, device or layout changes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Union

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import check_array

from .layouts.base import Layout
from .layouts.sparse import SparseMatrix

__all__ = [
    "ArrayLike",
    "InputKind",
    "as_tensor",
    "is_sparse_input",
    "check_finite_non_negative",
    "check_sparse_values",
    "check_factor",
]

# What fits return: numpy arrays for numpy or scipy input, torch tensors for torch input (InputKind.output).
ArrayLike = Union[np.ndarray, torch.Tensor]

_HALF = (torch.float16, torch.bfloat16)
_NUMPY_OF_TORCH = {torch.float32: np.float32, torch.float64: np.float64}


@dataclass(frozen=True)
class InputKind:
    """How the user gave X, so that results go back the same way (numpy in → numpy out)."""

    is_torch: bool
    numpy_dtype: np.dtype | None = None
    device: torch.device | None = None  # where a torch X lived (results go back there)

    def output(self, tensor: torch.Tensor):
        if self.is_torch:
            return tensor.to(self.device)
        return tensor.detach().cpu().numpy().astype(self.numpy_dtype, copy=False)


def _describe_index(index: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(i)) for i in index) + ")"


def check_finite_non_negative(
    X: torch.Tensor, name: str, context: str = "NMF", *, positions: torch.Tensor | None = None, hint: str = ""
) -> None:
    """Raise ValueError naming the first NaN/Inf or negative entry of ``X``.

    ``positions``: when ``X`` is the vector of stored values of a sparse matrix, their (row, column)
    coordinates as a 2×nnz tensor, so that the message names the entry of the matrix. ``hint`` is appended
    to the NaN/Inf message.
    """
    if X.numel() == 0:
        return
    if X.is_floating_point() and X.dtype not in _HALF:
        # One cheap pass decides the common case: a finite sum means no NaN or infinity (they propagate), and
        # a non-negative minimum no negative entry. torch.isfinite(X).all() cost 1.1 s on 1 GiB of float32
        # (a bool tensor of X's size), sum and min 0.03 s each. A sum that overflows falls through to the
        # exact search below, which also names the entry.
        if math.isfinite(float(X.sum())) and float(X.min()) >= 0:
            return

    def where(flat_index) -> str:
        index = tuple(flat_index.tolist()) if positions is None else tuple(positions[:, int(flat_index[0])].tolist())
        return _describe_index(index)

    finite = torch.isfinite(X)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0]
        count = int((~finite).sum())
        value = X[tuple(bad)].item()
        raise ValueError(
            f"Input {name} contains NaN or infinity: {count} non-finite entr{'y' if count == 1 else 'ies'}, "
            f"the first {value} at {where(bad)}. {context} needs finite values.{hint}"
        )
    negative_min = X.min()
    if bool(negative_min < 0):
        smallest = (X == negative_min).nonzero()[0]
        count = int((X < 0).sum())
        raise ValueError(
            f"Negative values in data passed to {context} ({name}): {count} negative "
            f"entr{'y' if count == 1 else 'ies'}, the smallest {negative_min.item():.6g} at "
            f"{where(smallest)}. NMF needs non-negative data."
        )


def check_sparse_values(X: SparseMatrix, name: str, context: str = "NMF", hint: str = "") -> None:
    """:func:`check_finite_non_negative` on the stored values of ``X``, in row-major order."""
    csr = X.by_row
    check_finite_non_negative(csr.values(), name, context, positions=torch.stack([X.row_indices(), csr.col_indices()]),
                              hint=hint)


def _check_tensor_dtype(X: torch.Tensor, name: str) -> torch.Tensor:
    if X.is_complex():
        raise TypeError(f"Input {name} has complex dtype {X.dtype}; NMF needs real, non-negative data.")
    if X.layout != torch.strided:
        raise TypeError(f"{name} must be a dense tensor, got layout {X.layout}.")
    if not X.is_floating_point():
        # Integer (or bool) counts are converted, as scikit-learn does; torch's default float dtype.
        return X.to(torch.get_default_dtype())
    return X


def _share_numpy(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing the array's memory, without a copy. fastnmf never writes to X, so torch's warning
    about read-only arrays (e.g. memory-mapped data) does not apply; it is silenced rather than paying
    for a copy of X."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def _check_shape(shape, name: str, context: str) -> None:
    if len(shape) != 2:
        raise ValueError(f"Expected a 2-D {name}, got shape {tuple(shape)}.")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"Found empty {name} of shape {tuple(shape)}; {context} needs at least one entry.")


def _sparse_coordinates(X, name: str):
    """``(rows, cols, values, shape, kind)`` of a scipy.sparse matrix or torch sparse tensor, never dense.

    Values follow the dense rules: scipy float32/float64 keep their dtype, other numbers become float64;
    torch float32/float64 keep theirs, float16/bfloat16 become float32 (the sparse products run in the
    factors' dtype), integers the default float dtype.
    """
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D {name}, got a scipy.sparse {X.format} of shape {X.shape}.")
        if np.issubdtype(X.dtype, np.complexfloating):
            raise ValueError(f"Complex data not supported: {name} is a scipy.sparse matrix of dtype {X.dtype}.")
        coo = X.tocoo()  # the matrix itself for COO, an O(nnz) copy otherwise (DOK, LIL, …); never dense
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        values = torch.from_numpy(np.asarray(coo.data, dtype=dtype))
        rows, cols = torch.from_numpy(np.asarray(coo.row, dtype=np.int64)), torch.from_numpy(np.asarray(coo.col, dtype=np.int64))
        return rows, cols, values, tuple(X.shape), InputKind(is_torch=False, numpy_dtype=np.dtype(dtype))
    if X.is_complex():
        raise TypeError(f"Input {name} has complex dtype {X.dtype}; NMF needs real, non-negative data.")
    if X.ndim != 2 or X.dense_dim() != 0:
        raise ValueError(f"Expected a 2-D sparse {name} without dense dimensions, got shape {tuple(X.shape)} "
                         f"with {X.dense_dim()} dense dimension(s).")
    coo = X if X.layout == torch.sparse_coo else X.to_sparse_coo()
    # Uncoalesced indices and values as stored: SparseMatrix.from_coo sums duplicates itself.
    indices, values = coo._indices(), coo._values()
    if not values.is_floating_point():
        values = values.to(torch.get_default_dtype())
    elif values.dtype in _HALF:
        values = values.float()
    return indices[0], indices[1], values, tuple(X.shape), InputKind(is_torch=True, device=X.device)


def _as_sparse_matrix(X, name: str, context: str, device) -> tuple[SparseMatrix, InputKind]:
    rows, cols, values, shape, kind = _sparse_coordinates(X, name)
    _check_shape(shape, name, context)
    if device is not None:
        rows, cols, values = rows.to(device), cols.to(device), values.to(device)
    return SparseMatrix.from_coo(rows, cols, values, shape), kind


def is_sparse_input(X) -> bool:
    """True for a scipy.sparse matrix/array or a torch tensor in a sparse layout."""
    return sp.issparse(X) or (isinstance(X, torch.Tensor) and X.layout != torch.strided)


def as_tensor(
    X, name: str = "X", *, context: str = "NMF", device=None, check_values: bool = True
) -> tuple[torch.Tensor | SparseMatrix, InputKind]:
    """Validate ``X`` (2-D, non-empty, finite, non-negative) and return it as a tensor and its kind.

    numpy float32/float64 keep their dtype; other numeric dtypes become float64 (scikit-learn's rule).
    torch float16/bfloat16/float32/float64 keep theirs; integer tensors become the default float dtype.
    Sparse input (scipy.sparse, torch sparse) becomes a :class:`fastnmf.layouts.SparseMatrix`; its kind
    says numpy (scipy in) or torch (torch in), which is what results are returned as.
    ``check_values=False`` leaves the values unchecked (entry weights: the caller checks where they count).
    """
    if isinstance(X, Layout):
        # A layout built by the caller (docs/extending.md) is trusted as it is: results come back as torch.
        return X, InputKind(is_torch=True, device=X.device)
    if is_sparse_input(X):
        matrix, kind = _as_sparse_matrix(X.detach() if isinstance(X, torch.Tensor) else X, name, context, device)
        if check_values:
            check_sparse_values(matrix, name, context)
        return matrix, kind
    if isinstance(X, torch.Tensor):
        X = _check_tensor_dtype(X.detach(), name)
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D {name}, got a tensor of shape {tuple(X.shape)}.")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"Found empty {name} of shape {tuple(X.shape)}; {context} needs at least one entry.")
        kind = InputKind(is_torch=True, device=X.device)
    else:
        array = check_array(X, dtype=[np.float64, np.float32], input_name=name, ensure_min_samples=1,
                            ensure_all_finite=check_values)
        kind = InputKind(is_torch=False, numpy_dtype=array.dtype)
        X = _share_numpy(array)
    if device is not None:
        X = X.to(device)
    if check_values:
        check_finite_non_negative(X, name, context)
    return X, kind


def check_factor(F, name: str, shape: tuple[int, int], X: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Validate a user-given factor (custom init, or ``components_``): shape, values, device; returns a copy."""
    if isinstance(F, torch.Tensor):
        F = _check_tensor_dtype(F.detach(), name)
        if F.device != X.device:
            raise ValueError(f"{name} is on {F.device} but X is on {X.device}; put both on the same device.")
    else:
        if sp.issparse(F):
            raise TypeError(f"{name} must be dense, got a scipy.sparse {F.format} matrix.")
        F = _share_numpy(check_array(F, dtype=[np.float64, np.float32], input_name=name)).to(X.device)
    if tuple(F.shape) != tuple(shape):
        raise ValueError(f"Array with wrong shape passed to NMF ({name}): expected {tuple(shape)}, got {tuple(F.shape)}.")
    check_finite_non_negative(F, name)
    # Always a private copy in the factors' dtype: the solver updates it in place.
    return F.to(dtype=dtype, copy=True)
