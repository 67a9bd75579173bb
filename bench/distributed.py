"""``python -m bench --distributed N``: the distributed fit on 1, 2, 4, … N gloo ranks of this machine.

For each process grid (N × 1 row blocks, and the square grids), and each of Frobenius MU, Frobenius HALS
and KL MU on the same generated X (``fastnmf.distributed.demo.generated_block``: the same data on every
grid), it reports the time per iteration (the difference of two fits of different lengths, so that
start-up and the objective at the start and the end cancel; the slowest rank's time; the median of three), the logical
payload per iteration of each collective (counted by ``fastnmf.distributed.count_payload``) beside the
formula ``2·k·(m/p_r + n/p_c)·itemsize`` for β ∈ {1, 2}, and the single-process fit of the same X with
as many threads as ranks. Each rank runs one thread: on a 2-core machine 4 ranks share 2 cores, so the
times do not scale — they show the cost of the collectives, not a speed-up.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch

__all__ = ["run", "grids"]

REPEATS = 3  # the median of three (long − short) differences: one alone moved by 2× on the 2-core machine
# (name, β, solver, options). HALS runs plain (no extrapolation): the payload formula's case — extrapolation
# adds an all-gather of each extrapolated point and a few scalars (docs/distributed.md).
CASES = (("frobenius-mu", 2.0, "mu", {}), ("frobenius-hals", 2.0, "hals", {"extrapolate": False}),
         ("kl-mu", 1.0, "mu", {}))


def grids(max_ranks: int) -> list[tuple[int, int]]:
    """(1, 1), then (w, 1) for w = 2, 4, … up to ``max_ranks`` (and ``max_ranks`` itself), plus square grids."""
    sizes = sorted({w for w in (2 ** e for e in range(0, 12)) if w <= max_ranks} | {max_ranks})
    shapes = [(w, 1) for w in sizes]
    shapes += [(r, r) for r in range(2, int(max_ranks ** 0.5) + 1) if r * r in sizes]
    return shapes


def _rank_target(rank, world, grid, shape, k, iterations):
    import torch.distributed as dist

    import fastnmf.distributed as fd
    from fastnmf.distributed.demo import generated_block

    rows = {}
    for name, beta, solver, solver_options in CASES:
        part = fd.shard(np.broadcast_to(np.float32(0), shape), grid, rank)
        X = torch.from_numpy(generated_block(shape, part.rows, part.columns, k, beta, seed=0))
        options = dict(grid=grid, beta_loss=beta, solver=solver, tol=0.0, check_every=10 ** 9, random_state=0,
                       **solver_options)
        fd.non_negative_factorization(X, k, max_iter=2, **options)  # warm-up
        differences = []
        for _ in range(REPEATS):
            times = []
            for length in (2, 2 + iterations):
                dist.barrier()
                start = time.perf_counter()
                fd.non_negative_factorization(X, k, max_iter=length, **options)
                elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
                dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # the slowest rank's time is the fit's
                times.append(float(elapsed[0]))
            differences.append(times[1] - times[0])
        logs = []
        for length in (2, 6):
            with fd.count_payload() as log:
                fd.non_negative_factorization(X, k, max_iter=length, **options)
            logs.append(log)
        per_iteration = {op: (logs[1].bytes(op) - logs[0].bytes(op)) / 4 for op in ("all_gather", "reduce_scatter",
                                                                                   "all_reduce")}
        counts = {op: (logs[1].count(op) - logs[0].count(op)) / 4 for op in per_iteration}
        block_rows, block_columns = X.shape
        # A group of one sends nothing: W's gather and scatter vanish on p_c = 1, H's on p_r = 1.
        expected = 2 * k * (block_rows * (grid[1] > 1) + block_columns * (grid[0] > 1)) * X.element_size()
        rows[name] = dict(ms_per_iter=1e3 * float(np.median(differences)) / iterations, payload=per_iteration, counts=counts,
                          formula=2 * k * (block_rows + block_columns) * X.element_size(), expected=expected)
    return rows


def _single_process(shape, k, iterations, threads):
    import fastnmf
    from fastnmf.distributed.demo import generated_block

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = {}
        for name, beta, solver, solver_options in CASES:
            X = torch.from_numpy(generated_block(shape, range(shape[0]), range(shape[1]), k, beta, seed=0))
            options = dict(n_components=k, init="random", beta_loss=beta, solver=solver, tol=0.0, check_every=10 ** 9,
                           random_state=0, **solver_options)
            fastnmf.non_negative_factorization(X, max_iter=2, **options)
            differences = []
            for _ in range(REPEATS):
                times = []
                for length in (2, 2 + iterations):
                    start = time.perf_counter()
                    fastnmf.non_negative_factorization(X, max_iter=length, **options)
                    times.append(time.perf_counter() - start)
                differences.append(times[1] - times[0])
            out[name] = 1e3 * float(np.median(differences)) / iterations
        return out
    finally:
        torch.set_num_threads(previous)


def run(max_ranks: int, shape=(4000, 2000), k: int = 32, iterations: int = 20, out=None, table=None,
        wait_quiet_s: float = 0.0) -> list[dict]:
    from fastnmf.distributed.local import run_local

    from .environment import describe, load_average
    from .machine import wait_until_quiet

    environment = describe(torch.device("cpu"))
    records = []
    for grid in grids(max_ranks):
        world = grid[0] * grid[1]
        waited = wait_until_quiet(wait_quiet_s) if wait_quiet_s > 0 else 0.0
        load = load_average()
        per_rank = run_local(world, _rank_target, grid, tuple(shape), k, iterations, deadline=1800.0,
                             collective_timeout=600.0)
        single = _single_process(tuple(shape), k, iterations, world)
        for name, *_ in CASES:
            rank0 = per_rank[0][name]
            records.append(dict(grid=list(grid), ranks=world, case=name, shape=list(shape), k=k,
                                ms_per_iter=rank0["ms_per_iter"], single_process_ms_per_iter=single[name],
                                single_process_threads=world, payload_bytes_per_iter=rank0["payload"],
                                collectives_per_iter=rank0["counts"], formula_bytes_per_iter=rank0["formula"],
                                expected_bytes_per_iter=rank0["expected"], waited_for_quiet_s=waited,
                                load_average_at_start=load, environment=environment))
        print(f"[bench] grid {grid[0]}×{grid[1]} done", flush=True)
    text = markdown(records)
    print(text)
    if out:
        with open(out, "w") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
    if table:
        with open(table, "w") as handle:
            handle.write(text + "\n")
    return records


def markdown(records: list[dict]) -> str:
    cores, environment = os.cpu_count(), records[0]["environment"]
    versions = environment["versions"]
    lines = [
        f"# fastnmf.distributed on gloo ranks of one machine ({cores} cores, 1 thread per rank)",
        "",
        f"{environment['cpu']}, {environment['timestamp']}, git {str(environment['git_sha'])[:10]}"
        f"{' (uncommitted changes)' if environment['git_dirty_files'] else ''}; torch {versions.get('torch')}. "
        "Load average at the start of each grid: "
        + ", ".join(f"{r['grid'][0]}×{r['grid'][1]} {r['load_average_at_start']}" for r in records[::len(CASES)])
        + (f"; waited for a quiet machine up to {max(r['waited_for_quiet_s'] for r in records):.0f} s."
           if any(r["waited_for_quiet_s"] for r in records) else "."),
        "",
        f"X {records[0]['shape'][0]}×{records[0]['shape'][1]} float32, k = {records[0]['k']}. Payload: logical "
        "bytes per iteration on rank 0 (gathered blocks, reduce-scatter inputs, all-reduced tensors), with the "
        "formula 2·k·(m/p_r + n/p_c)·itemsize for the all-gathers plus reduce-scatters (β ∈ {1, 2}; a group of "
        "one sends nothing, so on p_c = 1 the W terms vanish and on p_r = 1 the H terms); ring "
        "collectives move about 2(p−1)/p of it on the wire per rank. Single process: the same fit with as many "
        "torch threads as ranks.",
        "",
        "| grid | ranks | case | ms/iter | single process ms/iter | all-gather B/iter | reduce-scatter B/iter "
        "| formula B/iter | formula without groups of one | all-reduce B/iter (count) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        payload, counts = r["payload_bytes_per_iter"], r["collectives_per_iter"]
        lines.append(
            f"| {r['grid'][0]}×{r['grid'][1]} | {r['ranks']} | {r['case']} | {r['ms_per_iter']:.1f} | "
            f"{r['single_process_ms_per_iter']:.1f} ({r['single_process_threads']} thr) | {payload['all_gather']:.0f} | "
            f"{payload['reduce_scatter']:.0f} | {r['formula_bytes_per_iter']} | {r['expected_bytes_per_iter']} | "
            f"{payload['all_reduce']:.0f} "
            f"({counts['all_reduce']:g}) |")
    return "\n".join(lines)
