"""From timed chunks to the reported numbers.

- time per iteration: each chunk gives a sample (chunk seconds / chunk iterations) weighted by its
  iteration count — i.e. the distribution over iterations, each iteration taking its chunk's mean;
  median, p20, p80 of that (the warm-up iterations were never timed); and the median net of the
  per-call overhead (below), which the per-iteration speed-up uses;
- time to a target loss: the targets are 1.01× and 1.001× the problem's fixed reference loss
  (``bench.references``: the lowest loss of long float64 runs from the same start), or, for a problem
  without a reference, the lowest loss any provider reached in this run; the time is interpolated linearly in log(loss) between the two evaluations that bracket the
  first crossing (the loss is only known at chunk ends);
- GB/s: bytes of the X stream per iteration (``costs.x_stream_bytes``) over the median time, and its
  fraction of the read-X-once probe; TFLOP/s: useful flops per iteration (``costs.flops_per_iteration``)
  over the median time, and its fraction of the best GEMM rate measured in the same run;
- per-call overhead: measured in the warm-up (a 1-iteration call minus the marginal cost of an
  iteration from a 3-iteration call): what one call into the provider costs beyond its iterations
  (validation, its own loss checks). It is inside every timed chunk — what a caller pays per call;
- flags: ``nan`` (a non-finite loss), ``loss-increased`` (a rise of more than 1e-6 relative between
  two evaluations — MU, HALS and CD all guarantee a non-increasing loss in exact arithmetic),
  ``busy-machine`` (other processes kept more than ``BUSY_CORES`` cores busy during the timed chunks:
  the times are not this provider's alone).
"""

from __future__ import annotations

import math

import numpy as np

from .costs import flops_per_iteration
from .references import reference_for
from .runner import CALLBACK_TIMING

__all__ = ["TARGETS", "summarize"]

TARGETS = (1.01, 1.001)
INCREASE_TOLERANCE = 1e-6
BUSY_CORES = 0.25


def _weighted_quantiles(values, weights, quantiles) -> list[float]:
    order = np.argsort(values)
    values = np.asarray(values, dtype=float)[order]
    cumulative = np.cumsum(np.asarray(weights, dtype=float)[order])
    total = cumulative[-1]
    return [float(values[min(np.searchsorted(cumulative, q * total, side="left"), len(values) - 1)])
            for q in quantiles]


def _time_to(target: float, times: list[float], losses: list[float], initial: float) -> float | None:
    previous_t, previous_loss = 0.0, initial
    for t, loss in zip(times, losses):
        if not math.isfinite(loss):
            return None
        if loss <= target:
            if previous_loss <= target or previous_loss <= 0 or loss <= 0:
                return t
            # log-linear between the bracketing evaluations
            fraction = (math.log(previous_loss) - math.log(target)) / (math.log(previous_loss) - math.log(loss))
            return previous_t + fraction * (t - previous_t)
        previous_t, previous_loss = t, loss
    return None


def _flags(losses: list[float], initial: float) -> tuple[list[str], float]:
    flags, worst_rise = [], 0.0
    previous = initial
    for loss in losses:
        if not math.isfinite(loss):
            flags.append("nan")
            break
        if previous > 0:
            worst_rise = max(worst_rise, (loss - previous) / previous)
        previous = loss
    if worst_rise > INCREASE_TOLERANCE:
        flags.append("loss-increased")
    return flags, worst_rise


def _run_metrics(run, problem, best: float, flops: int, limits: dict) -> dict:
    out = {"iterations": int(sum(run.chunk_iters)), "timed_s": float(sum(run.chunk_seconds)),
           "chunks": len(run.chunk_iters)}
    samples = [s / n for s, n in zip(run.chunk_seconds, run.chunk_iters)]
    p20, p50, p80 = _weighted_quantiles(samples, run.chunk_iters, (0.2, 0.5, 0.8))
    # Net of the per-call overhead (peers pay it once per chunk; fastnmf's chunks never contain it): what
    # an iteration costs inside one long call. A slow peer on a short budget runs 1-iteration chunks,
    # where its per-call cost can be as large as the iteration itself.
    overhead = 0.0 if run.timing == CALLBACK_TIMING else (run.call_overhead_s or 0.0)
    net = [max(s - overhead, 0.05 * s) / n for s, n in zip(run.chunk_seconds, run.chunk_iters)]
    net_median = _weighted_quantiles(net, run.chunk_iters, (0.5,))[0]
    out["time_per_iter_s"] = {"median": p50, "p20": p20, "p80": p80, "net_of_call_overhead": net_median}
    times = list(np.cumsum(run.chunk_seconds))
    out["time_to_target_s"] = {f"{t:g}": _time_to(t * best, times, run.losses, problem.initial_loss)
                               for t in TARGETS}
    finite = [x for x in run.losses if math.isfinite(x)]
    out["final_loss"] = run.losses[-1]
    out["best_own_loss"] = min(finite) if finite else None
    out["final_over_best"] = run.losses[-1] / best if best > 0 and math.isfinite(run.losses[-1]) else None
    gbps = run.x_bytes_per_iter / p50 / 1e9
    tflops = flops / p50 / 1e12
    gemm_limit = max((v for key, v in limits.items() if key.startswith("gemm_tflops") and v), default=None)
    out["x_stream"] = {"bytes_per_iter": run.x_bytes_per_iter, "gbps": gbps,
                       "fraction_of_read_probe": gbps / limits["read_x_gbps"]}
    out["compute"] = {"flops_per_iter": flops, "tflops": tflops, "fraction_of_gemm_probe": tflops / gemm_limit if gemm_limit else None}
    out["call_overhead_s"] = run.call_overhead_s
    flags, rise = _flags(run.losses, problem.initial_loss)
    if run.foreign_cores is not None and run.foreign_cores > BUSY_CORES:
        flags.append("busy-machine")
    out["flags"] = flags + (["interrupted"] if run.status == "interrupted" else [])
    out["max_relative_loss_increase"] = rise
    out["trace"] = [[float(t), int(i), float(x)] for t, i, x in
                    zip(times, np.cumsum(run.chunk_iters), run.losses)]
    return out


def _net(record: dict) -> float:
    times = record["time_per_iter_s"]
    return times.get("net_of_call_overhead") or times["median"]  # records written before the field existed


def _speedups(records: list[dict]) -> None:
    """Speed-up against the best peer: its time to 1.01× the best loss over this provider's, and its
    median time per iteration over this one's, both net of per-call overhead. When no peer reached the target, the peers' longest timed
    run is used instead and the speed-up is a lower bound."""
    measured = [r for r in records if r.get("time_per_iter_s")]
    peers = [r for r in measured if r["provider"]["is_peer"]]
    if not peers:
        return
    peer_times = [r["time_to_target_s"]["1.01"] for r in peers if r["time_to_target_s"]["1.01"] is not None]
    best_peer_time = min(peer_times) if peer_times else max(r["timed_s"] for r in peers)
    best_peer_iter = min(_net(r) for r in peers)
    for r in measured:
        mine = r["time_to_target_s"]["1.01"]
        r["speedup_vs_best_peer"] = {
            "to_1.01": best_peer_time / mine if mine else None,
            "to_1.01_is_lower_bound": bool(mine) and not peer_times,
            "per_iteration": best_peer_iter / _net(r),
        }


def summarize(result, environment: dict) -> list[dict]:
    """One JSON-ready record per (provider, problem) of ``result`` (a runner.ProblemResult)."""
    spec = result.spec
    measured = [r for r in result.runs if r.status in ("ok", "interrupted", "error") and r.losses]
    finite = [x for r in measured for x in r.losses if math.isfinite(x)]
    best_reached = min(finite) if finite else math.nan
    reference = reference_for(spec.name, result.initial_loss)
    best = best_reached if reference is None else reference
    sparse_nnz = result.nnz if any(r.input_format in ("csr", "torch-coo") for r in measured) else None
    dense_flops, flops_source = flops_per_iteration(result.m, result.n, spec.k, spec.beta)
    problem = {
        "name": spec.name, "source": spec.source, "origin": result.origin, "m": result.m, "n": result.n,
        "k": spec.k, "beta": spec.beta, "loss": spec.loss_name, "dtype": "float32", "nnz": result.nnz,
        "density": result.nnz / (result.m * result.n), "seed": spec.seed, "budget_s": result.budget_s,
        "max_iter": spec.max_iter, "initial_loss": result.initial_loss, "best_loss": best,
        "best_loss_reached": best_reached, "target_basis": "best of this run" if reference is None else "reference",
        "targets": {f"{t:g}": t * best for t in TARGETS}, "flops_formula": flops_source,
        "load_average_at_start": result.load_average,
        "started_at": result.started_at,
    }
    records = []
    for run in result.runs:
        record = {
            **environment,
            "problem": problem,
            "limits": {**environment.get("device_limits", {}), **result.limits},
            "provider": {"name": run.provider, "family": run.family, "solver": run.solver,
                         "is_peer": run.is_peer, "device": run.device, "input_format": run.input_format,
                         "same_start": run.status != "skipped" and not run.start_note,
                         "start_note": run.start_note, "timer": run.timer, "timing": run.timing},
            "status": run.status,
            "reason": run.reason,
            "peak_memory_bytes": run.peak_memory_bytes,
            "peak_memory_method": run.memory_method,
            "warmup_iters": run.warmup_iters,
            "setup_s": run.setup_s,
            "foreign_cpu_cores": run.foreign_cores,
            "waited_for_quiet_s": run.waited_s,
        }
        record.pop("device_limits", None)
        if run.losses:
            sparse = run.input_format in ("csr", "torch-coo")
            flops = flops_per_iteration(result.m, result.n, spec.k, spec.beta, nnz=sparse_nnz)[0] if sparse \
                else dense_flops
            record.update(_run_metrics(run, result, best, flops, record["limits"]))
        records.append(record)
    _speedups(records)
    return records
