"""``python -m bench --streaming``: X larger than memory, and the online MiniBatchNMF.

Two tables:

1. **Out-of-core full-batch fit**: a float32 ``np.memmap`` written to disk (``--streaming-gb``, default 4 GiB),
   fitted with ``memory_budget`` (default 500 MB) beside the same fit of the array loaded in memory: time per
   iteration (the median of three differences of two fits of different lengths: the fixed costs cancel),
   the time to read X once from the file (through the same chunk reader, one pass with no compute), and whether
   the file fitted the page cache (then the "read" is a memory copy, not a disk read — said in the table).
2. **MiniBatchNMF against scikit-learn's MiniBatchNMF**: the same data, batch size, start and number of passes
   (the two implementations take the same steps, so the same number of steps reaches the same loss: the
   time ratio is the time-to-same-loss ratio); full-data loss of both.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings

import numpy as np
import torch

__all__ = ["run"]


def _generate(path, m, n, k, seed=0):
    """A rank-k non-negative product plus noise, written in blocks of rows (never all in memory)."""
    rng = np.random.default_rng(seed)
    W, H = rng.gamma(1.0, 1.0, (m, k)).astype(np.float32), rng.gamma(1.0, 1.0 / k, (k, n)).astype(np.float32)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(m, n))
    step = max(1, (64 << 20) // (4 * n))
    for start in range(0, m, step):
        block = W[start:start + step] @ H
        X[start:start + step] = np.maximum(block + 0.1 * rng.standard_normal(block.shape, dtype=np.float32), 0)
    X.flush()
    del X


def _page_cache_fits(nbytes: int) -> bool:
    try:
        with open("/proc/meminfo") as info:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in info}
        return nbytes < fields.get("MemAvailable", 0)
    except OSError:
        return False


REPEATS = 3  # the median of three (long − short) differences: a fit's fixed costs (the validation pass, the
# objectives at the start and the end) are seconds on GiBs of X, and one difference alone was noise


def _per_iteration(fit, iterations):
    fit(1)  # warm-up: page faults of the first allocations, the page cache
    differences = []
    for _ in range(REPEATS):
        times = []
        for length in (1, 1 + iterations):
            start = time.perf_counter()
            fit(length)
            times.append(time.perf_counter() - start)
        differences.append((times[1] - times[0]) / iterations)
    return float(np.median(differences))


def out_of_core(gigabytes: float, budget: str, k: int = 16, iterations: int = 5) -> dict:
    import fastnmf
    from fastnmf.layouts.streamed import StreamedMatrix, chunk_rows_for_budget
    from fastnmf.params import parse_bytes
    from fastnmf.streaming import as_source

    n = 4096
    m = int(gigabytes * (1 << 30) / (4 * n))
    with tempfile.TemporaryDirectory(dir=os.environ.get("FASTNMF_BENCH_TMP")) as folder:
        path = os.path.join(folder, "x.npy")
        _generate(path, m, n, k)
        X = np.load(path, mmap_mode="r")
        options = dict(n_components=k, init="random", random_state=0, tol=0.0, solver="mu", beta_loss=2.0,
                       check_every=10 ** 9)
        streamed = _per_iteration(lambda it: fastnmf.non_negative_factorization(X, max_iter=it, memory_budget=budget,
                                                                                 **options), iterations)
        rows = chunk_rows_for_budget(parse_bytes(budget), n, 4, 2.0)  # what the fit's chunks are
        layout = StreamedMatrix(as_source(X), chunk_rows=rows, device="cpu", dtype=torch.float32)
        start = time.perf_counter()
        for _ in layout.chunks():
            pass
        read_once = time.perf_counter() - start
        in_memory = np.array(X)
        memory = _per_iteration(lambda it: fastnmf.non_negative_factorization(in_memory, max_iter=it, **options),
                                iterations)
        del in_memory
    return dict(shape=[m, n], k=k, gib=m * n * 4 / 2 ** 30, budget=budget, streamed_s_per_iter=streamed,
                in_memory_s_per_iter=memory, read_once_s=read_once, page_cache=_page_cache_fits(m * n * 4))


def minibatch(shape=(20000, 2000), k=16, batch_size=1024, max_iter=5) -> list[dict]:
    from sklearn.decomposition import MiniBatchNMF as Theirs

    import fastnmf

    rng = np.random.RandomState(0)
    X = rng.poisson(rng.gamma(0.5, 1.0, (shape[0], k)) @ rng.gamma(0.5, 1.0, (k, shape[1]))).astype(np.float32)
    X[X.sum(axis=1) == 0, 0] = 1.0
    X[0, X.sum(axis=0) == 0] = 1.0
    rows = []
    for beta in (2.0, 1.0, 0.5):
        options = dict(n_components=k, init="random", batch_size=batch_size, beta_loss=beta, random_state=0,
                       max_iter=max_iter, tol=0.0, max_no_improvement=None)
        result = {}
        for name, make in (("sklearn", Theirs), ("fastnmf", fastnmf.MiniBatchNMF)):
            model = make(**options)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                W = model.fit_transform(X)
                seconds = time.perf_counter() - start
            result[name] = dict(seconds=seconds, steps=int(model.n_steps_),
                                loss=fastnmf.factorization_loss(X, W, model.components_, beta))
        rows.append(dict(beta=beta, shape=list(shape), k=k, batch_size=batch_size, **result))
    return rows


def run(gigabytes: float = 4.0, budget: str = "500MB", out=None, table=None) -> dict:
    from .environment import describe

    environment = describe(torch.device("cpu"))
    record = dict(environment=environment, out_of_core=out_of_core(gigabytes, budget), minibatch=minibatch())
    text = markdown(record)
    print(text)
    if out:
        with open(out, "w") as handle:
            handle.write(json.dumps(record) + "\n")
    if table:
        with open(table, "w") as handle:
            handle.write(text + "\n")
    return record


def markdown(record: dict) -> str:
    e, o = record["environment"], record["out_of_core"]
    lines = [
        "# Streaming: out-of-core X and MiniBatchNMF",
        "",
        f"{e['cpu']}, {os.cpu_count()} cores, torch threads {e['torch_threads']}, {e['timestamp']}, git "
        f"{str(e['git_sha'])[:10]}{' (uncommitted changes)' if e['git_dirty_files'] else ''}, load average at start "
        f"{e['load_average_at_start']}.",
        "",
        f"## Out-of-core: {o['shape'][0]}×{o['shape'][1]} float32 memmap ({o['gib']:.1f} GiB), k = {o['k']}, "
        f"Frobenius MU, memory_budget={o['budget']}",
        "",
        "| | s per iteration |",
        "|---|---|",
        f"| streamed from the memmap | {o['streamed_s_per_iter']:.2f} |",
        f"| the same array in memory | {o['in_memory_s_per_iter']:.2f} |",
        f"| reading X once through the chunk reader | {o['read_once_s']:.2f} |",
        f"| streamed / max(read once, in memory) | {o['streamed_s_per_iter'] / max(o['read_once_s'], o['in_memory_s_per_iter']):.2f} |",
        "",
        ("The file fitted in the page cache (MemAvailable > its size): the read is a copy from the page cache, "
         "not from the disk — a warm-cache measurement." if o["page_cache"] else
         "The file was larger than the memory available: reads came from the disk."),
        "",
        "## MiniBatchNMF against scikit-learn's (same data, batch size, start and passes: the same steps)",
        "",
        "| β | X | k | batch | steps | scikit-learn s | fastnmf s | speed-up | loss scikit-learn | loss fastnmf |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["minibatch"]:
        s, f = r["sklearn"], r["fastnmf"]
        lines.append(f"| {r['beta']:g} | {r['shape'][0]}×{r['shape'][1]} | {r['k']} | {r['batch_size']} | {f['steps']} "
                     f"({s['steps']}) | {s['seconds']:.2f} | {f['seconds']:.2f} | {s['seconds'] / f['seconds']:.2f}× | "
                     f"{s['loss']:.6g} | {f['loss']:.6g} |")
    return "\n".join(lines)
