"""Bytes and flops of one NMF iteration (one W update + one H update), for GB/s and TFLOP/s.

Both are *useful work* counts, the same for every provider of a problem, so that GB/s and TFLOP/s rank
providers exactly as their times do (a provider that forms WH where a Gram would do is not credited for
the extra flops):

- flops: fastnmf's kernel cost functions when ``fastnmf.kernels`` imports (``mu_frobenius_cost`` /
  ``mu_beta_cost`` for the H update of X and the H update of Xᵀ), else the formulas of docs/benchmarks.md,
  section Cost model (Frobenius 4mnk + 4(m+n)k², KL 8mnk); sparse X: 4·nnz·k + 4(m+n)k² and 8·nnz·k;
- bytes: the X stream only — two passes over X per iteration (one per half update), in the format the
  provider was given (dense: m·n·itemsize; CSR: values, column indices and row pointers).
"""

from __future__ import annotations

import scipy.sparse as sp
import torch

__all__ = ["flops_per_iteration", "x_stream_bytes", "X_PASSES"]

# Passes over X per iteration that a W-then-H (or H-then-W) scheme cannot avoid without changing the
# algorithm (docs/benchmarks.md, section Cost model).
X_PASSES = 2


def _kernel_flops(m: int, n: int, k: int, beta: float, itemsize: int):
    try:
        from fastnmf.kernels import mu_beta_cost, mu_frobenius_cost
    except Exception:  # not built yet, no Triton, or an import error while the kernels are being edited
        return None
    try:
        if beta == 2.0:
            return mu_frobenius_cost(m, n, k, itemsize)[1] + mu_frobenius_cost(n, m, k, itemsize)[1]
        return mu_beta_cost(m, n, k, itemsize, beta)[1] + mu_beta_cost(n, m, k, itemsize, beta)[1]
    except Exception:  # a changed signature: fall back to the formulas below rather than fail a run
        return None


def flops_per_iteration(m: int, n: int, k: int, beta: float, nnz: int | None = None,
                        itemsize: int = 4) -> tuple[int, str]:
    """``(flops, where the formula comes from)`` for one iteration; ``nnz`` for a sparse X."""
    if nnz is not None:
        if beta == 2.0:
            return 4 * nnz * k + 4 * (m + n) * k * k, "docs/benchmarks.md, Cost model (sparse)"
        return 8 * nnz * k, "docs/benchmarks.md, Cost model (sparse)"
    kernel = _kernel_flops(m, n, k, beta, itemsize)
    if kernel is not None:
        return int(kernel), "fastnmf.kernels cost functions"
    if beta == 2.0:
        return 4 * m * n * k + 4 * (m + n) * k * k, "docs/benchmarks.md, Cost model"
    return 8 * m * n * k, "docs/benchmarks.md, Cost model"


def x_stream_bytes(X, passes: int = X_PASSES) -> int:
    """Bytes of X read per iteration: ``passes`` × the size of X as the provider holds it."""
    if sp.issparse(X):
        csr = X.tocsr()
        size = csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes
    elif hasattr(X, "is_sparse") and X.is_sparse:  # torch COO: values + 2 int64 indices per entry
        size = X._nnz() * (X.element_size() + 2 * 8)
    elif hasattr(X, "layout") and X.layout == torch.sparse_csr:  # values, column indices, row pointers
        size = sum(t.numel() * t.element_size() for t in (X.values(), X.col_indices(), X.crow_indices()))
    else:
        size = X.numel() * X.element_size() if hasattr(X, "numel") else X.nbytes
    return passes * int(size)
