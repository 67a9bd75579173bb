"""``sklearn``: scikit-learn's ``non_negative_factorization`` (solver "mu", and "cd" for β = 2), on the CPU.

Driven through its public API with ``init="custom"`` (so it starts from the shared W0, H0 exactly),
``tol=0`` and ``max_iter=n`` per chunk. Each call re-validates X and, for "mu", computes the error at
its start (sklearn/decomposition/_nmf.py, ``_fit_multiplicative_update``); that per-call cost is inside
the timed chunk. Sparse data is given as CSR — scikit-learn's own sparse path is what a user gets.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from . import Family, Unavailable

__all__ = ["FAMILY"]


def _check(device: torch.device) -> None:
    try:
        import sklearn.decomposition  # noqa: F401
    except ImportError as error:
        raise Unavailable(f"scikit-learn is not installed ({error})") from error


class _Session:
    start_note = ""

    def __init__(self, problem, solver: str, device: torch.device):
        from sklearn.decomposition import non_negative_factorization

        self._fit = non_negative_factorization
        self.device = device
        if problem.X_sparse is not None:
            self.x_input, self.input_format = problem.X_sparse.astype(np.float32), "csr"
        else:
            self.x_input, self.input_format = np.ascontiguousarray(problem.X.cpu().numpy()), "dense"
        self.solver, self.k, self.beta = solver, problem.k, problem.beta
        self.W = self.H = None

    def start(self, W0, H0):
        self.W = W0.cpu().numpy().copy()
        self.H = H0.cpu().numpy().copy()

    def advance(self, n: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tol=0 never converges "officially"; nothing to report
            self.W, self.H, _ = self._fit(
                self.x_input, self.W, self.H, n_components=self.k, init="custom", solver=self.solver,
                beta_loss=self.beta, tol=0.0, max_iter=n,
            )

    def factors(self):
        return torch.from_numpy(self.W), torch.from_numpy(self.H)


FAMILY = Family(
    name="sklearn",
    is_peer=True,
    check=_check,
    solvers=lambda beta: ("mu", "cd") if beta == 2.0 else ("mu",),
    session=_Session,
    device=lambda device: torch.device("cpu"),
    accepts_sparse=True,
)
