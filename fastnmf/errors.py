"""Errors a fit can end with, each saying what happened and what to do."""

from __future__ import annotations

__all__ = ["FitInterrupted", "non_finite_error", "out_of_memory_error", "step_memory_bytes"]


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C during a fit. ``result`` holds the last complete iterate (a ``SolverResult``)."""

    def __init__(self, result):
        super().__init__(f"fit interrupted after {result.n_iter} complete iterations")
        self.result = result


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def step_memory_bytes(X, k: int, beta: float, backend: str, factor_itemsize: int) -> int:
    """Memory one iteration needs besides X (a layout): factors, products, and the m×n temporaries of the
    torch MU for β ≠ 2 on dense X (the Triton kernels never build them; sparse and weighted X use bounded
    blocks)."""
    m, n = X.shape
    factors = 4 * (m + n) * k * factor_itemsize  # W, H, their updates and the X products
    if beta != 2.0 and backend == "torch" and X.nnz is None and not X.weighted:
        return factors + 2 * m * n * factor_itemsize  # WH, and X∘(WH)^(β−2) / (WH)^(β−1)
    return factors


def non_finite_error(first: int, last: int, objective: float, X, beta: float) -> FloatingPointError:
    x_max = float(X.max())
    return FloatingPointError(
        f"Non-finite values (NaN or Inf) appeared in the factors between iterations {first} and {last} "
        f"(objective {objective}). Likely causes: the data's range overflows {X.dtype} in the products "
        f"(max X = {x_max:.3g}); powers of a near-zero reconstruction overflow for beta_loss={beta}. "
        "Try float64 data, rescaling X (e.g. X / X.max()), or beta_loss in [1, 2]."
    )


def out_of_memory_error(X, k: int, beta: float, backend: str, factor_itemsize: int) -> MemoryError:
    m, n = X.shape
    needed = step_memory_bytes(X, k, beta, backend, factor_itemsize)
    nnz = X.nnz  # sparse X holds nnz entries, not m·n
    stored = f"{nnz} stored entries of " if nnz is not None else ""
    hints = ["store X as float16/bfloat16 (half the bytes; factors stay float32)", f"use a smaller n_components than {k}"]
    if nnz is None:
        hints.insert(1, "pass X as a sparse matrix")
    if beta != 2.0 and backend == "torch":
        hints.insert(0, "use backend='triton' (its KL/β updates never build the m×n reconstruction)")
    return MemoryError(
        f"Out of GPU memory: X is {m}×{n} {stored}{X.dtype} ({_gib(X.nbytes)}) on {X.device}, "
        f"k={k}, beta_loss={beta}, backend={backend!r}; one iteration needs about {_gib(needed)} more. "
        "To fit: " + "; ".join(hints) + "."
    )
