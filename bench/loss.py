"""The one loss every provider is judged by, whatever it reports about itself.

Providers compute their own objectives differently (scikit-learn and nmf-torch report sqrt(2·loss),
torchnmf adds eps inside the logarithm, fastnmf floors WH): their numbers are not comparable, so the
harness evaluates ``D_β(X | WH)`` itself, outside the timed region, with fastnmf's blocked β-divergence
(no m×n temporary) in float64 on the problem's device.
"""

from __future__ import annotations

import math

import torch
from fastnmf.losses import factorization_divergence
from fastnmf.safeguard import reconstruction_floor

__all__ = ["shared_loss", "loss_floor"]


def loss_floor(X: torch.Tensor, beta: float) -> float:
    """Where β < 2 divides by WH, WH is floored at ``eps(float32)·max(X)`` (fastnmf's safeguard rule for
    float32 data). A provider that writes exact zeros into W or H then gets a large finite loss instead of
    inf or NaN; every other provider's loss is unchanged to float64 round-off."""
    return reconstruction_floor(float(X.max()), torch.float32) if beta < 2.0 else 0.0


@torch.no_grad()
def shared_loss(X: torch.Tensor, W: torch.Tensor, H: torch.Tensor, beta: float, floor: float) -> float:
    """``D_β(X | WH)`` in float64 (β = 2: ½‖X − WH‖²). NaN when W or H holds a NaN or an infinity."""
    W = W.to(device=X.device, dtype=torch.float64)
    H = H.to(device=X.device, dtype=torch.float64)
    if not (bool(torch.isfinite(W).all()) and bool(torch.isfinite(H).all())):
        return math.nan
    return float(factorization_divergence(X, W, H, beta, eps_r=floor))
