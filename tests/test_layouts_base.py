"""The layout contract: a new layout is one class, and a layout can own the pass over its data.

Two layouts written here against ``fastnmf.layouts.Layout`` only, with no edit anywhere else:

- ``ScaledRows`` — diag(d)·X held as X and d (a toy layout): fits equal the fit of the materialized matrix;
- ``RowChunks`` — X as row chunks that owns its pass: per chunk it updates that chunk's rows of W, then adds
  the chunk's share of the H statistics (X read once per iteration) — and reproduces the in-memory iterates.
"""

import numpy as np
import pytest
import torch

from fastnmf import non_negative_factorization
from fastnmf.layouts import BlockPart, DenseBlock, DenseMatrix, Layout, column_blocks, row_blocks

_ALL = slice(None)


class ScaledRows(Layout):
    """diag(d)·X (axis 0) or X·diag(d) (axis 1, its transpose's view), never stored scaled."""

    description = "row-scaled dense X"

    def __init__(self, X: torch.Tensor, d: torch.Tensor, axis: int = 0):
        self.X, self.d, self.axis = X, d, axis

    def _scaled(self, rows=_ALL):
        return self.X[rows] * (self.d[rows, None] if self.axis == 0 else self.d[None, :])

    shape = property(lambda self: tuple(self.X.shape))
    dtype = property(lambda self: self.X.dtype)
    device = property(lambda self: self.X.device)
    T = property(lambda self: ScaledRows(self.X.T, self.d, 1 - self.axis))

    def max(self):
        return self._scaled().max()

    def mean(self, dtype=None):
        return self._scaled().mean(dtype=dtype)

    def __truediv__(self, scale):
        return ScaledRows(self.X, self.d / scale, self.axis)

    def astype(self, dtype):
        return ScaledRows(self.X.to(dtype), self.d.to(dtype), self.axis)

    def init_data(self):
        return self._scaled()

    def blocks(self, bounded=False):
        m, n = self.shape
        for rows in (row_blocks(m, n) if bounded else [_ALL]):
            yield BlockPart(rows, _ALL, DenseBlock(self._scaled(rows)))


class RowChunks(Layout):
    """X as row chunks; one iteration streams each chunk once (W_c update, then its share of H's)."""

    def __init__(self, X: torch.Tensor, chunk_rows):
        self.X = X
        starts = [0, *np.cumsum(chunk_rows)]
        self.chunks = [(slice(a, b), DenseMatrix(X[a:b])) for a, b in zip(starts, starts[1:])]
        self.reads = 0  # chunk reads by update passes (not by the objective)

    shape = property(lambda self: tuple(self.X.shape))
    dtype = property(lambda self: self.X.dtype)
    device = property(lambda self: self.X.device)

    def max(self):
        return self.X.max()

    def mean(self, dtype=None):
        return self.X.mean(dtype=dtype)

    def __truediv__(self, scale):
        return RowChunks(self.X / scale, [c.stop - c.start for c, _ in self.chunks])

    def astype(self, dtype):
        return self if dtype == self.dtype else RowChunks(self.X.to(dtype), [c.stop - c.start for c, _ in self.chunks])

    def init_data(self):
        return self.X

    def blocks(self, bounded=False):
        for rows, chunk in self.chunks:
            yield BlockPart(rows, _ALL, DenseBlock(chunk.tensor))

    def update_w(self, rule, W, H):
        parts, fit = [], None
        for rows, chunk in self.chunks:
            self.reads += 1
            W_c, fit_c = chunk.update_w(rule, W[rows], H)
            parts.append(W_c)
            fit = fit_c if fit is None else fit + fit_c  # additive over row chunks (None when not asked for)
        return torch.cat(parts), fit

    def update_h(self, rule, W, H):
        statistics = None
        for rows, chunk in self.chunks:
            self.reads += 1
            part = rule.statistics(chunk, W[rows], H)
            statistics = part if statistics is None else statistics + part
        return rule.apply(H, statistics)

    def iteration(self, rule_w, rule_h, W, H, update_w=True, update_h=True):
        if not update_h:
            return self.update_w(rule_w, W, H)[0], H
        parts, statistics = [], None
        for rows, chunk in self.chunks:
            self.reads += 1
            W_c = chunk.update_w(rule_w, W[rows], H)[0] if update_w else W[rows]
            part = rule_h.statistics(chunk, W_c, H)
            statistics = part if statistics is None else statistics + part
            parts.append(W_c)
        H, _ = rule_h.apply(H, statistics)
        return torch.cat(parts), H


def _data(m=37, n=23, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.gamma(1.5, size=(m, n)) * (rng.rand(m, n) > 0.3)
    return torch.from_numpy(X)


CASES = [("mu", 2.0), ("mu", 1.0), ("mu", 0.5), ("mu", 3.0), ("hals", 2.0)]


@pytest.mark.parametrize("solver,beta", CASES, ids=[f"{s}-beta{b}" for s, b in CASES])
def test_a_toy_layout_needs_one_class_and_fits_like_the_materialized_matrix(solver, beta):
    X = _data()
    d = torch.from_numpy(np.random.RandomState(1).uniform(0.5, 2.0, size=X.shape[0]))
    options = dict(n_components=4, init="random", random_state=0, max_iter=25, tol=0.0, solver=solver,
                   beta_loss=beta, alpha_W=0.01, l1_ratio=0.5)
    W_toy, H_toy, _ = non_negative_factorization(ScaledRows(X, d), **options)
    W_ref, H_ref, _ = non_negative_factorization(d[:, None] * X, **options)
    torch.testing.assert_close(W_toy, W_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(H_toy, H_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("solver,beta", CASES, ids=[f"{s}-beta{b}" for s, b in CASES])
def test_a_layout_that_owns_its_pass_reproduces_the_in_memory_iterates(solver, beta):
    X = _data(41, 19, seed=2)
    options = dict(n_components=5, init="nndsvda", random_state=0, max_iter=30, tol=0.0, solver=solver,
                   beta_loss=beta, check_every=7, alpha_H=0.02)
    chunked = RowChunks(X, [10, 1, 17, 13])  # uneven, one single-row chunk
    seen = {"chunked": [], "memory": []}
    W_c, H_c, _ = non_negative_factorization(chunked, callback=lambda i, W, H: seen["chunked"].append(H.clone()),
                                             **options)
    W_m, H_m, _ = non_negative_factorization(X, callback=lambda i, W, H: seen["memory"].append(H.clone()), **options)
    # Every iterate, not only the last: the chunked W-then-H pass is the in-memory order.
    for H_chunked, H_memory in zip(seen["chunked"], seen["memory"], strict=True):
        torch.testing.assert_close(H_chunked, H_memory, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(W_c, W_m, rtol=1e-10, atol=1e-12)
    # One read of each chunk per iteration (the W update and the H statistics share it).
    assert chunked.reads == 30 * len(chunked.chunks)


def test_hals_extrapolation_and_transform_run_on_a_layout_that_owns_its_pass():
    X = _data(30, 12, seed=4)
    options = dict(n_components=3, init="random", random_state=0, max_iter=20, tol=0.0, solver="hals")
    W_c, H_c, _ = non_negative_factorization(RowChunks(X, [7, 23]), extrapolate=True, **options)
    W_m, H_m, _ = non_negative_factorization(X, extrapolate=True, **options)
    torch.testing.assert_close(H_c, H_m, rtol=1e-10, atol=1e-12)
    # update_H=False: W alone, chunk by chunk.
    W_t, _, _ = non_negative_factorization(RowChunks(X, [7, 23]), H=H_m, n_components=3, update_H=False,
                                           max_iter=10, tol=0.0)
    W_r, _, _ = non_negative_factorization(X, H=H_m, n_components=3, update_H=False, max_iter=10, tol=0.0)
    torch.testing.assert_close(W_t, W_r, rtol=1e-10, atol=1e-12)


def test_block_helpers_cover_every_index_once():
    for m, n in ((1, 1), (7, 3), (5000, 3000)):
        for blocks, size in ((column_blocks(m, n), n), (row_blocks(m, n), m)):
            covered = [i for s in blocks for i in range(s.start, s.stop)]
            assert covered == list(range(size))
