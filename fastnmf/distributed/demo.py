"""``torchrun --nproc-per-node N -m fastnmf.distributed.demo``: one distributed fit, end to end.

Each rank makes (or reads from a ``.npy``, memory-mapped) its block of X, fits on the grid, and rank 0
prints the loss of the whole factorization and the time. NCCL with one GPU per rank (``cuda:LOCAL_RANK``)
when CUDA is present, gloo on the CPUs otherwise. Without torchrun it runs as a single process.

Examples::

    torchrun --nproc-per-node 4 -m fastnmf.distributed.demo --shape 20000 10000 --k 32 --grid 2 2
    torchrun --nproc-per-node 2 -m fastnmf.distributed.demo --npy X.npy --k 20 --beta 1
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import time

import numpy as np
import torch
import torch.distributed as dist

from .grid import release_groups
from .local import free_port

__all__ = ["main", "generated_block"]


def generated_block(shape, rows: range, columns: range, k: int, beta: float, seed: int) -> np.ndarray:
    """Rows × columns of a synthetic X, made on this rank only (no rank holds all of X): a rank-k
    non-negative product — Poisson counts of it for β ≠ 2, plus Gaussian noise of 10 % of the row's
    mean for β = 2."""
    m, n = shape
    factors = np.random.RandomState(seed)
    W, H = factors.gamma(1.0, 1.0, size=(m, k)), factors.gamma(1.0, 1.0 / k, size=(k, n))
    rate = W[rows.start:rows.stop] @ H[:, columns.start:columns.stop]
    # Noise drawn row by row from the row's own seed: the same X whatever the grid.
    block = np.empty(rate.shape, dtype=np.float32)
    for index, row in enumerate(rows):
        noise = np.random.RandomState([seed, row])
        if beta == 2.0:
            scale = 0.1 * float(W[row].mean() * H.mean() * k)
            block[index] = np.maximum(rate[index] + scale * noise.standard_normal(n)[columns.start:columns.stop], 0.0)
        else:
            block[index] = noise.poisson(np.broadcast_to(W[row] @ H, (n,)))[columns.start:columns.stop]
    return block


def _parser():
    parser = argparse.ArgumentParser(prog="python -m fastnmf.distributed.demo", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("Examples::", 1)[1])
    parser.add_argument("--shape", nargs=2, type=int, default=(4000, 2000), metavar=("M", "N"),
                        help="shape of the generated X (default 4000 2000)")
    parser.add_argument("--npy", help="fit this .npy file instead (memory-mapped: each rank reads its block only)")
    parser.add_argument("--k", type=int, default=16, help="rank (default 16)")
    parser.add_argument("--beta", type=float, default=2.0, help="β of the loss (default 2, Frobenius)")
    parser.add_argument("--solver", default="auto", help="auto, mu or hals (default auto)")
    parser.add_argument("--grid", nargs=2, type=int, metavar=("P_R", "P_C"), help="process grid (default: N × 1)")
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="collective timeout in seconds (default 300)")
    return parser


def _init_process_group(timeout: float) -> torch.device:
    if "RANK" not in os.environ:  # not under torchrun: a group of one on the loopback
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(free_port()))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    return device


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from . import factorization_loss, non_negative_factorization, shard

    device = _init_process_group(args.timeout)
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        grid = tuple(args.grid) if args.grid else (world, 1)
        if args.npy:
            X = np.load(args.npy, mmap_mode="r")
            shape, block = X.shape, np.ascontiguousarray(shard(X, grid, rank).X, dtype=np.float32)
        else:
            shape = tuple(args.shape)
            part = shard(np.broadcast_to(np.float32(0), shape), grid, rank)  # the ranges only
            block = generated_block(shape, part.rows, part.columns, args.k, args.beta, args.seed)
        X_local = torch.from_numpy(block).to(device)
        start = time.perf_counter()
        W, H, n_iter = non_negative_factorization(X_local, args.k, grid=grid, beta_loss=args.beta, solver=args.solver,
                                                  max_iter=args.max_iter, tol=args.tol, random_state=args.seed)
        seconds = time.perf_counter() - start
        loss = factorization_loss(X_local, W, H, args.beta, grid=grid)
        if rank == 0:
            print(f"fastnmf.distributed: X {shape[0]}×{shape[1]} on a {grid[0]}×{grid[1]} grid ({world} ranks, "
                  f"{dist.get_backend()}, {device.type}), k={args.k}, β={args.beta:g}: {n_iter} iterations in "
                  f"{seconds:.2f} s, loss {loss:.6g}", flush=True)
        # Every rank reaches the teardown together, and no reference to a destroyed group outlives it: gloo
        # aborted a rank (std::terminate at interpreter exit) in about one run in five without both.
        dist.barrier()
    finally:
        dist.destroy_process_group()
        release_groups()
        gc.collect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
