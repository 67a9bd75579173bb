"""``python -m bench --ensemble``: R replicates × a range of k, batched against one after another.

The same problems three ways, from random starts with the same tol and max_iter, for Frobenius MU, Frobenius
HALS and KL MU: ``fastnmf.fit_ensemble`` (batched: for Frobenius one stacked product with X per half-update), the
same fits one after another through ``fastnmf.non_negative_factorization``, and scikit-learn's ``NMF`` one after
another (what cNMF does; its coordinate descent beside HALS); fits per second, total time, the final losses
against scikit-learn's, and the time to a consensus at every k (``fastnmf.consensus`` on the batched ensemble).
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


# (β, solver in fastnmf, scikit-learn's solver[, fastnmf's precision]): HALS is compared with scikit-learn's
# coordinate descent; KL_BF16 is the KL row with the torch backend's bfloat16 mode (python -m bench --ensemble
# --ensemble-bf16).
ROWS = ((2.0, "mu", "mu"), (2.0, "hals", "cd"), (1.0, "mu", "mu"))
KL_BF16 = ((1.0, "mu", "mu", "bf16"),)


def run(shape=(2000, 500), ks=(5, 6, 7, 8, 9), replicates=20, max_iter=200, tol=1e-4, out=None, table=None,
        rows=ROWS, wait_quiet_s=0.0, repeats=2) -> list[dict]:
    """Each row's three timings ``repeats`` times, interleaved, keeping the fastest of each: this 2-core VM
    drifts by up to 1.8× over minutes (the same scikit-learn KL loop took 30 s and 54 s in two runs)."""
    import torch
    from sklearn.decomposition import NMF as SklearnNMF

    import fastnmf

    from .clock import make_memory_meter
    from .environment import describe
    from .machine import wait_until_quiet

    X = _data(shape)
    waited = wait_until_quiet(wait_quiet_s) if wait_quiet_s > 0 else 0.0
    environment = describe(torch.device("cpu"))  # the load average before anything runs
    with warnings.catch_warnings():  # warm-up: thread pools, first allocations (the first timing was 1.7× slow)
        warnings.simplefilter("ignore")
        fastnmf.fit_ensemble(X, [ks[0]], 2, max_iter=20, random_state=0)
        SklearnNMF(ks[0], init="random", random_state=0, max_iter=20).fit(X)
    records = []
    fits = len(ks) * replicates
    pairs = [(k, r) for k in ks for r in range(replicates)]
    for beta, solver, sklearn_solver, *precision in rows:
        precision = precision[0] if precision else "auto"
        options = dict(beta_loss=beta, tol=tol, max_iter=max_iter)
        ours = dict(precision=precision)
        # The batch runs plain HALS (fit_ensemble's docstring): the single fits too, for the same fits.
        single = dict(solver=solver, extrapolate=False) if solver == "hals" else dict(solver=solver)

        def batched():
            return fastnmf.fit_ensemble(X, list(ks), replicates, random_state=0, solver=solver, **ours, **options)

        def one_by_one():
            for k, r in pairs:
                fastnmf.non_negative_factorization(X, n_components=k, init="random", backend="torch",
                                                   random_state=fastnmf.replicate_seed(0, k, r), **single, **ours,
                                                   **options)

        def sklearn():  # err = sqrt(2·D_β): the final objectives
            return {(k, r): 0.5 * SklearnNMF(k, init="random", random_state=fastnmf.replicate_seed(0, k, r),
                                             solver=sklearn_solver, **options).fit(X).reconstruction_err_ ** 2
                    for k, r in pairs}

        times = {"batched": [], "sequential": [], "sklearn": []}
        meter = make_memory_meter(torch.device("cpu"))  # peak RSS of the batched fit above its start
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for repeat in range(repeats):
                if repeat == 0:
                    meter.start()
                    meter.before_chunk()
                ensemble, seconds = _timed(batched)
                if repeat == 0:
                    meter.after_chunk()
                times["batched"].append(seconds)
                times["sequential"].append(_timed(one_by_one)[1])
                sklearn_losses, seconds = _timed(sklearn)
                times["sklearn"].append(seconds)
            start = time.perf_counter()
            for k in ks:
                fastnmf.consensus(ensemble, k)
            consensus = time.perf_counter() - start
        finished = ensemble.finished
        records.append(dict(beta=beta, solver=solver, sklearn_solver=sklearn_solver, precision=precision,
                            shape=list(shape), ks=list(ks),
                            replicates=replicates, fits=fits, batched_s=min(times["batched"]),
                            sequential_s=min(times["sequential"]), sklearn_s=min(times["sklearn"]),
                            all_times_s=times, consensus_s=consensus,
                            mean_n_iter=float(np.mean([ensemble.n_iter(k, r) for k, r in finished])),
                            loss_vs_sklearn=float(np.mean([ensemble.loss(k, r) / sklearn_losses[(k, r)]
                                                           for k, r in finished])),
                            torch_threads=torch.get_num_threads(), waited_for_quiet_s=waited, repeats=repeats,
                            batched_peak_bytes=meter.peak if meter.available else None,
                            stacked_bytes=_stacked_bytes(shape, ks, replicates) if beta == 2.0 else None))
        print(f"[bench] ensemble β={beta:g} {solver} done", flush=True)
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


def _stacked_bytes(shape, ks, replicates) -> int:
    """What the Frobenius batch holds beside X (fastnmf.ensemble_stacked): the stacks (Σk·(m+n)), their
    numerator and denominator buffers (2·Σk·max(m, n)) and the objective's m×n workspace, in float32."""
    m, n = shape
    rows = replicates * sum(ks)
    return 4 * (rows * (m + n) + 2 * rows * max(m, n) + m * n)


def _timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def markdown(records, environment) -> str:
    e = environment
    lines = [
        "# Ensembles: replicates × ranks, batched against one by one",
        "",
        f"{e['cpu']}, {os.cpu_count()} cores, torch threads {e['torch_threads']}, {e['timestamp']}, git "
        f"{str(e['git_sha'])[:10]}{' (uncommitted changes)' if e['git_dirty_files'] else ''}, load average at start "
        f"{e['load_average_at_start']}{_waited(records)}; each time the fastest of {_repeats(records)} interleaved "
        "runs. Random starts, each fit with its own tol test; one by one = "
        "the same fits through `fastnmf.non_negative_factorization` (HALS: `extrapolate=False`, as the batch); "
        "scikit-learn = its `NMF` one by one with the solver shown (what cNMF does with `mu`); loss vs "
        "scikit-learn = mean over the fits of the batched final objective over scikit-learn's; peak = the batched "
        "fit's peak RSS above its start (the kept results included), beside what the Frobenius batch holds by "
        "its formula (stacks, buffers, workspace).",
        "",
        "| β | solver (scikit-learn's) | X | k | replicates | fits | mean n_iter | batched s (fits/s) | "
        "one by one s | "
        "scikit-learn s | batched vs one by one | batched vs scikit-learn | loss vs scikit-learn | "
        "consensus at every k, s | peak MiB (formula) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['beta']:g} | {r.get('solver', 'mu')}{_mode(r)} ({r.get('sklearn_solver', 'mu')}) | "
            f"{r['shape'][0]}×{r['shape'][1]} float32 | {r['ks'][0]}–{r['ks'][-1]} | {r['replicates']} | "
            f"{r['fits']} | {r['mean_n_iter']:.0f} | {r['batched_s']:.1f} ({r['fits'] / r['batched_s']:.1f}) | "
            f"{r['sequential_s']:.1f} | {r['sklearn_s']:.1f} | {r['sequential_s'] / r['batched_s']:.2f}× | "
            f"{r['sklearn_s'] / r['batched_s']:.2f}× | {_ratio(r.get('loss_vs_sklearn'))} | {r['consensus_s']:.1f} | "
            f"{_peak(r)} |")
    return "\n".join(lines)


def _peak(record) -> str:
    peak, formula = record.get("batched_peak_bytes"), record.get("stacked_bytes")
    text = "–" if peak is None else f"{peak / 2 ** 20:.1f}"
    return text + ("" if formula is None else f" ({formula / 2 ** 20:.1f})")


def _mode(record) -> str:
    return "" if record.get("precision", "auto") == "auto" else f", {record['precision']}"


def _ratio(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def _repeats(records) -> int:
    return records[0].get("repeats", 1) if records else 1


def _waited(records) -> str:
    waited = max((r.get("waited_for_quiet_s", 0.0) for r in records), default=0.0)
    return f" (after waiting {waited:.0f} s for a quiet machine)" if waited else ""
