"""``torchnmf`` (PyPI torchnmf, yoyololicon/pytorch-NMF): MU driven by autograd.

Its ``NMF`` models ``V ≈ H Wᵀ`` with H: samples × rank and W: features × rank, so fastnmf's (W, H) enter
as ``NMF(W=H0ᵀ, H=W0)`` — its constructor copies the given tensors, so the start is exactly the shared
one. ``advance(n)`` is ``model.fit(V, beta, tol=-inf, max_iter=n)``: with ``tol=-inf`` its stopping test
(relative decrease < tol) never fires, so it runs exactly n iterations. ``fit`` evaluates its own loss at
the start of each call and every 10 iterations (torchnmf/nmf.py ``BaseComponent.fit``); those
evaluations are part of its timed chunks. Sparse data is given as a torch COO tensor, which ``fit``
handles on its own sparse path.
"""

from __future__ import annotations

import numpy as np
import torch

from . import Family, Unavailable

__all__ = ["FAMILY"]


def _check(device: torch.device) -> None:
    try:
        import torchnmf.nmf  # noqa: F401
    except ImportError as error:
        raise Unavailable(f"not installed ({error}); pip install -e .[bench]") from error


class _Session:
    start_note = ""

    def __init__(self, problem, solver: str, device: torch.device):
        from torchnmf.nmf import NMF

        self._model_class = NMF
        self.device = device
        if problem.X_sparse is not None:
            coo = problem.X_sparse.tocoo()
            indices = torch.from_numpy(np.vstack([coo.row, coo.col])).long()
            values = torch.from_numpy(coo.data).float()
            self.x_input = torch.sparse_coo_tensor(indices, values, coo.shape).coalesce().to(device)
            self.input_format = "torch-coo"
        else:
            self.x_input, self.input_format = problem.X.to(device), "dense"
        self.beta = problem.beta
        self.model = None

    def start(self, W0, H0):
        self.model = self._model_class(W=H0.T.contiguous(), H=W0.contiguous()).to(self.device)

    def advance(self, n: int):
        self.model.fit(self.x_input, beta=self.beta, tol=float("-inf"), max_iter=n)

    def factors(self):
        return self.model.H.detach(), self.model.W.detach().T


FAMILY = Family(
    name="torchnmf",
    is_peer=True,
    check=_check,
    solvers=lambda beta: ("mu",),
    session=_Session,
    accepts_sparse=True,
)
