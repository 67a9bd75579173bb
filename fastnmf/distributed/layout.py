"""A shard of X on a process grid as a layout whose products end in collectives.

:class:`ShardedMatrix` holds this rank's block ``X[R_i, C_j]`` as a local layout (dense or sparse, any
backend) and owns the pass over it (``fastnmf.layouts.Layout``): the solver holds the *owned* parts of
W and H (``fastnmf.distributed.grid``) and calls ``update_w`` / ``update_h`` / the objective as usual.
One half-update of H (MPI-FAUN's pattern; the W update is the same on ``Xᵀ`` with the row group):

1. the rows ``W_i`` of W's block i, all-gathered in the row group from the owned parts — once per new
   W (a cached gather: the objective and the next updates reuse it);
2. the local statistics of the rule (``fastnmf.updates``: numerator and denominator, or Gram, or
   ``A = W_iᵀX_ij`` and ``B``) — additive over row blocks, so the column group sums them: the per-column
   ones in **one reduce-scatter** (numerator and denominator packed together), each rank receiving the
   columns of H it owns; the k×k Gram or the k column sums in **one small all-reduce**;
3. the rule's ``apply`` on the owned columns (``fit`` terms, for extrapolation, all-reduced as a scalar).

A group of one (``p_r = 1`` for the H update, ``p_c = 1`` for the W update) needs no reduction: the
backend's fused ``update`` runs on the block as in a single process. No m×n temporary beyond what the
local layout's own products allocate.
"""

from __future__ import annotations

import functools
from dataclasses import fields, replace

import torch

from ..backends import registry, torch_backend
from ..layouts.base import Layout
from ..solvers import Problem
from . import comm
from .grid import ProcessGrid, split_sizes

__all__ = ["ShardedMatrix", "ShardedProblem"]


class ShardedMatrix(Layout):
    """This rank's block of a global m×n X (``local``: its layout), on ``grid``.

    ``shape``, ``nnz``, ``max()`` and ``mean()`` are those of the *global* X (exchanged once when the
    fit starts), so that the solver's choices — HALS sweep limits, the safeguard floor, the rescaling —
    are the single-process ones.
    """

    def __init__(self, local: Layout, grid: ProcessGrid, shape: tuple[int, int], *, nnz: int | None,
                 x_max: float, x_sum: float):
        self.local, self.grid = local, grid
        self._shape, self._nnz, self._max, self._sum = (int(shape[0]), int(shape[1])), nnz, float(x_max), float(x_sum)
        m, n = self._shape
        self.rows, self.columns = grid.block_rows(m), grid.block_columns(n)
        if tuple(local.shape) != (len(self.rows), len(self.columns)):
            raise ValueError(f"The local block is {tuple(local.shape)}, but grid position {grid.position} of a "
                             f"{grid.rows}×{grid.columns} grid over {m}×{n} holds {len(self.rows)}×{len(self.columns)}.")
        # Owned parts inside the groups: W's rows of R_i by member j of the row group, H's columns of C_j
        # by member i of the column group.
        self.w_parts = split_sizes(len(self.rows), grid.columns)
        self.h_parts = split_sizes(len(self.columns), grid.rows)
        self._gathered = {"W": None, "H": None}
        self.weighted, self.implicit_zeros = local.weighted, local.implicit_zeros
        self.description = f"a {grid.rows}×{grid.columns} sharded {local.description}"

    # --- the tensor-like surface (global values) ------------------------------------------------------

    @property
    def shape(self):
        return self._shape

    @property
    def dtype(self):
        return self.local.dtype

    @property
    def device(self):
        return self.local.device

    @property
    def nnz(self):
        return self._nnz

    def max(self):
        return self._max

    def mean(self, dtype=None):
        m, n = self._shape
        return self._sum / (m * n)

    def __truediv__(self, scale):
        return ShardedMatrix(self.local / scale, self.grid, self._shape, nnz=self._nnz, x_max=self._max / scale,
                             x_sum=self._sum / scale)

    def astype(self, dtype):
        if dtype == self.dtype:
            return self
        return ShardedMatrix(self.local.astype(dtype), self.grid, self._shape, nnz=self._nnz, x_max=self._max,
                             x_sum=self._sum)

    def init_data(self):
        raise NotImplementedError("A sharded X is initialized by fastnmf.distributed (its random start is global).")

    def blocks(self, bounded=False):
        raise NotImplementedError(
            "ShardedMatrix owns its pass (update_w, update_h, the objective): its blocks live on other ranks."
        )

    # --- gathers of the owned factor parts --------------------------------------------------------------

    def _cached(self, name: str, owned: torch.Tensor, gather) -> torch.Tensor:
        # A gather is a collective: every rank must make the same hit-or-miss decision, and does, since all
        # run the same solver code on factors made by the same operations (identity and version counter).
        entry = self._gathered[name]
        if entry is not None and entry[0] is owned and entry[1] == owned._version:
            return entry[2]
        whole = gather()
        self._gathered[name] = (owned, owned._version, whole)
        return whole

    def rows_of(self, W_owned: torch.Tensor) -> torch.Tensor:
        """``W_i`` (|R_i|×k): the owned rows of the row group, all-gathered."""
        j = self.grid.position[1]
        return self._cached("W", W_owned, lambda: comm.all_gather_parts(W_owned, 0, self.w_parts, j, self.grid.row_group))

    def columns_of(self, H_owned: torch.Tensor) -> torch.Tensor:
        """``H_j`` (k×|C_j|): the owned columns of the column group, all-gathered."""
        i = self.grid.position[0]
        return self._cached("H", H_owned,
                            lambda: comm.all_gather_parts(H_owned, 1, self.h_parts, i, self.grid.column_group))

    # --- the pass ----------------------------------------------------------------------------------------

    def _half_update(self, rule, local: Layout, left: torch.Tensor, right: torch.Tensor, right_owned: torch.Tensor,
                     parts: list[int], member: int, group):
        """The update of the right factor of ``local ≈ left · right`` (k×b), of which this rank owns
        ``right_owned`` (k×parts[member]); returns ``(new owned part, fit)``."""
        if group is None:
            new, fit = rule.update(local, left, right)  # the owned part is the whole block: the fused path
        else:
            statistics = _reduce_statistics(rule.statistics(local, left, right), right.shape[1], parts, member, group)
            new, fit = rule.apply(right_owned, statistics)
        if fit is not None:
            fit = comm.all_reduce(fit.reshape(1).clone(), self.grid.group)[0]
        return new, fit

    def update_h(self, rule, W, H):
        W_rows, H_columns = self.rows_of(W), self.columns_of(H)
        return self._half_update(rule, self.local, W_rows, H_columns, H, self.h_parts, self.grid.position[0],
                                 self.grid.column_group)

    def update_w(self, rule, W, H):
        W_rows, H_columns = self.rows_of(W), self.columns_of(H)
        new_t, fit = self._half_update(rule, self.local.T, H_columns.T, W_rows.T, W.T, self.w_parts,
                                       self.grid.position[1], self.grid.row_group)
        return new_t.T, fit

    def component_norms(self, W, H):
        squares = torch.cat([W.square().sum(dim=0), H.square().sum(dim=1)])
        squares = comm.all_reduce(squares, self.grid.group)
        k = W.shape[1]
        return squares[:k].sqrt(), squares[k:].sqrt()


# What "auto" may pick for a sharded X (fastnmf.backends.resolve_solver): no Newton, whose second pass over X
# per half-update is not written for a grid; the kernels that run are the local block's (resolve_backend).
registry.register("torch", ShardedMatrix, torch_backend.make_backend, solvers=("mu", "hals"))


def _reduce_statistics(statistics, width: int, parts: list[int], member: int, group):
    """Sum the rule's statistics over ``group``: per-column fields (``statistics.per_column`` with
    ``width`` columns) packed into one reduce-scatter, each member keeping its ``parts[member]`` columns;
    the others (Grams, k×1 column sums) packed into one all-reduce."""
    scattered, summed = [], []
    for item in fields(statistics):
        value = getattr(statistics, item.name)
        if value is None:
            continue
        per_column = item.name in statistics.per_column and value.shape[1] == width
        (scattered if per_column else summed).append((item.name, value))
    updates = {}
    for names_values, collective in ((scattered, "scatter"), (summed, "sum")):
        if not names_values:
            continue
        dtype = functools.reduce(torch.promote_types, (value.dtype for _, value in names_values))
        if collective == "scatter":
            packed = torch.cat([value.to(dtype) for _, value in names_values], dim=0)
            reduced = comm.reduce_scatter_parts(packed, 1, parts, member, group)
            pieces = reduced.split([value.shape[0] for _, value in names_values], dim=0)
        else:
            packed = torch.cat([value.to(dtype).reshape(-1) for _, value in names_values])
            reduced = comm.all_reduce(packed, group)
            pieces = [piece.reshape(value.shape) for piece, (_, value) in
                      zip(reduced.split([value.numel() for _, value in names_values]), names_values)]
        for (name, value), piece in zip(names_values, pieces):
            updates[name] = piece.to(value.dtype)
    return replace(statistics, **updates)


class ShardedProblem(Problem):
    """The problem of a sharded X: the objective is the local block's (the backend's objective on
    ``W_i``, ``H_j``) plus the owned parts' penalty, summed over the grid in one all-reduce of two scalars."""

    def evaluate(self, W, H):
        X = self.X
        local = self.backend.objective(X.local, X.rows_of(W), X.columns_of(H), beta=self.beta, eps_r=self.eps_r)
        parts = torch.stack([local.to(torch.float64), self.penalties.value(W, H).to(local.device)])
        total = comm.all_reduce(parts, X.grid.group).tolist()
        return total[0], total[0] + total[1]
