"""The backend contract: what a solver gets from a backend, and the names every backend shares.

A :class:`Backend` hands out *update rules* (``fastnmf.updates``: ``statistics`` / ``apply`` / ``update``)
and the objective; the layout of X decides how the pass over the data runs (``fastnmf.layouts``). No
member syncs with the host except where its docstring says so. Implementations live beside this module
(``torch_backend``, ``triton_backend``); which one runs is decided by ``fastnmf.backends.resolve_backend``
from the registry (``fastnmf.backends.registry``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..newton import NewtonKLRule

__all__ = ["Backend", "BACKEND_NAMES", "PRECISIONS", "DEFAULT_PRECISION", "TORCH_PRECISIONS", "PRECISION_NAMES",
           "interpreting", "triton_available"]

#: what users pass as ``backend=``.
BACKEND_NAMES = ("auto", "torch", "triton")
#: precision of the Triton kernels' matrix products (``tl.dot(input_precision=...)``).
PRECISIONS = ("ieee", "tf32", "tf32x3")
#: what ``precision="auto"`` (the default) runs: tf32x3 — three tf32 tensor-core products per dot — kept
#: whole fits within 6e-7 of the fp32 loss where plain tf32 drifted by up to 1.4e-3 (products emulated on
#: the CPU, ``python -m bench.precision``; bench/results/cpu-2core-amd-epyc/precision-emulation.md), and
#: fp32 FMA makes the dense kernels compute-bound on an H100/H200 from k ≈ 14–40 (docs/kernels.md).
DEFAULT_PRECISION = "tf32x3"
#: the torch backend's own mode: the KL MU's m×n work on dense X in bfloat16 (``backends.torch_bf16``).
TORCH_PRECISIONS = ("bf16",)
#: every value users may pass as ``precision=``.
PRECISION_NAMES = ("auto", *PRECISIONS, *TORCH_PRECISIONS)


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``; the kernels read the
    variable when they are decorated, i.e. when ``fastnmf.kernels`` is imported)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available() -> bool:
    """True when Triton imports (it is a Linux-only dependency)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Backend:
    """What a solver needs from an implementation, for one layout of X.

    ``mu_rule(beta, l1, l2, eps_r=)`` and ``hals_rule(l1, l2, max_sweeps=, delta=)`` build the update rules
    of one factor (``fastnmf.updates.MURule`` / ``HALSRule`` or a fused subclass), ``newton_rule(l1, l2,
    eps_r=, scratch=)`` the KL diagonalized Newton rule (``fastnmf.newton.NewtonKLRule``: torch operations on
    any device; no backend fuses it yet); ``objective(X, W, H, beta=, eps_r=)`` returns ``D_β(X | WH)`` as a
    0-d float64 tensor.
    """

    name: str
    mu_rule: Callable
    hals_rule: Callable
    objective: Callable[..., torch.Tensor]
    newton_rule: Callable = NewtonKLRule
    # Dtypes of X the backend reads directly; any other float X is converted to the factors' dtype once.
    native_x_dtypes: tuple = (torch.float32, torch.float64)
    # Fixed cost of one HALS row update, in flop-equivalents per device type (0 when the sweep is one
    # fused kernel): an implementation's cost model, read by the accelerated-HALS sweep count
    # (fastnmf.solvers.inner_sweep_limit).
    hals_row_overhead: dict = field(default_factory=dict)
