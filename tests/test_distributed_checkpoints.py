"""Checkpoints of a distributed fit (``fastnmf.distributed.checkpoints``): a shard per rank and a manifest,
and a resumed fit equal to one never stopped (MU; HALS with extrapolation, whose state is in the shards)."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow

LIVE_RANKS = (0, 1, 2)


@pytest.mark.parametrize("label", ["mu", "hals-extrapolate"])
def test_resumed_fit_equals_the_uninterrupted_one(distributed_session, label):
    for rank in LIVE_RANKS:
        outcome = distributed_session[rank][("checkpoint", label)]
        (W, H, n_iter), (W_resumed, H_resumed, n_resumed) = outcome["straight"], outcome["resumed"]
        assert n_iter == n_resumed == 40
        np.testing.assert_array_equal(W_resumed, W)
        np.testing.assert_array_equal(H_resumed, H)


@pytest.mark.parametrize("label", ["mu", "hals-extrapolate"])
def test_the_folder_holds_a_manifest_and_each_rank_its_latest_shard(distributed_session, label):
    for rank in LIVE_RANKS:
        files = distributed_session[rank][("checkpoint", label)]["files"]
        assert "manifest.json" in files
        own = [name for name in files if name.startswith(f"rank{rank:05d}-")]
        assert own == [f"rank{rank:05d}-iter000000020.npz"]  # the older ones deleted once the manifest moved on
        # The resumed fit checkpoints into the same folder and retires the shard it started from.
        after = distributed_session[rank][("checkpoint", label)]["files_after_resume"]
        assert [name for name in after if name.startswith(f"rank{rank:05d}-")] == [f"rank{rank:05d}-iter000000040.npz"]


def test_resuming_from_a_missing_checkpoint_fails_on_every_rank(distributed_session):
    errors = [distributed_session[rank]["resume-missing"] for rank in LIVE_RANKS]
    assert len(set(errors)) == 1
    assert errors[0][0] == "FileNotFoundError" and "manifest.json is missing" in errors[0][1]
