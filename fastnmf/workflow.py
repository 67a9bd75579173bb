"""``fastnmf ensemble DATA --k 5-13 --replicates 50 --out DIR/``: replicates × ranks, consensus, choice of k.

Every fit (k, r) is written to ``DIR/fits/k{k}_r{r}.npz`` (W, H, n_iter, loss history; atomically) as soon as
it finishes, so a run killed at any moment (even ``kill -9``) re-run with the same arguments fits only what is
missing — each fit is its single fit whatever batch it ran in — and ends with the same outputs:
``DIR/k{k}.spectra.tsv`` (programs × features, cNMF's layout: one row per program, a header of feature names),
``DIR/k{k}.usages.tsv`` (samples × programs, a first column of sample names), ``DIR/k_selection.tsv`` and
``DIR/k_selection.png``. The arguments of the run are kept in ``DIR/run.json``; a re-run with other ones is
refused (it would mix fits of two problems).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from .checkpoint import write_atomically
from .io import read_matrix
from .solvers import SolverResult

__all__ = ["parse_ranks", "run_ensemble", "write_fit"]


def parse_ranks(text: str) -> list[int]:
    """``"5-13"``, ``"5,7,9"`` or ``"5-9,12"`` → sorted ranks."""
    ranks = set()
    try:
        for part in text.split(","):
            if "-" in part:
                low, high = (int(value) for value in part.split("-"))
                ranks.update(range(low, high + 1))
            elif part.strip():
                ranks.add(int(part))
    except ValueError:
        raise ValueError(f"--k {text!r}: expected ranks such as 5-13 or 5,7,9") from None
    if not ranks or min(ranks) < 1:
        raise ValueError(f"--k {text!r}: expected ranks ≥ 1")
    return sorted(ranks)


def write_fit(path: Path, result: SolverResult) -> None:
    """One finished fit, atomically (a killed run leaves it whole or absent)."""
    arrays = dict(W=np.asarray(result.W), H=np.asarray(result.H), n_iter=np.array(result.n_iter),
                  loss_history=np.asarray(result.loss_history, dtype=np.float64))

    def save(handle):
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        handle.write(buffer.getvalue())

    write_atomically(path, save)


def _read_fit(path: Path) -> SolverResult:
    with np.load(path, allow_pickle=False) as archive:
        return SolverResult(W=torch.from_numpy(archive["W"]), H=torch.from_numpy(archive["H"]),
                            n_iter=int(archive["n_iter"]), loss_history=[float(v) for v in archive["loss_history"]])


def _write_table(path: Path, rows, header, names) -> None:
    lines = ["\t".join(["", *(str(name) for name in header)])]
    for name, row in zip(names, rows):
        lines.append("\t".join([str(name), *(f"{value:.9g}" for value in row)]))
    path.write_text("\n".join(lines) + "\n")


def run_ensemble(data, ranks, replicates: int, out, *, beta_loss="frobenius", max_iter=500, tol=1e-4, seed=0,
                 precision="auto", writer=write_fit) -> dict:
    """The whole workflow (module docstring); returns a summary. ``precision`` goes to the ensemble's fits
    (``"bf16"``: the torch backend's bfloat16 KL MU)."""
    from .consensus import consensus
    from .ensemble import fit_ensemble
    from .selection import select_k

    out, data = Path(out), Path(data)
    fits = out / "fits"
    fits.mkdir(parents=True, exist_ok=True)
    arguments = dict(data=str(data.resolve()), ranks=list(ranks), replicates=int(replicates), beta_loss=beta_loss,
                     max_iter=int(max_iter), tol=float(tol), seed=int(seed))
    if precision != "auto":  # recorded only when set: folders of runs made before it existed still resume
        arguments["precision"] = precision
    run_file = out / "run.json"
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        if previous != arguments:
            raise ValueError(f"{out} holds a run with other arguments ({previous}); use another --out.")
    else:
        write_atomically(run_file, lambda handle: handle.write(json.dumps(arguments).encode()))
    matrix = read_matrix(data)
    path_of = lambda k, r: fits / f"k{k}_r{r}.npz"  # noqa: E731
    done = {(k, r) for k in ranks for r in range(replicates) if path_of(k, r).exists()}
    options = dict(beta_loss=beta_loss, tol=tol, max_iter=max_iter, random_state=seed)
    ensemble = fit_ensemble(matrix.X, list(ranks), replicates, skip=done, precision=precision,
                            on_finish=lambda k, r, result: writer(path_of(k, r), result), **options)
    for k, r in done:
        ensemble.results[(k, r)] = _read_fit(path_of(k, r))
    samples = matrix.row_names or [str(i) for i in range(matrix.X.shape[0])]
    features = matrix.column_names or [str(j) for j in range(matrix.X.shape[1])]
    for k in ranks:
        result = consensus(ensemble, k)
        _write_table(out / f"k{k}.spectra.tsv", np.asarray(result.components), features, range(1, k + 1))
        _write_table(out / f"k{k}.usages.tsv", np.asarray(result.usages), range(1, k + 1), samples)
    selection = select_k(matrix.X, list(ranks), ensemble=ensemble, beta_loss=beta_loss, tol=tol, max_iter=max_iter,
                         random_state=seed)
    table = selection.to_dict()
    names = ("stability", "consensus_error", "cophenetic", "dispersion", "cv_error")
    _write_table(out / "k_selection.tsv", np.array([table[name] for name in names]).T, names, table["ks"])
    selection.plot(out / "k_selection.png")
    return dict(out=str(out), ranks=list(ranks), replicates=int(replicates), refitted=len(ensemble.results) - len(done),
                reused=len(done), suggested_k=int(selection.suggested_k))
