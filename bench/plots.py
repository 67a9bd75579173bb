"""PNGs: loss vs seconds per provider (log-log, one panel per problem), and time per iteration vs k."""

from __future__ import annotations

import math
import os

__all__ = ["write_plots"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (CI, SSH)
    import matplotlib.pyplot as plt

    return plt


def _by_problem(records):
    groups: dict[str, list[dict]] = {}
    for r in records:
        if r.get("trace"):
            groups.setdefault(r["problem"]["name"], []).append(r)
    return groups


def _loss_vs_time(plt, records, path: str) -> None:
    groups = _by_problem(records)
    if not groups:
        return
    columns = min(3, len(groups))
    rows = math.ceil(len(groups) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.0 * rows), squeeze=False)
    for ax, (name, group) in zip(axes.flat, groups.items()):
        problem = group[0]["problem"]
        best = problem["best_loss"]
        for r in group:
            points = [(t, loss) for t, _, loss in r["trace"] if loss is not None and math.isfinite(loss)]
            if not points:
                continue
            t, loss = zip(*points)
            # Excess over the best loss makes the convergence visible on a log axis; +1e-12·best keeps the
            # provider that set the best on the plot.
            excess = [max(x - best, 0.0) + 1e-12 * best for x in loss]
            style = "-" if r["provider"]["is_peer"] else "-o"
            ax.loglog(t, excess, style, markersize=3, label=r["provider"]["name"])
        for factor in (0.01, 0.001):
            ax.axhline(factor * best, color="grey", linewidth=0.6, linestyle=":")
        ax.set_title(f"{name}\n{problem['m']}×{problem['n']}, k={problem['k']}, {problem['loss']}", fontsize=9)
        ax.set_xlabel("timed seconds")
        ax.set_ylabel("loss − best loss (dotted: 1 %, 0.1 %)")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", linewidth=0.3)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _time_vs_k(plt, records, path: str) -> None:
    # One line per (provider, data shape, loss): the problems that differ only in k.
    lines: dict[tuple, list[tuple[int, float]]] = {}
    for r in records:
        if not r.get("time_per_iter_s"):
            continue
        p = r["problem"]
        key = (r["provider"]["name"], f"{p['m']}×{p['n']} {p['loss']}")
        lines.setdefault(key, []).append((p["k"], r["time_per_iter_s"]["median"]))
    families = sorted({shape for _, shape in lines})
    if not lines:
        return
    fig, axes = plt.subplots(1, len(families), figsize=(5.2 * len(families), 4.0), squeeze=False)
    for ax, shape in zip(axes.flat, families):
        for (provider, s), points in sorted(lines.items()):
            if s != shape:
                continue
            points.sort()
            ks, seconds = zip(*points)
            ax.loglog(ks, [x * 1e3 for x in seconds], "-o", markersize=3, label=provider)
        ax.set_title(shape, fontsize=9)
        ax.set_xlabel("k")
        ax.set_ylabel("median ms per iteration")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", linewidth=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(records: list[dict], folder: str) -> list[str]:
    """Write ``loss_vs_time.png`` and ``time_per_iter_vs_k.png`` into ``folder``; return their paths."""
    plt = _pyplot()
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, "loss_vs_time.png"), os.path.join(folder, "time_per_iter_vs_k.png")]
    _loss_vs_time(plt, records, paths[0])
    _time_vs_k(plt, records, paths[1])
    return [p for p in paths if os.path.exists(p)]
