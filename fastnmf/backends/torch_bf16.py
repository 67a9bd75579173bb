"""The torch backend's ``precision="bf16"``: the KL multiplicative update's m×n work in bfloat16 on dense X.

The KL MU costs two m×n×k products per half-update — the reconstruction ``WH`` and the numerator
``Wᵀ(X / WH)`` — and the elementwise ratio between them. With ``precision="bf16"`` all three run in bfloat16:
X converted once per fit (exact for integer counts up to 256; larger values are rounded to 8 significant
bits), W and H rounded at each product, the products accumulated in fp32 by oneDNN and rounded to bfloat16,
the numerator returned as fp32. The factors, the MU step, the denominator ``Wᵀ1`` and the objective (hence
the ``tol`` test and every reported loss) stay in fp32 on the original X. On this project's 2-core AMD EPYC
(avx512_bf16), in the benchmark's Poisson KL problem (4000×2000, k = 32): 10.9 ms per iteration instead
of 23.9, 1.01× of the reference loss in 3.4 s instead of 6.5, and a lower final loss (docs/benchmarks.md,
"bf16 on the CPU"). A CPU without native bfloat16 arithmetic runs these products far slower than fp32:
the mode is opt-in.
Other β, HALS, weighted and sparse X keep the fp32 rules.
"""

from __future__ import annotations

import torch

from ..layouts import DenseMatrix
from ..layouts.dense import reconstruction_like
from ..updates import MURule, MUStatistics

__all__ = ["BFloat16KLRule"]


class BFloat16KLRule(MURule):
    """:class:`~fastnmf.updates.MURule` whose KL statistics on dense X are computed in bfloat16."""

    def statistics(self, X, W: torch.Tensor, H: torch.Tensor) -> MUStatistics:
        if self.beta != 1.0 or type(X) is not DenseMatrix:
            return super().statistics(X, W, H)
        x = X.workspace.copy_of(X.tensor, torch.bfloat16)
        left, right = W.to(torch.bfloat16), H.to(torch.bfloat16)
        r = reconstruction_like(x, left, right, X.workspace)  # bfloat16, in X's layout, in the workspace
        ratio = torch.div(x, r.clamp_min_(self.eps_r), out=r)
        return MUStatistics((left.T @ ratio).to(W.dtype), X.column_sums(W))
