"""fastnmf itself, through its public functional API: ``fastnmf-triton`` and ``fastnmf-torch``.

Each solver in ``fastnmf.solvers.SOLVER_NAMES`` that minimizes the problem's β
(``fastnmf.solvers.supports``) becomes a provider, so a solver added to fastnmf appears here with no
change to the harness. Data that is sparse by nature is given as a torch CSR tensor on the device —
fastnmf's sparse path, what a user with such data gets.

The timed run is one call ``non_negative_factorization(X, W0, H0, init="custom", tol=0, callback=…)``
whose callback stops and restarts the harness's clock at the chunk boundaries (``run_chunks``): the
call's validation and its two objective evaluations (start and end) are outside every chunk. The
warm-up still uses ``advance(n)`` — one call per n iterations — which also gives the per-call overhead
the table reports.
"""

from __future__ import annotations

import numpy as np
import torch

from . import Family, Unavailable

__all__ = ["TRITON", "TORCH"]


# Variants beside the solvers' defaults: label → (solver, options). "hals-plain" is HALS without the
# extrapolation its default turns on (what the default is measured against; docs/benchmarks.md).
VARIANTS = {"hals-plain": ("hals", {"extrapolate": False})}
# The torch backend's own modes, for the losses they change: "mu-bf16" is KL MU with its m×n work in
# bfloat16 (fastnmf.backends.torch_bf16).
TORCH_VARIANTS = {"mu-bf16": ("mu", {"precision": "bf16"}, 1.0)}


def _solvers(beta: float) -> tuple[str, ...]:
    from fastnmf.solvers import SOLVER_NAMES, supports

    names = [s for s in SOLVER_NAMES if supports(s, beta)]
    names += [label for label, (solver, _) in VARIANTS.items() if solver in names]
    return tuple(names)


def _torch_solvers(beta: float) -> tuple[str, ...]:
    return _solvers(beta) + tuple(label for label, (_, _, loss) in TORCH_VARIANTS.items() if float(beta) == loss)


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
    from fastnmf.backends import resolve_backend
    from fastnmf.layouts import DenseMatrix

    try:
        resolve_backend("triton", DenseMatrix(torch.empty((1, 1), device=device)))
    except Exception as error:
        raise Unavailable(f"fastnmf's Triton backend is not usable: {type(error).__name__}: {error}") from error


def _torch_csr(csr, device: torch.device) -> torch.Tensor:
    return torch.sparse_csr_tensor(
        torch.from_numpy(csr.indptr.astype(np.int64)), torch.from_numpy(csr.indices.astype(np.int64)),
        torch.from_numpy(csr.data), csr.shape, check_invariants=True,  # scipy's CSR is canonical: checked once
    ).to(device)


class _Session:
    start_note = ""

    def __init__(self, problem, solver: str, device: torch.device, backend: str):
        import fastnmf

        self._fit = fastnmf.non_negative_factorization
        self.device = device
        if problem.X_sparse is not None:
            self.x_input, self.input_format = _torch_csr(problem.X_sparse, device), "csr"
        else:
            self.x_input, self.input_format = problem.X.to(device), "dense"
        self.solver, self.options = VARIANTS.get(solver) or TORCH_VARIANTS.get(solver, (solver, {}, None))[:2]
        self.backend = backend
        self.k, self.beta, self.max_iter = problem.k, problem.beta, problem.spec.max_iter
        self.W = self.H = None

    def start(self, W0, H0):
        self.W, self.H = W0.to(self.device).clone(), H0.to(self.device).clone()

    def _call(self, max_iter: int, callback=None):
        self.W, self.H, _ = self._fit(
            self.x_input, self.W, self.H, n_components=self.k, init="custom", solver=self.solver,
            beta_loss=self.beta, tol=0.0, max_iter=max_iter, check_every=max_iter, backend=self.backend,
            callback=callback, **self.options,
        )

    def advance(self, n: int):
        self._call(n)

    def run_chunks(self, clock):
        """The whole timed run in one call; ``clock`` is the harness's ``runner.ChunkClock``."""
        chunk = {"length": clock.first, "done": 0}

        def on_iteration(n_iter, W, H):
            if n_iter == 0:  # the start, after fastnmf's validation and first objective evaluation
                clock.begin()
                return False
            chunk["done"] += 1
            if chunk["done"] < chunk["length"]:
                return False
            self.W, self.H = W, H
            following = clock.end(chunk["length"], self.factors)
            if not following:
                return True
            chunk["length"], chunk["done"] = following, 0
            clock.begin()
            return False

        self._call(self.max_iter, on_iteration)

    def factors(self):
        return self.W, self.H


TRITON = Family(
    name="fastnmf-triton", is_peer=False, check=_check_triton, solvers=_solvers, accepts_sparse=True,
    session=lambda problem, solver, device: _Session(problem, solver, device, "triton"),
)
TORCH = Family(
    name="fastnmf-torch", is_peer=False, check=_check_torch, solvers=_torch_solvers, accepts_sparse=True,
    session=lambda problem, solver, device: _Session(problem, solver, device, "torch"),
)
