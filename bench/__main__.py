"""``python -m bench``: time NMF providers on named problems; JSON lines, a markdown table, PNGs.

Examples::

    python -m bench                                  # the preset for this machine (gpu with CUDA, else cpu)
    python -m bench --preset cpu --out results.jsonl --table table.md --plot plots/
    python -m bench --shape 8000 4000 64 --beta 1 --budget 20
    python -m bench --providers fastnmf-torch,sklearn/cd --problems 'digits-*'
    python -m bench --list                           # what would run here, and what is skipped and why
    python -m bench --from a.jsonl --from b.jsonl --table t.md --plot plots/   # report saved results
    python -m bench --distributed 4 --table distributed.md   # fastnmf.distributed on 1, 2, 4 gloo ranks
    python -m bench --streaming --table streaming.md         # a 4 GiB memmap streamed; MiniBatchNMF vs sklearn
    python -m bench --ensemble --table ensemble.md           # replicates × ranks batched vs one by one
    python -m bench --ensemble-kl-layouts --table kl.md      # KL batches: one after another vs bmm stacks
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys

import torch

__all__ = ["main"]

# Device-wide probes per preset: a 1 GiB read and a 2048³ GEMM take about a second on a 2-core CPU.
_DEVICE_PROBES = {"tiny": (16 << 20, 128), "cpu": (1 << 30, 2048), "gpu": (4 << 30, 8192)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark NMF providers (fastnmf and its peers) on named problems: time per iteration, "
        "time to a target loss, achieved GB/s and TFLOP/s against limits measured in the same run, peak memory.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    parser.add_argument("--preset", choices=("tiny", "cpu", "gpu"),
                        help="named problem set (default: gpu where CUDA is available, else cpu)")
    parser.add_argument("--shape", nargs=3, type=int, metavar=("M", "N", "K"),
                        help="one synthetic problem instead of a preset: M×N data, rank K")
    parser.add_argument("--beta", type=float, default=2.0,
                        help="β of --shape: 2 Frobenius (Gaussian low-rank + noise), else Poisson counts (default 2)")
    parser.add_argument("--providers", help="comma-separated names or globs: fastnmf-torch, sklearn/cd, '*/mu' (default: all)")
    parser.add_argument("--problems", help="comma-separated problem names or globs within the preset (default: all)")
    parser.add_argument("--budget", type=float, help="timed seconds per provider and problem (default: the problem's own)")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every budget (default 1)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda where available)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each run, wait up to SECONDS for other processes to leave the CPU idle "
                        "(shared machines; default 0: do not wait)")
    parser.add_argument("--out", help="write one JSON object per (provider, problem) to this file (JSON lines)")
    parser.add_argument("--table", help="also write the markdown table to this file")
    parser.add_argument("--plot", nargs="?", const="", metavar="DIR",
                        help="write loss_vs_time.png and time_per_iter_vs_k.png into DIR "
                        "(default: the folder of --out, else the current folder)")
    parser.add_argument("--list", action="store_true", help="list the problems and providers, then exit")
    parser.add_argument("--from", dest="sources", action="append", metavar="JSONL",
                        help="run nothing: print (and --table/--plot) the records of earlier runs (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--ensemble", action="store_true",
                        help="instead of the providers: 20 replicates × k 5–9 batched (fit_ensemble) against the same "
                        "fits one by one and scikit-learn's one by one (bench/ensemble.py)")
    parser.add_argument("--ensemble-bf16", action="store_true",
                        help="with --ensemble: the KL row only, fastnmf with precision='bf16'")
    parser.add_argument("--ensemble-kl-layouts", action="store_true",
                        help="instead of the providers: KL MU for replicates × k 5–9 one after another against bmm "
                        "stacks per rank and padded to one rank (bench/ensemble_kl_layouts.py)")
    parser.add_argument("--streaming", action="store_true",
                        help="instead of the providers: an out-of-core fit of a memmap written to disk beside the "
                        "in-memory fit, and MiniBatchNMF against scikit-learn's (bench/streaming.py)")
    parser.add_argument("--streaming-gb", type=float, default=4.0, help="size of --streaming's memmap (default 4)")
    parser.add_argument("--memory-budget", default="500MB", help="--streaming's memory_budget (default 500MB)")
    parser.add_argument("--distributed", type=int, metavar="N",
                        help="instead of the providers: fastnmf.distributed on 1, 2, 4, … N gloo ranks of this machine "
                        "(grids N×1 and square; --shape M N K sets the problem, default 4000 2000 32): time per "
                        "iteration, payload per collective, the single-process time (bench/distributed.py)")
    return parser


def _patterns(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def _specs(args, device: torch.device, preset_name: str):
    from .problems import custom_problem, preset

    if args.shape:
        m, n, k = args.shape
        return [custom_problem(m, n, k, args.beta, args.budget or 10.0)]
    specs = preset(preset_name)
    chosen = _patterns(args.problems)
    if chosen:
        specs = [s for s in specs if any(fnmatch.fnmatch(s.name, p) for p in chosen)]
    return specs


def _list(specs, device, patterns) -> None:
    from .providers import plan

    for spec in specs:
        runnable, skipped = plan(spec, device, patterns)
        size = f"{spec.shape[0]}×{spec.shape[1]}" if spec.shape else spec.source
        print(f"{spec.name}: {size}, k={spec.k}, {spec.loss_name}, budget {spec.budget_s:g} s")
        for provider in runnable:
            print(f"    run   {provider.name}")
        for skip in skipped:
            print(f"    skip  {skip.name}: {skip.reason}")


def _output(records: list[dict], args, title: str) -> None:
    from .plots import write_plots
    from .report import markdown

    table = markdown(records, title)
    print(table)
    if args.table:
        with open(args.table, "w", encoding="utf-8") as out:
            out.write(table)
    if args.plot is not None and records:
        folder = args.plot or (os.path.dirname(os.path.abspath(args.out)) if args.out else os.getcwd())
        for path in write_plots(records, folder):
            print(f"[bench] wrote {path}", file=sys.stderr)


def _report_saved(args) -> int:
    import json

    records = []
    for path in args.sources:
        with open(path, encoding="utf-8") as lines:
            records += [json.loads(line) for line in lines if line.strip()]
    _output(records, args, "fastnmf benchmark")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.sources:
        return _report_saved(args)
    if args.ensemble:
        from . import ensemble

        ensemble.run(out=args.out, table=args.table, wait_quiet_s=args.wait_quiet,
                     rows=ensemble.KL_BF16 if args.ensemble_bf16 else ensemble.ROWS)
        return 0
    if args.ensemble_kl_layouts:
        from . import ensemble_kl_layouts

        ensemble_kl_layouts.run(out=args.out, table=args.table, wait_quiet_s=args.wait_quiet, device=args.device or "cpu")
        return 0
    if args.streaming:
        from . import streaming

        streaming.run(args.streaming_gb, args.memory_budget, out=args.out, table=args.table)
        return 0
    if args.distributed:
        from . import distributed

        m, n, k = args.shape or (4000, 2000, 32)
        distributed.run(args.distributed, shape=(m, n), k=k, out=args.out, table=args.table, wait_quiet_s=args.wait_quiet)
        return 0
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset_name = args.preset or ("gpu" if device.type == "cuda" else "cpu")
    specs = _specs(args, device, preset_name)
    patterns = _patterns(args.providers)
    if args.list:
        _list(specs, device, patterns)
        return 0
    if not specs:
        print("No problem matches --problems.", file=sys.stderr)
        return 2

    from .environment import describe
    from .metrics import summarize
    from .probes import device_limits
    from .report import write_jsonl
    from .runner import Interrupted, Settings, planned_runs, run_problem

    environment = describe(device)
    load = environment["load_average_at_start"]
    if load and load[0] > 0.5 * (os.cpu_count() or 1):
        print(f"[bench] warning: load average {load[0]} on {os.cpu_count()} cores — other work will skew the times",
              file=sys.stderr)
    settings = Settings(budget_scale=args.budget_scale, budget_override=args.budget, wait_quiet_s=args.wait_quiet)
    records: list[dict] = []
    interrupted = False
    if args.out:
        open(args.out, "w").close()  # records are appended problem by problem: a crash keeps the finished ones

    def keep(result) -> None:
        new = summarize(result, environment)
        records.extend(new)
        if args.out:
            write_jsonl(new, args.out, append=True)

    from tqdm.auto import tqdm

    progress = tqdm(total=planned_runs(specs, device, patterns), unit="run", disable=args.no_progress,
                    file=sys.stderr, dynamic_ncols=True)
    try:
        large, square = _DEVICE_PROBES[preset_name]
        progress.set_description("probing this machine's limits")
        environment["device_limits"] = device_limits(device, large, square)
        for spec in specs:
            keep(run_problem(spec, device, patterns, settings, progress))
    except Interrupted as stop:
        interrupted = True
        if stop.partial is not None:
            keep(stop.partial)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()

    _output(records, args, "fastnmf benchmark" + (" (interrupted: partial results)" if interrupted else ""))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
