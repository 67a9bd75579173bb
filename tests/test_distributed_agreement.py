"""Bad input on one rank raises the same error on every rank, before any work; a rank that dies makes
its partners fail fast instead of hanging (``fastnmf.distributed.agreement``, 4 gloo ranks)."""

import pytest

pytestmark = pytest.mark.slow

LIVE_RANKS = (0, 1, 2)


def outcomes(session, case):
    return [session[rank][case] for rank in LIVE_RANKS]


def test_nan_on_one_rank_is_raised_on_every_rank_naming_it(distributed_session):
    errors = outcomes(distributed_session, "nan-on-rank-3")
    assert len(set(errors)) == 1
    name, message = errors[0]
    assert name == "ValueError" and "NaN" in message and "[rank 3 of 4]" in message


def test_a_block_that_does_not_fit_the_grid_is_named(distributed_session):
    errors = outcomes(distributed_session, "shape-on-rank-1")
    assert len(set(errors)) == 1
    name, message = errors[0]
    assert name == "ValueError" and "Rank 1" in message and "(150, 101)" in message and "(151, 101)" in message


def test_options_that_differ_between_ranks_are_refused(distributed_session):
    errors = outcomes(distributed_session, "options-differ")
    assert len(set(errors)) == 1
    assert errors[0][0] == "ValueError" and "rank 2 has max_iter=6 (rank 0: 5)" in errors[0][1]


def test_svd_starts_are_a_clear_error(distributed_session):
    for name, message in outcomes(distributed_session, "nndsvda"):
        assert name == "ValueError" and "init='nndsvda'" in message and "['random', 'custom']" in message


def test_the_newton_solver_is_refused_on_every_rank(distributed_session):
    for name, message in outcomes(distributed_session, "newton"):
        assert name == "ValueError" and "solver='newton' is not supported by a distributed fit yet" in message


def test_a_grid_that_does_not_match_the_group_size(distributed_session):
    for name, message in outcomes(distributed_session, "bad-grid"):
        assert name == "ValueError" and "(3, 2)" in message and "(4)" in message


def test_a_rank_that_dies_makes_its_partner_fail_fast(distributed_session):
    from fastnmf.distributed.local import RankExit

    assert isinstance(distributed_session[3], RankExit) and distributed_session[3].exitcode == 17
    killed = distributed_session[2]["killed"]
    assert killed["error"] is not None
    name, message = killed["error"]
    assert name == "DistributedError" and "rank 2" in message and "another rank died" in message
    assert killed["seconds"] < 20.0  # the timeout given; gloo notices the closed connection at once
