"""``python -m bench --ensemble-kl-layouts``: how a batch of KL problems should share the work on this device.

For β ≠ 2 every problem needs its own reconstruction ``W_i H_i`` (m×n) each half-update, so batching can only
share launches, not passes over X. Three layouts of the same KL multiplicative updates (the arithmetic of
``fastnmf.updates``' KL rule, written out in torch so that only the layout differs), R replicates at each
rank of ``ks``, a fixed number of iterations, from the same starts:

- ``one after another``: each problem's update in turn, one m×n reconstruction buffer reused by all (what
  ``fastnmf.fit_ensemble`` does for β ≠ 2);
- ``bmm per rank``: the R problems of a rank as (R, m, k) and (R, k, n) stacks, one ``bmm`` for the
  reconstructions into an (R, m, n) buffer, one for each numerator;
- ``bmm padded``: every problem of every rank padded to the largest rank with zero components (multiplicative
  updates keep a zero component zero, so the padding is an exact mask), one ``bmm`` over all of them.

Each timing is the fastest of ``repeats`` interleaved runs; the final factors of the three are compared.
"""

from __future__ import annotations

import json

__all__ = ["run"]

EPS = 1e-6  # the reconstruction floor of the three layouts (fastnmf.safeguard's role)


def _problems(shape, ks, replicates, seed=0, device="cpu"):
    import torch

    g = torch.Generator().manual_seed(seed)
    m, n = shape
    X = torch.poisson(torch.rand(m, 7, generator=g) @ torch.rand(7, n, generator=g) * 3).to(device)
    starts = {k: ((torch.rand(replicates, m, k, generator=g) + 0.1).to(device),
                  (torch.rand(replicates, k, n, generator=g) + 0.1).to(device)) for k in ks}
    return X, starts


def one_after_another(X, starts, iters):
    import torch

    buffer = torch.empty_like(X)
    out = {}
    for k, (W0, H0) in starts.items():
        for r in range(W0.shape[0]):
            W, H = W0[r].clone(), H0[r].clone()
            for _ in range(iters):
                torch.matmul(W, H, out=buffer).clamp_(min=EPS)
                torch.div(X, buffer, out=buffer)
                H.mul_((W.T @ buffer).div_(W.sum(0)[:, None]))
                torch.matmul(W, H, out=buffer).clamp_(min=EPS)
                torch.div(X, buffer, out=buffer)
                W.mul_((buffer @ H.T).div_(H.sum(1)[None, :]))
            out[k, r] = W
    return out


def _bmm_updates(X, W, H, iters, buffer):
    import torch

    for _ in range(iters):
        torch.bmm(W, H, out=buffer).clamp_(min=EPS)
        torch.div(X, buffer, out=buffer)
        H.mul_(torch.bmm(W.transpose(1, 2), buffer).div_(W.sum(1)[:, :, None].clamp(min=EPS)))
        torch.bmm(W, H, out=buffer).clamp_(min=EPS)
        torch.div(X, buffer, out=buffer)
        W.mul_(torch.bmm(buffer, H.transpose(1, 2)).div_(H.sum(2)[:, None, :].clamp(min=EPS)))


def bmm_per_rank(X, starts, iters):
    import torch

    out = {}
    buffer = None
    for k, (W0, H0) in starts.items():
        W, H = W0.clone(), H0.clone()
        if buffer is None or buffer.shape[0] != W.shape[0]:
            buffer = X.new_empty(W.shape[0], *X.shape)
        _bmm_updates(X, W, H, iters, buffer)
        out.update({(k, r): W[r] for r in range(W.shape[0])})
    return out


def bmm_padded(X, starts, iters):
    import torch

    top = max(starts)
    blocks_W, blocks_H, index = [], [], []
    for k, (W0, H0) in starts.items():
        blocks_W.append(torch.nn.functional.pad(W0, (0, top - k)))  # zero components: kept zero by MU
        blocks_H.append(torch.nn.functional.pad(H0, (0, 0, 0, top - k)))
        index += [(k, r) for r in range(W0.shape[0])]
    W, H = torch.cat(blocks_W), torch.cat(blocks_H)
    _bmm_updates(X, W, H, iters, X.new_empty(W.shape[0], *X.shape))
    return {(k, r): W[i, :, :k] for i, (k, r) in enumerate(index)}


LAYOUTS = {"one after another": one_after_another, "bmm per rank": bmm_per_rank, "bmm padded": bmm_padded}


def run(shape=(2000, 500), ks=(5, 6, 7, 8, 9), replicates=20, iters=20, repeats=3, wait_quiet_s=0.0, out=None,
        table=None, device="cpu", echo=True) -> list[dict]:
    import torch

    from .clock import make_timer
    from .environment import describe
    from .machine import wait_until_quiet

    device = torch.device(device)
    timer = make_timer(device)  # CUDA events on a GPU, perf_counter on the CPU
    X, starts = _problems(shape, ks, replicates, device=device)
    waited = wait_until_quiet(wait_quiet_s) if wait_quiet_s > 0 and device.type == "cpu" else 0.0
    environment = describe(device)
    for layout in LAYOUTS.values():  # warm-up: thread pools, first allocations
        layout(X, starts, 1)
    times, results = {name: [] for name in LAYOUTS}, {}
    for _ in range(repeats):
        for name, layout in LAYOUTS.items():
            timer.start()
            results[name] = layout(X, starts, iters)
            times[name].append(timer.stop())
    reference = results["one after another"]
    agreement = {name: max(float((got[key] - reference[key]).abs().max() / reference[key].abs().max())
                           for key in reference) for name, got in results.items()}
    problems = len(ks) * replicates
    records = []
    for name in LAYOUTS:
        best = min(times[name])
        records.append({"layout": name, "shape": list(shape), "ks": list(ks), "replicates": replicates,
                        "iterations": iters, "seconds": best, "ms_per_problem_iteration": best / (problems * iters) * 1e3,
                        "all_seconds": times[name], "max_relative_difference": agreement[name],
                        "waited_for_quiet_s": waited, "environment": environment})
    base = records[0]["seconds"]
    for record in records:
        record["speed_vs_one_after_another"] = base / record["seconds"]
        record["device"] = str(device)
    if out:
        with open(out, "w") as file:
            for record in records:
                file.write(json.dumps(record, default=str) + "\n")
    text = _markdown(records, environment)
    if table:
        with open(table, "w") as file:
            file.write(text)
    if echo:
        print(text)
    return records


def _markdown(records, environment) -> str:
    first = records[0]
    lines = ["# KL batches: which layout", "",
             f"{environment.get('device', 'CPU')}, {first['shape'][0]}×{first['shape'][1]} Poisson counts, "
             f"k ∈ {first['ks']}, {first['replicates']} replicates per rank, {first['iterations']} KL MU iterations; "
             f"the fastest of {len(first['all_seconds'])} interleaved runs (waited {first['waited_for_quiet_s']:.0f} s for a quiet machine).",
             "", "| layout | seconds | ms per problem-iteration | vs one after another | max relative difference of W |",
             "|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['layout']} | {r['seconds']:.3f} | {r['ms_per_problem_iteration']:.3f} | "
                     f"{r['speed_vs_one_after_another']:.2f}× | {r['max_relative_difference']:.1e} |")
    return "\n".join(lines) + "\n"
