"""``python -m bench.kl_solvers``: candidate KL solvers against multiplicative updates, before one is built.

Issue 14 asks for a KL solver that reaches the target faster than MU. This measures candidates written out
in plain torch (dense X only, no safeguards beyond a reconstruction floor) on the CPU preset's Poisson
problem, from its start, against its fixed reference loss: iterations and seconds to 1.01× and the loss
reached in the time budget. Nothing here is used by fastnmf; it told which solver was worth building
(``dna-vs-current``, now ``solver="newton"``: ``fastnmf.newton``).

- ``mu``: Lee & Seung's KL update, the baseline (fastnmf's MU rule does the same arithmetic, in place).
- ``dna``: the diagonalized Newton algorithm (Van hamme, "The diagonalized Newton algorithm for
  nonnegative matrix factorization", ICLR 2013 workshop): per column of the factor being updated, the
  Newton step with the diagonal of the Hessian, ``h − Wᵀ(1 − X/V) / (W∘W)ᵀ(X/V²)`` floored at a small
  positive value, or the MU step, whichever gives the lower KL of that column (both evaluated: two more
  reconstructions per half-update). Each column's KL never exceeds MU's.
- ``dna-vs-current``: the Newton step kept where it lowers the column's KL below the current one (read
  from the reconstruction the update computes anyway), else the MU step: one reconstruction fewer.

The column objectives drop the terms both candidates share: ``f(h) = (Wᵀ1)·h − Σ_i x_i log (Wh)_i``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

__all__ = ["SOLVERS", "run", "main"]

EPS = 1e-10  # reconstruction floor
NEWTON_FLOOR = 1e-12  # a Newton step never sets an entry to 0: MU could not move it again


def _column_objective(X, W, H, colsum):
    """``(Wᵀ1)·h_j − Σ_i x_ij log (W h_j)_i`` per column j (float64 sums of float32 columns)."""
    return _column_objective_at(X, torch.matmul(W, H).clamp_min_(EPS), H, colsum)


def _column_objective_at(X, V, H, colsum):
    """:func:`_column_objective` from the floored reconstruction ``V = WH`` (left unchanged)."""
    return (colsum * H).sum(0).double() - (X * torch.log(V)).sum(0).double()


def mu_update(X, W, H):
    V = torch.matmul(W, H).clamp_min_(EPS)
    return H * (W.T @ torch.div(X, V)) / W.sum(0)[:, None]


def _newton_terms(X, W, H):
    V = torch.matmul(W, H).clamp_min_(EPS)
    R = torch.div(X, V)
    numerator = W.T @ R
    colsum = W.sum(0)[:, None]
    H_mu = H * numerator / colsum
    R.div_(V)  # X / V²
    curvature = (W * W).T @ R
    H_newton = (H - (colsum - numerator) / curvature.clamp_min(1e-30)).clamp_min_(NEWTON_FLOOR)
    return V, colsum, H_mu, H_newton


def dna_update(X, W, H):
    _, colsum, H_mu, H_newton = _newton_terms(X, W, H)
    better = _column_objective(X, W, H_newton, colsum) < _column_objective(X, W, H_mu, colsum)
    return torch.where(better[None, :], H_newton, H_mu)


def dna_vs_current_update(X, W, H):
    V, colsum, H_mu, H_newton = _newton_terms(X, W, H)
    better = _column_objective(X, W, H_newton, colsum) < _column_objective_at(X, V, H, colsum)
    return torch.where(better[None, :], H_newton, H_mu)


SOLVERS = {"mu": mu_update, "dna": dna_update, "dna-vs-current": dna_vs_current_update}


def _kl(X, W, H) -> float:
    V = torch.matmul(W, H).clamp_min_(EPS)
    return float(torch.sum(torch.xlogy(X, X) - torch.xlogy(X, V) - X + V, dtype=torch.float64))


def _fit(update, X, W, H, seconds, reference, check_every):
    timed, iterations, reached, loss = 0.0, 0, None, _kl(X, W, H)
    while timed < seconds:
        start = time.perf_counter()
        for _ in range(check_every):
            H = update(X, W, H)
            W = update(X.T, H.T, W.T).T
        timed += time.perf_counter() - start
        iterations += check_every
        loss = _kl(X, W, H)  # outside the clock
        if reached is None and reference is not None and loss <= 1.01 * reference:
            reached = (iterations, timed)
    return {"iterations": iterations, "seconds": timed, "ms_per_iteration": timed / iterations * 1e3,
            "final_over_reference": loss / reference if reference else None,
            "iterations_to_1.01": reached[0] if reached else None, "seconds_to_1.01": reached[1] if reached else None}


def run(problem="poisson-kl-4000x2000-k32", seconds=20.0, check_every=5, solvers=tuple(SOLVERS), data=None,
        out=None) -> list[dict]:
    """Each solver from the problem's start for ``seconds`` of timed iterations; ``data`` = (X, W0, H0,
    reference) replaces the bench problem (tests)."""
    from .environment import describe

    if data is None:
        from . import problems, references

        spec = next(p for p in problems.preset("cpu") if p.name == problem)
        built = problems.build(spec, torch.device("cpu"))
        X, W0, H0 = built.X, built.W0, built.H0
        reference = references.reference_for(problem, _kl(X, W0, H0))
    else:
        X, W0, H0, reference = data
    environment = describe(torch.device("cpu"))
    records = []
    for name in solvers:
        with torch.no_grad():  # a local switch: a global one would leak into the caller (the tests' autograd)
            result = _fit(SOLVERS[name], X, W0.clone(), H0.clone(), seconds, reference, check_every)
        records.append({"solver": name, "problem": problem, "reference": reference, **result,
                        "environment": environment})
        print(f"{name}: {result['iterations']} iterations, {result['ms_per_iteration']:.1f} ms each; 1.01× after "
              f"{result['iterations_to_1.01']} iterations, {result['seconds_to_1.01']} s; final "
              f"{result['final_over_reference']}", flush=True)
    if out:
        with open(out, "w") as file:
            for record in records:
                file.write(json.dumps(record, default=str) + "\n")
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kl_solvers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", default="poisson-kl-4000x2000-k32")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per solver")
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument("--out", help="one JSON line per solver")
    args = parser.parse_args(argv)
    run(args.problem, args.seconds, solvers=tuple(args.solvers.split(",")), out=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
