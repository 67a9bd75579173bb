"""Exact power-of-two rescaling of data far from 1, so that no product overflows or underflows.

NMF is scale-equivariant: with ``X = s·X'``, ``W = √s·W'``, ``H = √s·H'``,
``D_β(X | WH) = s^β D_β(X' | W'H')``, and the penalties map to ``l1' = l1·s^(½−β)``, ``l2' = l2·s^(1−β)``,
so the objective is exactly ``s^β`` times the scaled one and the minimizers correspond. Data whose
largest entry lies in ``[2⁻³², 2³²]`` is left alone (no copy; results bit-identical); otherwise X is
divided by ``s = 4^e`` (a power of two with an exact square root, so the rescaling itself is exact):
float32 data of order 1e30 would otherwise overflow in ``WᵀX`` and the Grams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

__all__ = ["Scaling", "choose_scaling"]

_SAFE_LOW, _SAFE_HIGH = 2.0**-32, 2.0**32


@dataclass(frozen=True)
class Scaling:
    scale: float  # s, with X = s·X'
    beta: float

    @property
    def identity(self) -> bool:
        return self.scale == 1.0

    def data(self, X):
        """X / s for a layout (or a tensor)."""
        return X if self.identity else X / self.scale

    def factor_in(self, F: torch.Tensor) -> torch.Tensor:
        return F if self.identity else F / math.sqrt(self.scale)

    def factor_out(self, F: torch.Tensor) -> torch.Tensor:
        return F if self.identity else F * math.sqrt(self.scale)

    def penalties(self, penalties):
        """The :class:`fastnmf.penalties.Penalties` of the rescaled problem."""
        if self.identity:
            return penalties
        s, beta = self.scale, self.beta
        return penalties.rescaled(s ** (0.5 - beta), s ** (1.0 - beta))

    def objective_out(self, value: float) -> float:
        return value if self.identity else value * self.scale**self.beta

    def objective_in(self, value: float) -> float:
        return value if self.identity else value / self.scale**self.beta

    def result_out(self, result):
        """A solver result in the user's units."""
        if self.identity:
            return result
        return replace(
            result, W=self.factor_out(result.W), H=self.factor_out(result.H),
            loss_history=[self.objective_out(v) for v in result.loss_history],
            final_divergence=self.objective_out(result.final_divergence),
        )


def choose_scaling(x_max: float, beta: float) -> Scaling:
    if not math.isfinite(x_max) or x_max <= 0.0 or _SAFE_LOW <= x_max <= _SAFE_HIGH:
        return Scaling(1.0, beta)
    exponent = round(math.log(x_max, 4.0))
    return Scaling(4.0**exponent, beta)
