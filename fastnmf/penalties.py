"""The regularization penalties as one value: scikit-learn's parameterization, its scaling, its value."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Penalties"]


@dataclass(frozen=True)
class Penalties:
    """``l1_w‖W‖₁ + ½ l2_w‖W‖² + l1_h‖H‖₁ + ½ l2_h‖H‖²`` (the factors are non-negative: ‖·‖₁ is a sum).

    The ½ makes the gradient of the L2 term ``l2·W``, which is exactly what the MU denominator adds
    (scikit-learn's rule); the L1 term adds ``l1``.
    """

    l1_w: float = 0.0
    l2_w: float = 0.0
    l1_h: float = 0.0
    l2_h: float = 0.0

    @classmethod
    def from_alphas(cls, alpha_W: float, alpha_H: float, l1_ratio: float, n_samples: int, n_features: int):
        """scikit-learn's scaling (since 1.2): W's terms by n_features, H's by n_samples."""
        return cls(
            l1_w=n_features * alpha_W * l1_ratio,
            l2_w=n_features * alpha_W * (1.0 - l1_ratio),
            l1_h=n_samples * alpha_H * l1_ratio,
            l2_h=n_samples * alpha_H * (1.0 - l1_ratio),
        )

    @property
    def w(self) -> tuple[float, float]:
        """``(l1, l2)`` of W."""
        return self.l1_w, self.l2_w

    @property
    def h(self) -> tuple[float, float]:
        """``(l1, l2)`` of H."""
        return self.l1_h, self.l2_h

    def rescaled(self, l1_factor: float, l2_factor: float) -> "Penalties":
        """Every L1 weight times ``l1_factor`` and every L2 weight times ``l2_factor``."""
        return Penalties(self.l1_w * l1_factor, self.l2_w * l2_factor, self.l1_h * l1_factor, self.l2_h * l2_factor)

    def value(self, W: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        """The penalty of (W, H) as a 0-d float64 tensor on W's device."""
        total = torch.zeros((), dtype=torch.float64, device=W.device)
        for factor, (l1, l2) in ((W, self.w), (H, self.h)):
            if l1:
                total += l1 * factor.sum(dtype=torch.float64)
            if l2:
                total += 0.5 * l2 * factor.square().sum(dtype=torch.float64)
        return total
