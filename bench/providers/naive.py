"""``torch-naive``: the multiplicative-update loop people write by hand in PyTorch.

Lee & Seung's rules as printed, H then W, with a small constant in the denominators: Frobenius through
``Wᵀ(WH)`` and ``(WH)Hᵀ`` (no Gram trick: an m×n product per half), KL through the materialized ratio
``X / (WH)``. It is the baseline a user replaces with a library, so it is deliberately not optimized.
"""

from __future__ import annotations

import torch

from . import Family

__all__ = ["FAMILY"]

# The usual guard against 0/0 in hand-written MU loops.
_EPS = 1e-10


class _Session:
    input_format = "dense"
    start_note = ""

    def __init__(self, problem, solver: str, device: torch.device):
        self.device = device
        self.x_input = problem.X.to(device)
        self.beta = problem.beta
        self.W = self.H = None

    def start(self, W0, H0):
        self.W, self.H = W0.to(self.device).clone(), H0.to(self.device).clone()

    @torch.no_grad()
    def advance(self, n: int):
        X, W, H = self.x_input, self.W, self.H
        for _ in range(n):
            if self.beta == 2.0:
                H = H * (W.T @ X) / (W.T @ (W @ H) + _EPS)
                W = W * (X @ H.T) / ((W @ H) @ H.T + _EPS)
            else:
                H = H * (W.T @ (X / (W @ H + _EPS))) / (W.sum(dim=0, keepdim=True).T + _EPS)
                W = W * ((X / (W @ H + _EPS)) @ H.T) / (H.sum(dim=1, keepdim=True).T + _EPS)
        self.W, self.H = W, H

    def factors(self):
        return self.W, self.H


FAMILY = Family(
    name="torch-naive",
    is_peer=True,
    check=lambda device: None,
    solvers=lambda beta: ("mu",) if beta in (1.0, 2.0) else (),
    session=_Session,
)
