"""What the distributed tests run on 4 gloo ranks in one process group (``fastnmf.distributed.local``).

:func:`session` runs every case in one spawned world of 4 (a process group per world size is what keeps
the distributed tests within their time budget) and returns, per rank, a dict ``case → outcome``:
gathered factors, ``n_iter``, payload logs, the errors each rank raised. The assertions live in the
``test_distributed_*`` modules, which compare with single-process fits computed in the test process.
Sub-groups run the smaller grids side by side: ranks {0, 1} and {2, 3} form two 2-process groups, each
rank alone a 1-process group.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import scipy.sparse as sp

SHAPE, RANK = (301, 203), 7
ITERATIONS = 50
# (beta, solver, extra options) of the equality cases.
EQUALITY_CASES = [(2.0, "mu", {}), (2.0, "hals", {}), (1.0, "mu", {}), (0.0, "mu", {}), (1.5, "mu", {})]
# The Triton backend's cases: small, as the kernels run in the interpreter on a CPU.
TRITON_SHAPE, TRITON_ITERATIONS = (30, 21), 6
TRITON_CASES = [(2.0, "mu"), (2.0, "hals"), (1.0, "mu"), (1.5, "mu")]


def data(sparse: bool, shape=SHAPE, seed=0):
    """Counts with a low-rank rate, 60 % zeros: dense float64 or CSR."""
    rng = np.random.RandomState(seed)
    rate = rng.gamma(0.5, 1.0, size=(shape[0], 3)) @ rng.gamma(0.5, 1.0, size=(3, shape[1]))
    X = rng.poisson(rate).astype(np.float64)
    X[X.sum(axis=1) == 0, 0] = 1.0  # no empty row: β < 1 divides by WH
    X[0, X.sum(axis=0) == 0] = 1.0
    return sp.csr_matrix(X) if sparse else X


def _fit(X, grid, group, **options):
    import fastnmf.distributed as fd
    import torch.distributed as dist

    rank = dist.get_rank(group)
    block = fd.shard(X, grid, rank).X
    W, H, n_iter = fd.non_negative_factorization(block, options.pop("n_components", RANK), grid=grid, group=group,
                                                 **options)
    W_all, H_all = fd.gather(W, H, grid=grid, group=group)
    return dict(W=W_all, H=H_all, n_iter=n_iter, owned=(np.shape(W), np.shape(H)))


def _errors(function):
    try:
        function()
    except Exception as error:  # noqa: BLE001 — what each rank raised is the outcome
        return (type(error).__name__, str(error))
    return None


def _equality(grid, group, label, out):
    for sparse in (False, True):
        X = data(sparse)
        for beta, solver, extra in EQUALITY_CASES:
            out[(label, beta, solver, sparse)] = _fit(X, grid, group, beta_loss=beta, solver=solver, tol=0.0,
                                                      max_iter=ITERATIONS, random_state=3, **extra)


def session(rank: int, world: int, checkpoint_root: str):
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    import fastnmf.distributed as fd

    out = {}
    world_group = dist.group.WORLD
    pair = dist.new_group([0, 1] if rank < 2 else [2, 3], use_local_synchronization=True)
    alone = dist.new_group([rank], use_local_synchronization=True)
    pair_grid, pair_label = ((2, 1), "2x1") if rank < 2 else ((1, 2), "1x2")

    # Gathered == single process, every grid.
    _equality((2, 2), world_group, "2x2", out)
    _equality((4, 1), world_group, "4x1", out)
    _equality(None, world_group, "default", out)
    _equality(pair_grid, pair, pair_label, out)
    _equality((1, 1), alone, "1x1", out)
    mesh = init_device_mesh("cpu", (2, 2))
    X = data(False)
    out[("mesh", 2.0, "mu", False)] = _fit(X, mesh, None, beta_loss=2.0, solver="mu", tol=0.0, max_iter=ITERATIONS,
                                           random_state=3)
    # Options: extrapolated HALS, penalties, custom starts whole and owned, float32, the tolerance test.
    out["extrapolate"] = _fit(X, (2, 2), world_group, solver="hals", extrapolate=True, tol=0.0, max_iter=ITERATIONS,
                              random_state=3)
    out["penalties"] = _fit(X, (2, 2), world_group, beta_loss=1.0, solver="mu", alpha_W=0.01, alpha_H=0.02,
                            l1_ratio=0.5, tol=0.0, max_iter=ITERATIONS, random_state=3)
    rng = np.random.RandomState(5)
    W0, H0 = rng.uniform(0.1, 1.0, size=(SHAPE[0], RANK)), rng.uniform(0.1, 1.0, size=(RANK, SHAPE[1]))
    out["custom-whole"] = _fit(X, (2, 2), world_group, init="custom", W=W0, H=H0, tol=0.0, max_iter=ITERATIONS)
    rows, columns = fd.owned_parts(SHAPE, (2, 2), rank)
    out["custom-owned"] = _fit(X, (2, 2), world_group, init="custom", W=W0[rows.start:rows.stop],
                               H=H0[:, columns.start:columns.stop], tol=0.0, max_iter=ITERATIONS)
    out["float32"] = _fit(X.astype(np.float32), (2, 2), world_group, beta_loss=1.0, solver="mu", tol=0.0,
                          max_iter=ITERATIONS, random_state=3)
    for beta, solver in ((1.0, "mu"), (2.0, "hals")):
        out[("tol", beta, solver)] = _fit(data(True), (2, 2), world_group, beta_loss=beta, solver=solver, tol=1e-4,
                                          check_every=5, max_iter=400, random_state=3)
    # Tiny and odd: 3 rows on a 2×2 grid (a rank owns no row of W), k ≥ min(m, n).
    tiny = data(False, shape=(3, 5), seed=1)
    out["tiny"] = _fit(tiny, (2, 2), world_group, n_components=4, beta_loss=1.0, solver="mu", tol=0.0, max_iter=20,
                       random_state=3)

    # The Triton backend's local steps (under the interpreter here): fused updates where a group has one
    # member, the rules' statistics where it is shared.
    small = data(False, shape=TRITON_SHAPE, seed=2).astype(np.float32)
    for label, grid in (("2x2", (2, 2)), ("4x1", (4, 1))):
        for beta, solver in TRITON_CASES:
            out[("triton", label, beta, solver, False)] = _fit(small, grid, world_group, n_components=3, backend="triton",
                                                               beta_loss=beta, solver=solver, tol=0.0,
                                                               max_iter=TRITON_ITERATIONS, random_state=3)
    out[("triton", "2x2", 1.0, "mu", True)] = _fit(sp.csr_matrix(small), (2, 2), world_group, n_components=3,
                                                   backend="triton", beta_loss=1.0, tol=0.0,
                                                   max_iter=TRITON_ITERATIONS, random_state=3)

    # Payload of the collectives: 10 iterations, objective checks at 0, 5 and 10.
    for beta, solver in ((2.0, "mu"), (1.0, "mu"), (1.5, "mu"), (2.0, "hals")):
        with fd.count_payload() as log:
            W, H, n_iter = fd.non_negative_factorization(fd.shard(X, (2, 2), rank).X, RANK, grid=(2, 2), beta_loss=beta,
                                                         solver=solver, tol=0.0, max_iter=10, check_every=5,
                                                         random_state=3,
                                                         # the formula's case: plain HALS (no extrapolated points)
                                                         **({"extrapolate": False} if solver == "hals" else {}))
        out[("payload", beta, solver)] = log.records

    # The loss of the whole factorization, and the factors gathered on one rank only.
    block = fd.shard(X, (2, 2), rank).X
    W, H, _ = fd.non_negative_factorization(block, RANK, grid=(2, 2), beta_loss=1.0, tol=0.0, max_iter=10,
                                            random_state=3)
    out["loss"] = fd.factorization_loss(block, W, H, "kullback-leibler", grid=(2, 2))
    out["gather-to-1"] = fd.gather(W, H, grid=(2, 2), dst=1)
    out["gather-everywhere"] = fd.gather(W, H, grid=(2, 2))

    # A callback that stops on one rank stops every rank at the same iteration.
    out["callback"] = _fit(X, (2, 2), world_group, tol=0.0, max_iter=ITERATIONS, random_state=3,
                           callback=lambda n_iter, W, H: rank == 1 and n_iter == 7)

    # Bad input on one rank: the same error on every rank, before any work.
    block = fd.shard(X, (2, 2), rank).X.copy()
    if rank == 3:
        block[1, 2] = np.nan
    out["nan-on-rank-3"] = _errors(lambda: fd.non_negative_factorization(block, RANK, grid=(2, 2), max_iter=5))
    good = fd.shard(X, (2, 2), rank).X
    wrong = good[:-1] if rank == 1 else good
    out["shape-on-rank-1"] = _errors(lambda: fd.non_negative_factorization(wrong, RANK, grid=(2, 2), max_iter=5))
    out["options-differ"] = _errors(lambda: fd.non_negative_factorization(good, RANK, grid=(2, 2), max_iter=5 + (rank == 2)))
    out["nndsvda"] = _errors(lambda: fd.non_negative_factorization(good, RANK, grid=(2, 2), init="nndsvda"))
    out["bad-grid"] = _errors(lambda: fd.non_negative_factorization(good, RANK, grid=(3, 2)))
    out["newton"] = _errors(lambda: fd.non_negative_factorization(good, RANK, grid=(2, 2), solver="newton",
                                                                  beta_loss="kullback-leibler"))

    # Checkpoints: 20 iterations written, resumed to 40 == 40 straight (MU, and HALS with extrapolation).
    for label, options in (("mu", dict(beta_loss=1.0)), ("hals-extrapolate", dict(solver="hals", extrapolate=True))):
        folder = os.path.join(checkpoint_root, label)
        block = fd.shard(X, (2, 2), rank).X
        straight = fd.non_negative_factorization(block, RANK, grid=(2, 2), tol=0.0, max_iter=40, random_state=3,
                                                 check_every=5, **options)
        fd.non_negative_factorization(block, RANK, grid=(2, 2), tol=0.0, max_iter=20, random_state=3, check_every=5,
                                      checkpoint=folder, checkpoint_every=0.0, **options)
        files = sorted(os.listdir(folder))
        resumed = fd.resume(folder, block, grid=(2, 2), max_iter=40, checkpoint_every=0.0)
        out[("checkpoint", label)] = dict(straight=straight, resumed=resumed, files=files,
                                          files_after_resume=sorted(os.listdir(folder)))
    out["resume-missing"] = _errors(lambda: fd.resume(os.path.join(checkpoint_root, "nothing"), good, grid=(2, 2)))

    # Last: rank 3 dies mid-fit; rank 2, its partner in a 1×2 fit, must fail within the timeout.
    if rank >= 2:
        pair_block = fd.shard(X, (1, 2), rank - 2).X

        def die(n_iter, W, H):
            if rank == 3 and n_iter == 3:
                os._exit(17)
            return False

        started = time.monotonic()
        error = _errors(lambda: fd.non_negative_factorization(pair_block, RANK, grid=(1, 2), group=pair, tol=0.0,
                                                              max_iter=10_000, callback=die, timeout=20))
        out["killed"] = dict(error=error, seconds=time.monotonic() - started)
    return out


def run_session(deadline: float = 240.0):
    from fastnmf.distributed.local import run_local

    with tempfile.TemporaryDirectory() as root:
        return run_local(4, session, root, deadline=deadline, collective_timeout=30.0, allow_exit=True)
