"""The collectives of a distributed fit (``fastnmf.distributed.comm``), counted on 4 gloo ranks: per
iteration 2 all-gathers and 2 reduce-scatters whose logical payload is 2·k·(m/p_r + n/p_c)·itemsize
(twice that in the reduce-scatters for β ∉ {1, 2}, where the denominator is packed in), the k×k Grams (β = 2)
or k column sums (β = 1) in the small all-reduces, and one all-reduce of two scalars per objective check."""

import pytest

from distributed_cases import RANK, SHAPE

pytestmark = pytest.mark.slow

ITERATIONS, CHECKS, ITEMSIZE = 10, 3, 8  # 10 iterations, the objective at 0, 5 and 10, float64


@pytest.mark.parametrize("beta, solver", [(2.0, "mu"), (1.0, "mu"), (1.5, "mu"), (2.0, "hals")])
@pytest.mark.parametrize("rank", [0, 1, 2])
def test_payload_per_iteration_is_the_formula(distributed_session, beta, solver, rank):
    import fastnmf.distributed as fd

    grid = fd.ProcessGrid(2, 2)
    i, j = grid.position_of(rank)
    block_rows, block_columns = len(grid.block_rows(SHAPE[0], i)), len(grid.block_columns(SHAPE[1], j))
    per_iteration = 2 * RANK * (block_rows + block_columns) * ITEMSIZE  # gathers + scatters, β ∈ {1, 2}
    records = distributed_session[rank][("payload", beta, solver)]
    count = lambda op: sum(1 for r in records if r[0] == op)  # noqa: E731
    payload = lambda op: sum(r[1] for r in records if r[0] == op)  # noqa: E731

    assert count("all_gather") == 2 * ITERATIONS + 2  # + the start's two, for its objective
    assert count("reduce_scatter") == 2 * ITERATIONS
    gathered_per_iteration = (payload("all_gather") - per_iteration // 2) / ITERATIONS
    assert gathered_per_iteration == per_iteration // 2
    packed = 1 if beta in (1.0, 2.0) else 2  # numerator and denominator in one reduce-scatter
    assert payload("reduce_scatter") == ITERATIONS * packed * per_iteration // 2
    assert all(r[2] == 2 for r in records if r[0] in ("all_gather", "reduce_scatter"))  # row / column groups

    small = [r for r in records if r[0] == "all_reduce"]
    objective = [r for r in small if r[2] == 4]
    assert [r[1] for r in objective] == [2 * ITEMSIZE] * CHECKS  # divergence and penalty, whole grid
    per_update = {2.0: RANK * RANK * ITEMSIZE, 1.0: RANK * ITEMSIZE}.get(beta)
    statistics = [r[1] for r in small if r[2] == 2]
    assert statistics == ([per_update] * (2 * ITERATIONS) if per_update else [])
