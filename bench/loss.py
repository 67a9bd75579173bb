"""The one loss every provider is judged by, whatever it reports about itself.

Providers compute their own objectives differently (scikit-learn and nmf-torch report sqrt(2·loss),
torchnmf adds eps inside the logarithm, fastnmf floors WH): their numbers are not comparable, so the
harness evaluates ``D_β(X | WH)`` itself, outside the timed region, in float64 on the problem's device:
with fastnmf's one objective (``fastnmf.objective``): blocked (no m×n temporary) for dense data, and the
stored entries plus closed forms for the zeros (O(nnz·k)) for data that is sparse by nature — for
every provider of that problem, whether it was given the sparse or the dense X.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fastnmf.layouts import as_layout
from fastnmf.objective import objective
from fastnmf.safeguard import reconstruction_floor
from fastnmf.validation import as_tensor

__all__ = ["SharedLoss"]


class SharedLoss:
    """``loss(W, H)``: ``D_β(X | WH)`` of a built problem (β = 2: ½‖X − WH‖²) as a float; NaN when W or H
    holds a NaN or an infinity.

    Where β < 2 divides by WH, WH is floored at ``eps(float32)·max(X)`` (fastnmf's safeguard rule for
    float32 data). A provider that writes exact zeros into W or H then gets a large finite loss instead of
    inf or NaN; every other provider's loss is unchanged to float64 round-off.
    """

    def __init__(self, data):
        self.beta = data.beta
        if data.X_sparse is not None:
            device = data.W0.device
            self.X, _ = as_tensor(data.X_sparse.astype(np.float64), device=device)
            x_max = float(data.X_sparse.max())
        else:
            self.X = data.X
            device, x_max = data.X.device, float(data.X.max())
        self.device = device
        self.floor = reconstruction_floor(x_max, torch.float32) if self.beta < 2.0 else 0.0

    @torch.no_grad()
    def __call__(self, W: torch.Tensor, H: torch.Tensor) -> float:
        W = W.to(device=self.device, dtype=torch.float64)
        H = H.to(device=self.device, dtype=torch.float64)
        if not (bool(torch.isfinite(W).all()) and bool(torch.isfinite(H).all())):
            return math.nan
        return float(objective(as_layout(self.X), W, H, beta=self.beta, eps_r=self.floor))
