"""fastnmf.distributed.non_negative_factorization on 4 gloo ranks: the gathered factors equal the
single-process fit's (float64, ≤ 1e-10 relative) on every grid, β, solver and storage, and every rank
stops at the same iteration as the single process (``distributed_cases.session`` runs the fits)."""

import numpy as np
import pytest

from distributed_cases import (EQUALITY_CASES, ITERATIONS, RANK, SHAPE, TRITON_CASES, TRITON_ITERATIONS,
                               TRITON_SHAPE)

pytestmark = pytest.mark.slow

LIVE_RANKS = (0, 1, 2)  # rank 3 dies in the session's last case: its outcomes are not returned
# grid label → the ranks that ran it (sub-groups: {0, 1} ran 2×1, {2, 3} ran 1×2, each rank alone 1×1)
GRIDS = {"2x2": LIVE_RANKS, "4x1": LIVE_RANKS, "default": LIVE_RANKS, "2x1": (0, 1), "1x2": (2,), "1x1": LIVE_RANKS}
TOLERANCE = 1e-10


def relative_error(outcome, reference):
    W, H, _ = reference
    return max(np.abs(outcome["W"] - W).max() / np.abs(W).max(), np.abs(outcome["H"] - H).max() / np.abs(H).max())


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("beta, solver, extra", EQUALITY_CASES, ids=[f"{s}-beta{b:g}" for b, s, _ in EQUALITY_CASES])
@pytest.mark.parametrize("grid", list(GRIDS))
def test_gathered_factors_equal_the_single_process_fit(distributed_session, single_process_fit, grid, beta, solver,
                                                       extra, sparse):
    reference = single_process_fit(sparse, init="random", beta_loss=beta, solver=solver, tol=0.0, max_iter=ITERATIONS,
                                   random_state=3, **extra)
    for rank in GRIDS[grid]:
        outcome = distributed_session[rank][(grid, beta, solver, sparse)]
        assert outcome["n_iter"] == reference[2]
        assert relative_error(outcome, reference) <= TOLERANCE


def test_each_rank_owns_its_part_of_the_factors(distributed_session):
    import fastnmf.distributed as fd

    for rank in LIVE_RANKS:
        rows, columns = fd.owned_parts(SHAPE, (2, 2), rank)
        assert distributed_session[rank][("2x2", 2.0, "mu", False)]["owned"] == ((len(rows), RANK), (RANK, len(columns)))


def test_a_device_mesh_grid_gives_the_same_fit(distributed_session, single_process_fit):
    reference = single_process_fit(False, init="random", tol=0.0, max_iter=ITERATIONS, random_state=3, solver="mu")
    for rank in LIVE_RANKS:
        assert relative_error(distributed_session[rank][("mesh", 2.0, "mu", False)], reference) <= TOLERANCE


@pytest.mark.parametrize("case, options", [
    ("extrapolate", dict(init="random", solver="hals", extrapolate=True, random_state=3)),
    ("penalties", dict(init="random", beta_loss=1.0, solver="mu", alpha_W=0.01, alpha_H=0.02, l1_ratio=0.5,
                       random_state=3)),
])
def test_options_mean_what_they_mean_in_one_process(distributed_session, single_process_fit, case, options):
    reference = single_process_fit(False, tol=0.0, max_iter=ITERATIONS, **options)
    for rank in LIVE_RANKS:
        assert relative_error(distributed_session[rank][case], reference) <= TOLERANCE


@pytest.mark.parametrize("case", ["custom-whole", "custom-owned"])
def test_custom_start_whole_or_owned(distributed_session, single_process_fit, case):
    rng = np.random.RandomState(5)
    W0, H0 = rng.uniform(0.1, 1.0, size=(SHAPE[0], RANK)), rng.uniform(0.1, 1.0, size=(RANK, SHAPE[1]))
    import distributed_cases

    import fastnmf

    reference = fastnmf.non_negative_factorization(distributed_cases.data(False), W0, H0, n_components=RANK,
                                                   init="custom", tol=0.0, max_iter=ITERATIONS)
    for rank in LIVE_RANKS:
        assert relative_error(distributed_session[rank][case], reference) <= TOLERANCE


def test_float32_blocks(distributed_session):
    import distributed_cases

    import fastnmf

    X = distributed_cases.data(False).astype(np.float32)
    reference = fastnmf.non_negative_factorization(X, n_components=RANK, init="random", beta_loss=1.0, solver="mu",
                                                   tol=0.0, max_iter=ITERATIONS, random_state=3)
    for rank in LIVE_RANKS:
        outcome = distributed_session[rank]["float32"]
        assert outcome["W"].dtype == np.float32
        assert relative_error(outcome, reference) <= 1e-4  # float32 sums in another order


@pytest.mark.parametrize("beta, solver", [(1.0, "mu"), (2.0, "hals")])
def test_the_tolerance_stops_every_rank_where_one_process_stops(distributed_session, single_process_fit, beta, solver):
    reference = single_process_fit(True, init="random", beta_loss=beta, solver=solver, tol=1e-4, check_every=5,
                                   max_iter=400, random_state=3)
    assert 0 < reference[2] < 400
    for rank in LIVE_RANKS:
        outcome = distributed_session[rank][("tol", beta, solver)]
        assert outcome["n_iter"] == reference[2]
        assert relative_error(outcome, reference) <= TOLERANCE


def test_odd_shapes_with_ranks_that_own_nothing(distributed_session, single_process_fit):
    # 3 rows on a 2×2 grid: block row 1 has one row, and its second rank owns no row of W; k = 4 > min(m, n).
    reference = single_process_fit(False, shape=(3, 5), seed=1, n_components=4, init="random", beta_loss=1.0,
                                   solver="mu", tol=0.0, max_iter=20, random_state=3)
    for rank in LIVE_RANKS:
        assert relative_error(distributed_session[rank]["tiny"], reference) <= TOLERANCE


def test_a_callback_stopping_on_one_rank_stops_all(distributed_session):
    for rank in LIVE_RANKS:
        assert distributed_session[rank]["callback"]["n_iter"] == 7


TRITON_PARAMS = [(grid, beta, solver, False) for grid in ("2x2", "4x1") for beta, solver in TRITON_CASES]
TRITON_PARAMS.append(("2x2", 1.0, "mu", True))


@pytest.mark.parametrize("grid, beta, solver, sparse", TRITON_PARAMS)
def test_triton_local_steps_match_the_single_process_triton_fit(distributed_session, grid, beta, solver, sparse):
    """backend='triton' (the interpreter here): fused updates on groups of one, statistics on shared ones."""
    import distributed_cases
    import scipy.sparse as sp

    import fastnmf

    X = distributed_cases.data(False, shape=TRITON_SHAPE, seed=2).astype(np.float32)
    reference = fastnmf.non_negative_factorization(sp.csr_matrix(X) if sparse else X, n_components=3, init="random",
                                                   backend="triton", beta_loss=beta, solver=solver, tol=0.0,
                                                   max_iter=TRITON_ITERATIONS, random_state=3)
    for rank in LIVE_RANKS:
        outcome = distributed_session[rank][("triton", grid, beta, solver, sparse)]
        assert outcome["n_iter"] == TRITON_ITERATIONS
        assert relative_error(outcome, reference) <= 1e-4  # float32, sums in another order


def test_factorization_loss_of_the_grid_is_the_loss_of_the_whole(distributed_session, single_process_fit):
    import distributed_cases

    import fastnmf

    W, H = distributed_session[0]["gather-everywhere"]
    expected = fastnmf.factorization_loss(distributed_cases.data(False), W, H, "kullback-leibler")
    for rank in LIVE_RANKS:
        assert distributed_session[rank]["loss"] == pytest.approx(expected, rel=1e-12)


def test_gather_to_one_rank(distributed_session):
    W, H = distributed_session[0]["gather-everywhere"]
    for rank in LIVE_RANKS:
        gathered = distributed_session[rank]["gather-to-1"]
        if rank == 1:
            np.testing.assert_array_equal(gathered[0], W)
            np.testing.assert_array_equal(gathered[1], H)
        else:
            assert gathered == (None, None)
