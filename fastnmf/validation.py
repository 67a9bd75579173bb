"""Input validation: every bad input is rejected before any work, with the problem and the value named.

numpy (and anything array-like) goes through scikit-learn's ``check_array`` — the messages users and
``check_estimator`` already know — then through the same non-negativity check as torch tensors.
Nothing here modifies its input: conversions make copies only when the dtype or device changes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import check_array

__all__ = [
    "InputKind",
    "as_tensor",
    "check_finite_non_negative",
    "check_factor",
    "check_int",
    "check_real",
    "check_choice",
]

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


def check_finite_non_negative(X: torch.Tensor, name: str, context: str = "NMF") -> None:
    """Raise ValueError naming the first NaN/Inf or negative entry of ``X``."""
    if X.numel() == 0:
        return
    finite = torch.isfinite(X)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0]
        count = int((~finite).sum())
        value = X[tuple(bad)].item()
        raise ValueError(
            f"Input {name} contains NaN or infinity: {count} non-finite entr{'y' if count == 1 else 'ies'}, "
            f"the first {value} at {_describe_index(tuple(bad.tolist()))}. {context} needs finite values."
        )
    negative_min = X.min()
    if bool(negative_min < 0):
        where = (X == negative_min).nonzero()[0]
        count = int((X < 0).sum())
        raise ValueError(
            f"Negative values in data passed to {context} ({name}): {count} negative "
            f"entr{'y' if count == 1 else 'ies'}, the smallest {negative_min.item():.6g} at "
            f"{_describe_index(tuple(where.tolist()))}. NMF needs non-negative data."
        )


def _check_tensor_dtype(X: torch.Tensor, name: str) -> torch.Tensor:
    if X.is_complex():
        raise TypeError(f"Input {name} has complex dtype {X.dtype}; NMF needs real, non-negative data.")
    if X.is_sparse or X.layout != torch.strided:
        raise TypeError(
            f"Sparse input ({name} has layout {X.layout}) is not supported yet; pass a dense tensor "
            "(X.to_dense())."
        )
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


def as_tensor(X, name: str = "X", *, context: str = "NMF", device=None) -> tuple[torch.Tensor, InputKind]:
    """Validate ``X`` (2-D, non-empty, finite, non-negative) and return it as a tensor and its kind.

    numpy float32/float64 keep their dtype; other numeric dtypes become float64 (scikit-learn's rule).
    torch float16/bfloat16/float32/float64 keep theirs; integer tensors become the default float dtype.
    """
    if isinstance(X, torch.Tensor):
        X = _check_tensor_dtype(X.detach(), name)
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D {name}, got a tensor of shape {tuple(X.shape)}.")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"Found empty {name} of shape {tuple(X.shape)}; {context} needs at least one entry.")
        kind = InputKind(is_torch=True, device=X.device)
    else:
        if sp.issparse(X):
            raise TypeError(
                f"Sparse input ({name} is a scipy.sparse {X.format} matrix) is not supported yet; pass "
                f"{name}.toarray()."
            )
        array = check_array(X, dtype=[np.float64, np.float32], input_name=name, ensure_min_samples=1)
        kind = InputKind(is_torch=False, numpy_dtype=array.dtype)
        X = _share_numpy(array)
    if device is not None:
        X = X.to(device)
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


def check_int(value, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"Invalid {name}={value!r}: expected an integer >= {minimum}.")
    return int(value)


def check_real(value, name: str, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value) and value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"Invalid {name}={value!r}: expected a finite real number {bound}.")
    return float(value)


def check_choice(value, name: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Invalid {name}={value!r}: expected one of {list(choices)}.")
    return value
