"""``python -m bench --ensemble``: R replicates × a range of k, batched against one after another.

The same problems three ways, all MU from random starts with the same tol and max_iter: ``fastnmf.fit_ensemble``
(batched: for Frobenius one stacked product with X per half-update), the same fits one after another through
``fastnmf.non_negative_factorization``, and scikit-learn's ``NMF`` one after another (what cNMF does); fits per
second, total time, and the time to a consensus at every k (``fastnmf.consensus`` on the batched ensemble).
"""

from __future__ import annotations

import json
import os
import time
import warnings

import numpy as np

__all__ = ["run"]


def _data(shape, seed=0):
    rng = np.random.RandomState(seed)
    programs = rng.gamma(0.3, 1.0, (7, shape[1]))
    programs /= programs.sum(axis=1, keepdims=True)
    X = rng.poisson(rng.dirichlet(np.full(7, 0.3), shape[0]) @ programs * 1000).astype(np.float32)
    X[X.sum(axis=1) == 0, 0] = 1.0
    X[0, X.sum(axis=0) == 0] = 1.0
    return X


def run(shape=(2000, 500), ks=(5, 6, 7, 8, 9), replicates=20, max_iter=200, tol=1e-4, out=None, table=None,
        betas=(2.0, 1.0)) -> list[dict]:
    import torch
    from sklearn.decomposition import NMF as SklearnNMF

    import fastnmf

    from .environment import describe

    X = _data(shape)
    with warnings.catch_warnings():  # warm-up: thread pools, first allocations (the first timing was 1.7× slow)
        warnings.simplefilter("ignore")
        fastnmf.fit_ensemble(X, [ks[0]], 2, max_iter=20, random_state=0)
        SklearnNMF(ks[0], init="random", random_state=0, max_iter=20).fit(X)
    records = []
    fits = len(ks) * replicates
    for beta in betas:
        options = dict(beta_loss=beta, solver="mu", tol=tol, max_iter=max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            ensemble = fastnmf.fit_ensemble(X, list(ks), replicates, random_state=0, **options)
            batched = time.perf_counter() - start
            start = time.perf_counter()
            for k in ks:
                fastnmf.consensus(ensemble, k)
            consensus = time.perf_counter() - start
            start = time.perf_counter()
            for k in ks:
                for r in range(replicates):
                    fastnmf.non_negative_factorization(X, n_components=k, init="random", backend="torch",
                                                       random_state=fastnmf.replicate_seed(0, k, r), **options)
            sequential = time.perf_counter() - start
            start = time.perf_counter()
            for k in ks:
                for r in range(replicates):
                    SklearnNMF(k, init="random", random_state=fastnmf.replicate_seed(0, k, r), **options).fit(X)
            sklearn = time.perf_counter() - start
        records.append(dict(beta=beta, shape=list(shape), ks=list(ks), replicates=replicates, fits=fits,
                            batched_s=batched, sequential_s=sequential, sklearn_s=sklearn, consensus_s=consensus,
                            mean_n_iter=float(np.mean([ensemble.n_iter(k, r) for k, r in ensemble.finished])),
                            torch_threads=torch.get_num_threads()))
        print(f"[bench] ensemble β={beta:g} done", flush=True)
    environment = describe(torch.device("cpu"))
    text = markdown(records, environment)
    print(text)
    if out:
        with open(out, "w") as handle:
            for record in records:
                handle.write(json.dumps({**record, "environment": environment}) + "\n")
    if table:
        with open(table, "w") as handle:
            handle.write(text + "\n")
    return records


def markdown(records, environment) -> str:
    e = environment
    lines = [
        "# Ensembles: replicates × ranks, batched against one by one",
        "",
        f"{e['cpu']}, {os.cpu_count()} cores, torch threads {e['torch_threads']}, {e['timestamp']}, git "
        f"{str(e['git_sha'])[:10]}{' (uncommitted changes)' if e['git_dirty_files'] else ''}, load average at start "
        f"{e['load_average_at_start']}. MU from random starts, each fit with its own tol test.",
        "",
        "| β | X | k | replicates | fits | mean n_iter | batched s (fits/s) | one by one s | scikit-learn s | "
        "batched vs one by one | batched vs scikit-learn | consensus at every k, s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['beta']:g} | {r['shape'][0]}×{r['shape'][1]} float32 | {r['ks'][0]}–{r['ks'][-1]} | {r['replicates']} | "
            f"{r['fits']} | {r['mean_n_iter']:.0f} | {r['batched_s']:.1f} ({r['fits'] / r['batched_s']:.1f}) | "
            f"{r['sequential_s']:.1f} | {r['sklearn_s']:.1f} | {r['sequential_s'] / r['batched_s']:.2f}× | "
            f"{r['sklearn_s'] / r['batched_s']:.2f}× | {r['consensus_s']:.1f} |")
    return "\n".join(lines)
