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


# Relative excesses below this are drawn at this level: the provider that set the best loss would
# otherwise dive to 0, i.e. to −∞ on a log axis.
_EXCESS_FLOOR = 1e-6


def _colors(records) -> dict[str, str]:
    """One color per provider, the same in every panel and both figures."""
    names = sorted({r["provider"]["name"] for r in records})
    palette = [f"C{i}" for i in range(10)] + ["black", "olive", "navy"]
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _tidy_log_axes(ax) -> None:
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short log ranges
    ax.grid(True, which="both", linewidth=0.3)


def _loss_vs_time(plt, records, path: str) -> None:
    groups = _by_problem(records)
    if not groups:
        return
    colors = _colors(records)
    columns = min(3, len(groups))
    rows = math.ceil(len(groups) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.0 * rows), squeeze=False)
    for ax, (name, group) in zip(axes.flat, groups.items()):
        problem = group[0]["problem"]
        best = problem["best_loss"]
        for r in group:
            points = [(t, loss) for t, _, loss in r["trace"] if loss is not None and math.isfinite(loss)]
            if not points or not best:
                continue
            t, loss = zip(*points)
            excess = [max(x / best - 1.0, _EXCESS_FLOOR) for x in loss]
            style = "-" if r["provider"]["is_peer"] else "-o"
            ax.loglog(t, excess, style, markersize=3, color=colors[r["provider"]["name"]], label=r["provider"]["name"])
        for target in (1e-2, 1e-3):
            ax.axhline(target, color="grey", linewidth=0.8, linestyle=":")
        ax.set_ylim(bottom=_EXCESS_FLOOR / 2)
        ax.set_title(f"{name}\n{problem['m']}×{problem['n']}, k={problem['k']}, {problem['loss']}", fontsize=9)
        ax.set_xlabel("timed seconds")
        ax.set_ylabel("loss / best − 1  (dotted: targets 1.01×, 1.001×)", fontsize=8)
        ax.legend(fontsize=7)
        _tidy_log_axes(ax)
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
    if not lines:
        return
    # Only data shapes measured at two or more ranks make a line; if none does, show what there is.
    ranks: dict[str, set] = {}
    for (_, shape), points in lines.items():
        ranks.setdefault(shape, set()).update(k for k, _ in points)
    families = sorted(shape for shape, ks in ranks.items() if len(ks) > 1) or sorted(ranks)
    colors = _colors(records)
    fig, axes = plt.subplots(1, len(families), figsize=(5.2 * len(families), 4.0), squeeze=False)
    for ax, shape in zip(axes.flat, families):
        for (provider, s), points in sorted(lines.items()):
            if s != shape:
                continue
            points.sort()
            ks, seconds = zip(*points)
            ax.loglog(ks, [x * 1e3 for x in seconds], "-o", markersize=3, color=colors[provider], label=provider)
        ax.set_title(shape, fontsize=9)
        ax.set_xlabel("k")
        ax.set_ylabel("median ms per iteration")
        ax.legend(fontsize=7)
        _tidy_log_axes(ax)
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
