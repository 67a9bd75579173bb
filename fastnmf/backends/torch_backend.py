"""The torch implementation: the rules of ``fastnmf.updates`` and ``fastnmf.objective`` on any layout and
device. It is the CPU fast path and the fallback everywhere; it follows PyTorch's own matmul settings."""

from __future__ import annotations

from ..objective import objective
from ..updates import HALSRule, MURule
from .contract import Backend
from .torch_bf16 import BFloat16KLRule

__all__ = ["make_backend", "make_streamed_backend", "ROW_OVERHEAD"]

# The torch sweep launches ~3 ops per row. Estimated, not measured: ~4 µs per op on the CPU against
# ~250 GFLOP/s of fp32 GEMM (≈3e6 flops), ~5 µs per launch on a GPU against ~50 TFLOP/s (≈7.5e8).
# Without this term, digits (1797×64, k=16) got up to 67 sweeps of 16 Python-launched rows per H update.
# On the CPU the sweep now runs on numpy views (fastnmf.updates._numpy_sweeps_), cheaper per operation; the
# estimate is kept as it was (a lower one would give the dense problems more sweeps: not measured).
ROW_OVERHEAD = {"cpu": 3e6, "cuda": 7.5e8}

_BACKEND = Backend("torch", mu_rule=MURule, hals_rule=HALSRule, objective=objective, hals_row_overhead=ROW_OVERHEAD)


_BF16 = Backend("torch", mu_rule=BFloat16KLRule, hals_rule=HALSRule, objective=objective,
                hals_row_overhead=ROW_OVERHEAD)


def make_backend(precision: str = "ieee") -> Backend:
    """The torch backend: PyTorch's own matmul settings, or with ``precision="bf16"`` the KL MU's m×n work
    on dense X in bfloat16 (``fastnmf.backends.torch_bf16``); the Triton precisions do not concern it."""
    return _BF16 if precision == "bf16" else _BACKEND


def _streamed_objective(X, W, H, *, beta, eps_r):
    return X.objective(W, H, beta=beta, eps_r=eps_r)  # from the chunks of the pass (fastnmf.layouts.streamed)


_STREAMED = Backend("torch", mu_rule=MURule, hals_rule=HALSRule, objective=_streamed_objective,
                    hals_row_overhead=ROW_OVERHEAD)


def make_streamed_backend(precision: str = "ieee") -> Backend:
    """The torch rules on each chunk of a streamed X, the objective summed in the pass over its chunks."""
    return _STREAMED
