"""Outputs: one JSON object per line, and the markdown table printed to the terminal."""

from __future__ import annotations

import json
import math

__all__ = ["write_jsonl", "markdown", "COLUMNS"]

COLUMNS = (
    "provider", "ms/iter median [p20–p80]", "ms/call", "iters", "t → 1.01×", "t → 1.001×", "final / best",
    "X GB/s (% of read probe)", "TFLOP/s (% of GEMM probe)", "peak MiB", "speed-up vs best peer: to 1.01× / per iter",
    "flags",
)


def _clean(value):
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_jsonl(records: list[dict], path: str, append: bool = False) -> None:
    with open(path, "a" if append else "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(_clean(record), ensure_ascii=False) + "\n")


def _g(value, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}g}"


def _seconds(value) -> str:
    return "—" if value is None else f"{value:.3g} s"


def _speedup(record: dict) -> str:
    s = record.get("speedup_vs_best_peer")
    if not s:
        return "—"
    to_target = "—" if s["to_1.01"] is None else (">" if s["to_1.01_is_lower_bound"] else "") + f"{s['to_1.01']:.2f}×"
    return f"{to_target} / {s['per_iteration']:.2f}×"


def _row(record: dict) -> list[str]:
    name = record["provider"]["name"]
    if record["provider"]["input_format"] not in ("", "dense"):
        name += f" ({record['provider']['input_format']})"
    if record["status"] == "skipped":
        return [name, "skipped"] + ["—"] * (len(COLUMNS) - 3) + [record["reason"]]
    flags = list(record.get("flags", []))
    if record["status"] == "error":
        flags.append(f"error: {record['reason']}")
    if not record["provider"]["same_start"] and record["status"] != "skipped":
        flags.append("own start: " + record["provider"]["start_note"])
    if "time_per_iter_s" not in record:
        return [name, "—"] + ["—"] * (len(COLUMNS) - 3) + ["; ".join(flags) or record["status"]]
    t = record["time_per_iter_s"]
    ms = f"{t['median'] * 1e3:.3g} [{t['p20'] * 1e3:.3g}–{t['p80'] * 1e3:.3g}]"
    net = t.get("net_of_call_overhead")
    if net is not None and net < 0.9 * t["median"]:
        ms += f", net {net * 1e3:.3g}"
    x, c = record["x_stream"], record["compute"]
    memory = record.get("peak_memory_bytes")
    ratio = record.get("final_over_best")
    return [
        name, ms, _g(None if record.get("call_overhead_s") is None else record["call_overhead_s"] * 1e3),
        str(record["iterations"]),
        _seconds(record["time_to_target_s"]["1.01"]), _seconds(record["time_to_target_s"]["1.001"]),
        "—" if ratio is None else f"{ratio:.4f}",
        f"{_g(x['gbps'])} ({x['fraction_of_read_probe']:.0%})",
        f"{_g(c['tflops'])} ({'—' if c['fraction_of_gemm_probe'] is None else format(c['fraction_of_gemm_probe'], '.0%')})",
        "—" if memory is None else f"{memory / 2**20:.1f}",
        _speedup(record),
        ", ".join(flags),
    ]


def _problem_header(record: dict) -> list[str]:
    p, lim = record["problem"], record["limits"]
    fmt = "sparse data" if p["density"] < 0.5 else "dense data"
    return [
        f"### {p['name']}",
        "",
        f"{p['m']} × {p['n']}, k = {p['k']}, β = {p['beta']:g} ({p['loss']}), {fmt} "
        f"(density {p['density']:.3g}); {p['origin']}. Budget {p['budget_s']:g} s of timed iterations per provider.",
        f"Measured {p.get('started_at') or record['timestamp']}, load average at start {p.get('load_average_at_start')}. "
        f"Initial loss {_g(p['initial_loss'], 5)}, "
        + (f"reference loss {_g(p['best_loss'], 6)} (bench/references.json), best reached in this run "
           f"{_g(p['best_loss_reached'], 6)}. " if p.get("target_basis") == "reference"
           else f"best loss reached {_g(p['best_loss'], 6)} (no reference for this problem: targets relative to it). ")
        + 
        f"Limits measured in this run: read X once ({lim.get('read_x_what', 'dense X')}) {_g(lim['read_x_gbps'])} GB/s; fp32 GEMM "
        f"{_g(lim['gemm_tflops_wtx'])} (WᵀX) / {_g(lim['gemm_tflops_xht'])} (XHᵀ) / "
        f"{_g(lim['gemm_tflops_square'])} (square {lim['gemm_square_size']}³) TFLOP/s through torch"
        + (f"; through numpy {_g(lim.get('gemm_tflops_wtx_numpy'))} (WᵀX) / {_g(lim.get('gemm_tflops_square_numpy'))} (square)"
           if lim.get("gemm_tflops_wtx_numpy") else "") + ".",
        "",
    ]


def markdown(records: list[dict], title: str = "fastnmf benchmark") -> str:
    """All problems' tables, with a header naming the machine and a legend."""
    if not records:
        return f"# {title}\n\nNothing was measured.\n"
    first = records[0]
    v = first["versions"]
    lines = [
        f"# {title}",
        "",
        f"Device: {first['device']}. {first['timestamp']}, git {str(first['git_sha'])[:10]}"
        + (" (+ uncommitted changes)" if first["git_dirty_files"] else "")
        + f", load average at start {first['load_average_at_start']}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        "",
    ]
    by_problem: dict[str, list[dict]] = {}
    for record in records:
        by_problem.setdefault(record["problem"]["name"], []).append(record)
    for group in by_problem.values():
        lines += _problem_header(group[0])
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
        # A "|" inside a cell (e.g. in an error message) would split it.
        lines += ["| " + " | ".join(c.replace("|", "/") for c in _row(record)) + " |" for record in group]
        lines.append("")
    methods = sorted({r["peak_memory_method"] for r in records if r.get("peak_memory_method")})
    lines += [
        "Legend: times per iteration exclude warm-up. Peers run one call per chunk of iterations, so their times include",
        "each call's overhead (ms/call: what one call costs beyond its iterations, measured in the warm-up); fastnmf runs",
        "one call with a per-iteration callback that stops the clock between chunks, so its ms/call is reported but not",
        "inside its times; \"net\" is a peer's median with its per-call overhead taken out of every chunk (shown when it",
        "differs by > 10 %). t → target is the timed time until the shared loss first",
        "reached 1.01× / 1.001× the problem's reference loss (python -m bench.references: the lowest loss of long float64",
        "runs from the same start; where a problem has none, the best loss any provider reached in this run), interpolated",
        "between loss evaluations (— = not within the budget). final / best: over that reference (below 1: the reference",
        "is stale). Speed-up: the best peer's time over this",
        "provider's (> = lower bound: no peer reached the target, so the peers' longest run is used); per iteration: net times.",
        "GB/s counts the X stream only (2 passes per iteration); TFLOP/s counts useful flops (docs/benchmarks.md, Cost model).",
        "Flags: nan = non-finite loss; loss-increased = the shared loss rose between two evaluations;",
        "busy-machine = other processes kept > 0.25 cores busy while this provider was timed.",
        "Peak memory: " + ("; ".join(methods) if methods else "not measured") + ".",
        "",
    ]
    return "\n".join(lines)
