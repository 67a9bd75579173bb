"""fastnmf itself, through its public functional API: ``fastnmf-triton`` and ``fastnmf-torch``.

Each solver in ``fastnmf.solvers.SOLVER_NAMES`` that accepts the problem's β becomes a provider; whether
it accepts β is asked of fastnmf itself (a one-iteration fit on a 2×2 matrix: fastnmf's validation
rejects, e.g., HALS for β ≠ 2), so a solver added to fastnmf appears here with no change to the harness.

``advance(n)`` is one call of ``non_negative_factorization(X, W, H, init="custom", max_iter=n, tol=0,
check_every=n)``. Each call validates X and evaluates fastnmf's own objective at its start and end (the
API has no way to run iterations without them): that per-call cost is inside the timed chunk, so the
harness uses few, growing chunks, and reports the fitted per-call overhead separately.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from . import Family, Unavailable

__all__ = ["TRITON", "TORCH"]


@functools.lru_cache(maxsize=None)
def _accepts(solver: str, beta: float) -> bool:
    import fastnmf

    try:
        fastnmf.non_negative_factorization(
            np.array([[1.0, 2.0], [3.0, 4.0]]), n_components=1, init="random", random_state=0,
            solver=solver, beta_loss=beta, max_iter=1, backend="torch",
        )
    except ValueError:
        return False
    return True


def _solvers(beta: float) -> tuple[str, ...]:
    from fastnmf.solvers import SOLVER_NAMES

    return tuple(s for s in SOLVER_NAMES if _accepts(s, beta))


def _check_torch(device: torch.device) -> None:
    try:
        import fastnmf  # noqa: F401
    except Exception as error:  # fastnmf is being edited: say so instead of failing the whole run
        raise Unavailable(f"fastnmf does not import: {type(error).__name__}: {error}") from error


def _check_triton(device: torch.device) -> None:
    if device.type != "cuda":
        raise Unavailable(
            "needs a CUDA GPU; on a CPU the Triton kernels only run in the interpreter, which is for "
            "correctness, not speed"
        )
    _check_torch(device)
    from fastnmf.ops import resolve_backend

    try:
        resolve_backend("triton", device)
    except Exception as error:
        raise Unavailable(f"fastnmf's Triton backend is not usable: {type(error).__name__}: {error}") from error


class _Session:
    input_format = "dense"
    start_note = ""

    def __init__(self, problem, solver: str, device: torch.device, backend: str):
        import fastnmf

        self._fit = fastnmf.non_negative_factorization
        self.device = device
        self.x_input = problem.X.to(device)
        self.solver, self.backend = solver, backend
        self.k, self.beta = problem.k, problem.beta
        self.W = self.H = None

    def start(self, W0, H0):
        self.W, self.H = W0.to(self.device).clone(), H0.to(self.device).clone()

    def advance(self, n: int):
        self.W, self.H, _ = self._fit(
            self.x_input, self.W, self.H, n_components=self.k, init="custom", solver=self.solver,
            beta_loss=self.beta, tol=0.0, max_iter=n, check_every=n, backend=self.backend,
        )

    def factors(self):
        return self.W, self.H


TRITON = Family(
    name="fastnmf-triton", is_peer=False, check=_check_triton, solvers=_solvers,
    session=lambda problem, solver, device: _Session(problem, solver, device, "triton"),
)
TORCH = Family(
    name="fastnmf-torch", is_peer=False, check=_check_torch, solvers=_solvers,
    session=lambda problem, solver, device: _Session(problem, solver, device, "torch"),
)
