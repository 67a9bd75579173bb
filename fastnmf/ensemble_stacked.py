"""The Frobenius batch of ``fit_ensemble``: the factors of every running problem as rows of two stacked tensors.

Problem i's Wᵢᵀ (kᵢ×m) and Hᵢ (kᵢ×n) are consecutive rows of ``Wt`` (Σk×m) and ``H`` (Σk×n), problems
ordered by rank, and ``problem.W``/``problem.H`` are views of them. A half-update is then one product with X
for the whole group (``H Xᵀ`` or ``Wᵀ X``, written row-major into a buffer the batch owns), each rank's
Grams one ``bmm`` on views of the stacks, and the step of a rank's problems one batched operation: MU's
denominators a ``bmm`` and its step in place (``updates.multiplicative_step_``), HALS's sweeps
``updates.hals_batched_sweeps_`` — nothing concatenated or copied per iteration. (Concatenating the factors
at every half-update and stepping on a transposed product took ~40 % of an MU iteration at 2000×500,
R = 20 × k ∈ 5…9 on 2 cores; HALS problem by problem, a third of its time.) A problem that finishes or fails
leaves at the next :meth:`StackedBatch.compact`; its finisher copies its factors out first
(``safeguard.exact_zeros`` clones).
"""

from __future__ import annotations

import torch

from .layouts import DenseMatrix
from .updates import HALSRule, HALSStatistics, hals_batched_sweeps_, multiplicative_step_

__all__ = ["StackedBatch"]


class StackedBatch:
    """The running problems of a Frobenius ensemble (MU or HALS, unweighted X), advanced together.

    ``row_limit`` bounds the stacked rank of one group (at least one problem per group): the group's
    numerator and denominator buffers hold 2 · rows · max(m, n) values."""

    def __init__(self, problems, row_limit: int):
        self.row_limit = max(1, int(row_limit))
        self.problems = sorted(problems, key=lambda p: (p.k, p.r))
        self._stack()

    def _stack(self):
        problems = self.problems
        self.Wt = torch.cat([p.W.T for p in problems]) if problems else None
        self.H = torch.cat([p.H for p in problems]) if problems else None
        offset, self._offsets = 0, []
        for p in problems:
            p.W, p.H = self.Wt[offset:offset + p.k].T, self.H[offset:offset + p.k]
            self._offsets.append(offset)
            offset += p.k
        self._groups = list(self._make_groups())
        self._buffers = None

    def compact(self):
        """Drop the problems that are done (finished or failed) from the stacks."""
        running = [p for p in self.problems if not p.done]
        if len(running) != len(self.problems):
            self.problems = running
            self._stack()

    def _make_groups(self):
        """(first row, end row, runs): consecutive problems within ``row_limit`` rows, each split into runs of
        one rank ``(k, first row, count)`` for the batched Grams."""
        index, problems = 0, self.problems
        while index < len(problems):
            first, rows, end = self._offsets[index], 0, index
            while end < len(problems) and (end == index or rows + problems[end].k <= self.row_limit):
                rows += problems[end].k
                end += 1
            runs, i = [], index
            while i < end:
                j = i
                while j < end and problems[j].k == problems[i].k:
                    j += 1
                runs.append((problems[i].k, self._offsets[i], j - i))
                i = j
            yield first, first + rows, runs
            index = end

    def _buffer(self, which, rows, width):
        if self._buffers is None:
            size = max(b - a for a, b, _ in self._groups) * max(self.Wt.shape[1], self.H.shape[1])
            self._buffers = [torch.empty(size, dtype=self.H.dtype, device=self.H.device) for _ in range(2)]
        return self._buffers[which][:rows * width].view(rows, width)

    def iteration(self, X, rules, solver: str):
        """One iteration (W, then H) of every running problem; ``rules.w(k)``/``rules.h(k)`` give each rank's
        rules, ``X`` is the (scaled) layout."""
        if not self.problems:
            return
        step = self._mu_half if solver == "mu" else self._hals_half
        for first, end, runs in self._groups:  # W: numerators H Xᵀ, Grams H Hᵀ; updates Wᵀ
            step(X.T, self.H, self.Wt, first, end, runs, rules.w)
        for first, end, runs in self._groups:  # H: numerators Wᵀ X, Grams Wᵀ W; updates H
            step(X, self.Wt, self.H, first, end, runs, rules.h)

    def _mu_half(self, X, left, right, first, end, runs, rule_of):
        numerator = _left_product(X, left[first:end], self._buffer(0, end - first, right.shape[1]))
        denominator = self._buffer(1, end - first, right.shape[1])
        for k, start, count in runs:
            rows, local = slice(start, start + k * count), slice(start - first, start - first + k * count)
            L = left[rows].view(count, k, -1)
            R = right[rows].view(count, k, -1)
            torch.bmm(torch.bmm(L, L.transpose(1, 2)), R, out=denominator[local].view(count, k, -1))
            rule = rule_of(k)
            multiplicative_step_(numerator[local], denominator[local], right[rows], beta=2.0, l1=rule.l1,
                                 l2=rule.l2)

    def _hals_half(self, X, left, right, first, end, runs, rule_of):
        numerator = _left_product(X, left[first:end], self._buffer(0, end - first, right.shape[1]))
        for k, start, count in runs:
            L = left[start:start + k * count].view(count, k, -1)
            grams = torch.bmm(L, L.transpose(1, 2))
            rule = rule_of(k)
            if type(rule) is HALSRule:  # the torch rule: all of this rank's sweeps at once, on the stack
                local = slice(start - first, start - first + k * count)
                hals_batched_sweeps_(right[start:start + k * count].view(count, k, -1),
                                     numerator[local].view(count, k, -1), grams, l1=rule.l1, l2=rule.l2,
                                     max_sweeps=rule.max_sweeps, delta=rule.delta)
                continue
            for i in range(count):  # a backend's own rule (a fused kernel), problem by problem
                rows = slice(start + i * k, start + (i + 1) * k)
                local = slice(rows.start - first, rows.stop - first)
                right[rows] = rule.apply(right[rows], HALSStatistics(numerator[local], grams[i]))[0]


def _left_product(X, rows: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``rows · X`` (rows: b×m for X m×n, any layout) into ``out`` (b×n, row-major). Dense X of the factors'
    dtype: one GEMM straight into the buffer — at a stacked rank of ~200 and more, the form ``rows @ X``
    costs what the layout's transposed form does (measured at 2000×500 and 4000×2000 on 2 cores) and gives
    the row-major result the in-place steps need."""
    if isinstance(X, DenseMatrix) and X.tensor.dtype == rows.dtype:
        return torch.mm(rows, X.tensor, out=out)
    return out.copy_(X.wt_x(rows.T))

