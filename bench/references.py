"""Fixed reference losses: the targets of "time to 1.01× / 1.001×" that do not move from run to run.

``python -m bench.references [--problems GLOB] [--seconds S]`` runs, for each problem of the CPU preset,
long float64 fits from the start every provider gets (``problems.build``) — fastnmf's solvers and options
that minimize the problem's β (:data:`METHODS`) — and writes the lowest shared loss (``bench.loss``)
any of them reached to ``bench/references.json``, with what reached it, how many iterations and the
command. :func:`reference_for` gives the report that loss, or None when the file has no entry for the
problem or its entry was made from another start (the initial loss differs): the report then falls back
to the best loss of the run and says so. The problems start from one fixed seed, so one start is what
the reference is for; a run that goes below a reference shows ``final / reference < 1`` (time to rerun
this).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
import time

import torch

__all__ = ["METHODS", "REFERENCE_FILE", "reference_for", "compute", "main"]

REFERENCE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "references.json")
# The start's loss must match the reference's to this relative difference (the same start, recomputed).
_SAME_START = 1e-6
# (label, β it applies to: 2, 1 or "other" (every β but 2), fastnmf options)
METHODS = (
    ("hals-extrapolated", 2, dict(solver="hals", extrapolate=True)),
    ("hals-plain", 2, dict(solver="hals", extrapolate=False)),
    ("mu", "other", dict(solver="mu")),
    ("newton", 1, dict(solver="newton")),
)


def _load(path: str = REFERENCE_FILE) -> dict:
    try:
        with open(path) as file:
            return json.load(file)
    except FileNotFoundError:
        return {}


def reference_for(name: str, initial_loss: float, path: str = REFERENCE_FILE) -> float | None:
    """The fixed reference loss of problem ``name``, or None (no entry, or one made from another start)."""
    entry = _load(path).get(name)
    if not entry or not math.isfinite(initial_loss) or not _same_start(entry, initial_loss):
        return None
    return float(entry["loss"])


def _same_start(entry: dict, initial_loss: float) -> bool:
    """Whether ``entry`` was made from the start whose loss is ``initial_loss`` (recomputed: to rounding)."""
    return abs(entry["initial_loss"] - initial_loss) <= _SAME_START * abs(initial_loss)


def _methods(beta: float, only=None):
    """The methods for β (``only``: those of these labels)."""
    def applies_to(applies) -> bool:
        return float(beta) != 2.0 if applies == "other" else float(beta) == float(applies)

    return [(label, options) for label, applies, options in METHODS
            if applies_to(applies) and (only is None or label in only)]


def _run(data, options: dict, seconds: float, shared_loss, check_every: int = 50) -> dict:
    """One float64 fit from the problem's start for at most ``seconds``, or until 20 checks in a row
    improve the loss by less than 1e-10 relative; the lowest shared loss seen."""
    import fastnmf

    X = data.X_sparse.astype("float64") if data.X_sparse is not None else data.X.to(torch.float64)
    state = {"best": math.inf, "stalled": 0, "iterations": 0}
    started = time.perf_counter()

    def on_iteration(n_iter, W, H):
        if n_iter == 0 or n_iter % check_every:
            return False
        loss = shared_loss(torch.as_tensor(W), torch.as_tensor(H))
        state["stalled"] = state["stalled"] + 1 if loss > state["best"] * (1 - 1e-10) else 0
        state["best"], state["iterations"] = min(state["best"], loss), n_iter
        return state["stalled"] >= 20 or time.perf_counter() - started > seconds

    fastnmf.non_negative_factorization(
        X, W=data.W0.to(torch.float64).clone(), H=data.H0.to(torch.float64).clone(), n_components=data.k,
        init="custom", beta_loss=data.beta, tol=0.0, max_iter=10 ** 8, check_every=10 ** 8, callback=on_iteration,
        **options)
    return {"loss": state["best"], "iterations": state["iterations"],
            "seconds": round(time.perf_counter() - started, 1), "converged": state["stalled"] >= 20}


def compute(specs, seconds: float, progress=print, only=None, earlier: dict | None = None) -> dict:
    """References of ``specs`` (problem specs): {name: entry}. ``only``: run these method labels, and keep the
    other runs of the problem's entry in ``earlier`` (a table read from the file) when it has the same start."""
    from . import problems
    from .loss import SharedLoss

    entries = {}
    for spec in specs:
        data = problems.build(spec, "cpu")
        shared_loss = SharedLoss(data)
        initial_loss = shared_loss(data.W0, data.H0)
        runs = {}
        previous = (earlier or {}).get(spec.name)
        if only is not None and previous and _same_start(previous, initial_loss):
            runs = dict(previous["runs"])
        for label, options in _methods(spec.beta, only):
            runs[label] = _run(data, options, seconds, shared_loss)
            progress(f"{spec.name}: {label} {runs[label]}")
        best = min(runs, key=lambda label: runs[label]["loss"])
        entries[spec.name] = {"loss": runs[best]["loss"], "method": best, "initial_loss": initial_loss,
                              "dtype": "float64", "runs": runs}
    return entries


def main(argv=None) -> int:
    from . import problems
    from .environment import describe

    parser = argparse.ArgumentParser(prog="python -m bench.references", description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default="*", help="comma-separated names or globs of the CPU preset")
    parser.add_argument("--seconds", type=float, default=300.0, help="limit per method and problem (default 300)")
    parser.add_argument("--out", default=REFERENCE_FILE, help="the JSON file to update (default bench/references.json)")
    parser.add_argument("--methods", help="comma-separated labels of METHODS to run, keeping the file's other runs "
                                          "of each problem (default: all, replacing them)")
    args = parser.parse_args(argv)
    patterns = args.problems.split(",")
    specs = [s for s in problems.preset("cpu") if any(fnmatch.fnmatch(s.name, p) for p in patterns)]
    if not specs:
        parser.error(f"no CPU problem matches {args.problems!r}")
    only = None if args.methods is None else set(args.methods.split(","))
    entries = compute(specs, args.seconds, only=only, earlier=_load(args.out))
    environment = describe(torch.device("cpu"))
    command = "python -m bench.references " + " ".join(sys.argv[1:] if argv is None else argv)
    for entry in entries.values():
        entry.update(command=command.strip(), git_sha=environment["git_sha"], timestamp=environment["timestamp"],
                     cpu=environment["cpu"])
        for label, run in entry["runs"].items():
            if only is None or label in only:  # kept runs keep the command that made them
                run.update(command=command.strip(), git_sha=environment["git_sha"])
    table = _load(args.out)
    table.update(entries)
    with open(args.out, "w") as file:
        json.dump(dict(sorted(table.items())), file, indent=1)
        file.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
