"""Backends: the contract (:mod:`.contract`), the registry (:mod:`.registry`), the implementations
(:mod:`.torch_backend`, :mod:`.triton_backend`), and :func:`resolve_backend` — the one dispatch function.

Registered here, once:

==========  ======================  ============  =====================================================
name        layout                  solvers       what runs
==========  ======================  ============  =====================================================
torch       any :class:`Layout`     mu, hals,     ``fastnmf.updates`` / ``fastnmf.newton`` /
                                    newton        ``fastnmf.objective``, any device
torch       ``WeightedMatrix``      mu, newton    the same (HALS has no weighted form)
triton      ``DenseMatrix``         mu, hals,     the fused dense kernels (CUDA, or the interpreter);
                                    newton        Newton's torch rule
triton      ``SparseMatrix``        mu, hals,     the fused sparse KL kernel; torch rules for the rest
                                    newton
torch       ``StreamedMatrix``      mu, hals      the torch rules on each chunk, the objective in the pass
==========  ======================  ============  =====================================================
"""

from __future__ import annotations

import functools

import torch

from ..layouts import DenseMatrix, Layout, SparseMatrix, WeightedMatrix
from ..layouts.streamed import StreamedMatrix
from . import registry, torch_backend
from .contract import (BACKEND_NAMES, DEFAULT_PRECISION, PRECISION_NAMES, PRECISIONS, TORCH_PRECISIONS, Backend,
                       interpreting, triton_available)

__all__ = ["Backend", "BACKEND_NAMES", "PRECISIONS", "TORCH_PRECISIONS", "PRECISION_NAMES", "resolve_backend",
           "supported_solvers", "check_solver", "resolve_solver", "interpreting", "triton_available"]


def _triton(factory: str):
    @functools.lru_cache(maxsize=None)
    def make(precision: str) -> Backend:
        from . import triton_backend  # imported on first use: it compiles (or interprets) kernels on import

        return getattr(triton_backend, factory)(precision)

    return make


registry.register("torch", Layout, torch_backend.make_backend)
# Weighted HALS would need Σ_i M_ij W_ik² per entry of H and a residual updated after every rank-one step —
# no Gram matrices, a pass over the weights per component: not implemented.
registry.register("torch", WeightedMatrix, torch_backend.make_backend, solvers=("mu", "newton"))
registry.register("triton", DenseMatrix, _triton("make_dense_backend"))
# Streamed X: the torch rules on each chunk (on the chunks' device); no fused kernels for it yet. Newton needs a
# second pass over X per half-update (fastnmf.newton), which the one-read-per-iteration pass does not make.
registry.register("torch", StreamedMatrix, torch_backend.make_streamed_backend, solvers=("mu", "hals"))
registry.register("triton", SparseMatrix, _triton("make_sparse_backend"))


def supported_solvers(name: str, layout: type) -> frozenset:
    """The solvers implementation ``name`` runs on ``layout`` (empty when it has no entry for it)."""
    entry = registry.find(name, layout)
    return entry.solvers if entry is not None else frozenset()


def check_solver(solver: str, layout: type, implementation: str = "torch") -> None:
    """Raise if ``implementation`` does not run ``solver`` on ``layout`` (also before any work on X)."""
    if solver != "auto" and solver not in supported_solvers(implementation, layout):
        description = layout.description
        raise ValueError(
            f"solver={solver!r} does not support {description}; use solver='mu' (or 'auto', which picks "
            f"'mu' for {description})."
        )


def resolve_solver(solver: str, beta: float, X: Layout, name: str = "auto", precision: str = "auto") -> str:
    """``solver``, with ``"auto"`` resolved: HALS for the Frobenius loss where backend ``name`` runs it on
    X's layout; for the KL divergence diagonalized Newton where the torch implementation runs it on X
    without weights, unless ``precision="bf16"`` (a mode of the MU); else MU.

    Newton reached 1.01× and 1.001× of the reference loss before MU on every KL problem of the CPU preset
    (docs/benchmarks.md, "The Newton solver"). On the GPU the fused MU kernels run instead, until a GPU
    measurement says otherwise; with weights MU keeps its O(nnz + holes) path for sparse X with missing
    values, where Newton would visit every entry."""
    if solver != "auto":
        return solver
    implementation = _implementation(name, X)
    supported = supported_solvers(implementation, type(X))
    if float(beta) == 2.0 and "hals" in supported:
        return "hals"
    if (float(beta) == 1.0 and "newton" in supported and implementation == "torch" and not X.weighted
            and precision not in TORCH_PRECISIONS):
        return "newton"
    return "mu"


def _implementation(name: str, X: Layout) -> str:
    if name != "auto":
        return name
    if (X.device.type == "cuda" and X.dtype != torch.float64 and triton_available()
            and registry.find("triton", type(X)) is not None):
        return "triton"
    return "torch"


def resolve_backend(name: str, X: Layout, precision: str = "auto", *, solver: str | None = None) -> Backend:
    """The backend that runs ``solver`` on layout X.

    ``"auto"``: Triton for CUDA data in float32/float16/bfloat16 when Triton imports and has kernels for
    X's layout, else torch (float64 data keeps float64 factors, which only the torch backend computes).
    ``"triton"`` on a CPU tensor needs the Triton interpreter (``TRITON_INTERPRET=1``, set before fastnmf
    is imported); on a layout without kernels (entry weights) it is an error rather than a silent change
    of backend. ``precision`` is the precision of the Triton kernels' matrix products (``"auto"``:
    ``contract.DEFAULT_PRECISION``; ``"ieee"`` fp32,
    ``"tf32"``, ``"tf32x3"``); the torch backend follows PyTorch's own matmul settings, or with ``"bf16"``
    computes the KL MU's m×n work on dense X in bfloat16 (``backends.torch_bf16``; opt-in: it pays on CPUs
    with native bfloat16 arithmetic).
    """
    if name not in BACKEND_NAMES:
        raise ValueError(f"Invalid backend {name!r}: expected one of {list(BACKEND_NAMES)}.")
    if precision not in PRECISION_NAMES:
        raise ValueError(f"Invalid precision {precision!r}: expected one of {list(PRECISION_NAMES)}.")
    if precision == "auto":
        precision = DEFAULT_PRECISION
    implementation = _implementation(name, X)
    entry = registry.find(implementation, type(X))
    if precision in TORCH_PRECISIONS and implementation != "torch":
        raise ValueError(f"precision={precision!r} is a mode of the torch backend, but backend={name!r} runs "
                         f"{implementation} here; pass backend='torch' (or a Triton precision: {list(PRECISIONS)}).")
    if implementation == "triton":
        if entry is None:
            raise ValueError(
                f"backend='triton' has no kernels for {X.description} yet; use backend='auto' or 'torch' (the "
                "torch backend runs it on CPU and CUDA)."
            )
        if X.dtype == torch.float64:
            raise TypeError(
                "backend='triton' computes with float32 factors, but X is float64. Pass float32 data "
                "(X.astype(np.float32) or X.float()), or use backend='torch' to keep float64."
            )
        if not triton_available():
            raise RuntimeError("backend='triton' needs the 'triton' package (Linux only): pip install triton.")
        if X.device.type != "cuda" and not interpreting():
            raise RuntimeError(
                f"backend='triton' runs on CUDA tensors, but the data is on {X.device}. Move it to a GPU "
                "(X.cuda()), or use backend='torch'; to run the kernels on the CPU for testing, set "
                "TRITON_INTERPRET=1 in the environment before importing fastnmf."
            )
    if solver is not None:
        check_solver(solver, type(X), implementation)
    return entry.make(precision)
