"""fastnmf.ensemble_stacked: the Frobenius batch as rows of two stacked tensors."""

import pytest
import torch

from fastnmf.ensemble import _Problem, _Rules
from fastnmf.backends import resolve_backend
from fastnmf.ensemble_stacked import StackedBatch
from fastnmf.layouts import DenseMatrix
from fastnmf.penalties import Penalties
from fastnmf.solvers import hals_rules


def _problems(ranks, m=30, n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [_Problem(k, r, torch.rand(m, k, generator=g, dtype=torch.float64) + 0.05,
                     torch.rand(k, n, generator=g, dtype=torch.float64) + 0.05, [], 0.0)
            for r, k in enumerate(ranks)]


def _setup(solver):
    g = torch.Generator().manual_seed(1)
    X = DenseMatrix(torch.rand(30, 20, generator=g, dtype=torch.float64))
    penalties = Penalties.from_alphas(0.01, 0.01, 0.5, 30, 20)
    return X, _Rules(resolve_backend("torch", X), solver, 2.0, penalties, 0.0, X), penalties


def test_groups_keep_within_the_row_limit_and_split_by_rank():
    batch = StackedBatch(_problems([3, 2, 3, 2, 4]), row_limit=6)
    assert [(p.k, p.r) for p in batch.problems] == [(2, 1), (2, 3), (3, 0), (3, 2), (4, 4)]  # by rank
    assert [(first, end) for first, end, _ in batch._groups] == [(0, 4), (4, 10), (10, 14)]
    assert [runs for _, _, runs in batch._groups] == [[(2, 0, 2)], [(3, 4, 2)], [(4, 10, 1)]]
    assert batch.Wt.shape == (14, 30) and batch.H.shape == (14, 20)
    for problem in batch.problems:  # views of the stacks
        assert problem.H.untyped_storage().data_ptr() == batch.H.untyped_storage().data_ptr()
        assert problem.W.untyped_storage().data_ptr() == batch.Wt.untyped_storage().data_ptr()


@pytest.mark.parametrize("solver", ["mu", "hals"])
@pytest.mark.parametrize("row_limit", [100, 3])
def test_an_iteration_is_each_problems_own_update(solver, row_limit):
    X, rules, penalties = _setup(solver)
    problems = _problems([2, 3, 2, 4])
    expected = []
    for p in problems:  # what a single fit does: layouts' W update, then H update, with the same rules
        w_rule, h_rule = (hals_rules(resolve_backend("torch", X), X, penalties, p.k) if solver == "hals"
                          else (rules.w(p.k), rules.h(p.k)))
        W, H = X.iteration(w_rule, h_rule, p.W.clone(), p.H.clone())
        expected.append((p.k, p.r, W, H))
    batch = StackedBatch(problems, row_limit=row_limit)
    batch.iteration(X, rules, solver)
    got = {(p.k, p.r): p for p in batch.problems}
    for k, r, W, H in expected:
        torch.testing.assert_close(got[(k, r)].W, W, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(got[(k, r)].H, H, rtol=1e-12, atol=1e-14)


def test_compaction_drops_done_problems_and_keeps_the_others_values():
    batch = StackedBatch(_problems([2, 3, 2]), row_limit=100)
    kept = {(p.k, p.r): (p.W.clone(), p.H.clone()) for p in batch.problems}
    batch.problems[1].done = True  # (2, 2)
    batch.problems[1].W = batch.problems[1].H = None
    batch.compact()
    assert [(p.k, p.r) for p in batch.problems] == [(2, 0), (3, 1)] and batch.H.shape == (5, 20)
    for p in batch.problems:
        assert torch.equal(p.W, kept[(p.k, p.r)][0]) and torch.equal(p.H, kept[(p.k, p.r)][1])
    batch.problems[0].done = batch.problems[1].done = True
    batch.compact()
    assert batch.problems == [] and batch.H is None
    batch.iteration(None, None, "mu")  # nothing left to do
