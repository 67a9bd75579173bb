"""Command line: ``fastnmf demo`` and ``fastnmf fit DATA`` (also ``python -m fastnmf``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .backends import PRECISION_NAMES
from .estimator import NMF
from .io import read_matrix
from .losses import BETA_LOSS_NAMES


def _beta_arg(text: str):
    if text in BETA_LOSS_NAMES:
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a beta: use one of {sorted(BETA_LOSS_NAMES)} or a number"
        ) from None


def _add_model_options(parser: argparse.ArgumentParser, *, k: int, max_iter: int) -> None:
    parser.add_argument("-k", "--n-components", type=int, default=k, help=f"rank (default {k})")
    parser.add_argument("--beta-loss", type=_beta_arg, default="frobenius",
                        help="frobenius | kullback-leibler | itakura-saito | a number (default frobenius)")
    parser.add_argument("--max-iter", type=int, default=max_iter, help=f"default {max_iter}")
    parser.add_argument("--tol", type=float, default=1e-4, help="default 1e-4")
    parser.add_argument("--init", default=None, help="random | nndsvd | nndsvda | nndsvdar (default: auto)")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "triton"])
    parser.add_argument("--precision", default="auto", choices=PRECISION_NAMES,
                        help="Triton's product precision, or bf16: the torch backend's bfloat16 KL MU (default auto)")
    parser.add_argument("--device", default=None, help="e.g. cuda (default: cpu for files)")
    parser.add_argument("--check-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)


def _model(args) -> NMF:
    progress = getattr(args, "progress", False)
    progress = sys.stderr.isatty() if progress is None else progress
    return NMF(
        args.n_components, init=args.init, beta_loss=args.beta_loss, max_iter=args.max_iter, tol=args.tol,
        random_state=args.seed, backend=args.backend, device=args.device, check_every=args.check_every,
        solver=getattr(args, "solver", "auto"), verbose=int(bool(progress)), precision=args.precision,
    )


def _report(model: NMF, seconds: float) -> None:
    checks = [0] + [min(i * model.check_every, model.n_iter_) for i in range(1, len(model.loss_history_))]
    for iteration, loss in zip(checks, model.loss_history_):
        print(f"  iteration {iteration:5d}   objective {loss:.6g}")
    print(f"{model.n_iter_} iterations in {seconds:.3f} s ({1e3 * seconds / max(model.n_iter_, 1):.2f} ms/iteration), "
          f"reconstruction error {model.reconstruction_err_:.6g}")


def run_demo(args) -> int:
    """Digits (1797 × 64, shipped inside scikit-learn) with k=16: the classic 'parts' picture."""
    from sklearn.datasets import load_digits

    X = load_digits().data
    model = _model(args)
    print(f"fastnmf demo: digits {X.shape[0]}×{X.shape[1]}, k={args.n_components}, beta_loss={args.beta_loss}")
    start = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - start
    _report(model, seconds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _plot_components(model.components_, out / "components.png")
    _plot_loss(model, out / "loss.png")
    print(f"wrote {out / 'components.png'} and {out / 'loss.png'}")
    return 0


def _plot_components(H: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = H.shape[0]
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    side = int(round(np.sqrt(H.shape[1])))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows))
    for index, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if index < k:
            ax.imshow(H[index].reshape(side, -1), cmap="gray_r", interpolation="nearest")
            ax.set_title(f"{index}", fontsize=8)
    fig.suptitle("NMF components of the digits (k = %d)" % k)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_loss(model: NMF, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checks = [0] + [min(i * model.check_every, model.n_iter_) for i in range(1, len(model.loss_history_))]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(checks, model.loss_history_, marker="o", markersize=3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("objective")
    ax.set_yscale("log")
    ax.set_title(f"fastnmf, solver={model.solver}, beta_loss={model.beta_loss}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_fit(args) -> int:
    """Factorize a matrix from a file (``fastnmf.io.read_matrix``); write W and H to an .npz, or, for .h5ad
    input, the AnnData annotated by ``fastnmf.tl.nmf`` to a new .h5ad."""
    data = Path(args.data)
    matrix = read_matrix(data)
    h5ad = matrix.adata is not None
    out = Path(args.out) if args.out else Path(data.stem + (".nmf.h5ad" if h5ad else ".nmf.npz")).resolve()
    if out.resolve() == data.resolve():
        raise ValueError(f"--out {out} is the input file: fastnmf never writes over its input.")
    if h5ad and out.suffix != ".h5ad" or not h5ad and out.suffix != ".npz":
        raise ValueError(f"--out must end in {'.h5ad' if h5ad else '.npz'} for {data.name}, got {out.name}.")
    model = _model(args)
    start = time.perf_counter()
    if h5ad:
        from . import tl

        options = model.get_params(deep=False)
        tl.nmf(matrix.adata, options.pop("n_components"), **options)
        W, H = matrix.adata.obsm["X_nmf"], matrix.adata.varm["nmf_components"].T
        matrix.adata.write_h5ad(out)
        n_iter, error, history = (matrix.adata.uns["nmf"][key] for key in ("n_iter", "reconstruction_err",
                                                                           "loss_history"))
    else:
        W = model.fit_transform(matrix.X)
        H, n_iter, error, history = model.components_, model.n_iter_, model.reconstruction_err_, model.loss_history_
        names = {}
        if matrix.row_names:
            names["row_names"] = np.asarray(matrix.row_names, dtype=str)
        if matrix.column_names:
            names["column_names"] = np.asarray(matrix.column_names, dtype=str)
        np.savez(out, W=W, H=H, **names)
    seconds = time.perf_counter() - start
    summary = dict(input=str(data), output=str(out), shape=list(matrix.X.shape), n_components=int(H.shape[0]),
                   n_iter=int(n_iter), reconstruction_err=float(error), final_objective=float(history[-1]),
                   seconds=round(seconds, 4), beta_loss=model.beta_loss, solver=model.solver)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{data.name}: {matrix.X.shape[0]}×{matrix.X.shape[1]}, k={H.shape[0]}: {n_iter} iterations in "
              f"{seconds:.3f} s, reconstruction error {error:.6g}; wrote {out}")
    return 0


def run_ensemble_command(args) -> int:
    """Replicates × ranks, consensus and the choice of k, resumable (``fastnmf.workflow``)."""
    from .workflow import parse_ranks, run_ensemble

    summary = run_ensemble(args.data, parse_ranks(args.k), args.replicates, args.out, beta_loss=args.beta_loss,
                           max_iter=args.max_iter, tol=args.tol, seed=args.seed, precision=args.precision)
    print(json.dumps(summary) if args.json else
          f"{summary['reused']} fits reused, {summary['refitted']} fitted; suggested k = {summary['suggested_k']}; "
          f"outputs in {summary['out']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastnmf", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fastnmf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="factorize scikit-learn's digits; save the components and loss curve")
    _add_model_options(demo, k=16, max_iter=500)
    demo.add_argument("--out", default="demo-output", help="folder for the PNGs (default demo-output)")
    demo.set_defaults(run=run_demo)
    fit = commands.add_parser(
        "fit", help="factorize a matrix from a file: .npy, .npz (dense or scipy sparse), .mtx, a 10x folder, "
        ".csv, .tsv, .h5ad",
        description="Factorize DATA ≈ W·H. DATA: .npy, .npz (a dense array, or scipy.sparse.save_npz), .mtx (Matrix "
        "Market), a 10x folder (matrix.mtx genes × cells with features.tsv and barcodes.tsv, read as cells × "
        "genes), .csv / .tsv, .h5ad (AnnData; the results are stored as fastnmf.tl.nmf stores them). Files are "
        "never unpickled.")
    fit.add_argument("data", help="the matrix file (or a 10x folder)")
    _add_model_options(fit, k=10, max_iter=200)
    fit.add_argument("--solver", default="auto", choices=["auto", "mu", "hals", "newton"])
    fit.add_argument("--out", help="output: an .npz with W and H (and the row/column names of a 10x folder), or for "
                     ".h5ad input an .h5ad (default: DATA's name + .nmf.npz / .nmf.h5ad in the current folder); "
                     "never the input file")
    fit.add_argument("--json", action="store_true", help="print a one-line JSON summary instead of the text one")
    fit.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="a progress bar on stderr (default: when stderr is a terminal)")
    fit.set_defaults(run=run_fit)
    ensemble = commands.add_parser(
        "ensemble", help="replicates × ranks, cNMF's consensus and the choice of k; resumable after a kill",
        description="Fit --replicates random restarts at every rank of --k, write each fit to OUT/fits/ as it "
        "finishes (a re-run after an interruption fits only what is missing), then per rank the consensus "
        "spectra (programs × features) and usages (samples × programs) as .tsv, and the k-selection table and "
        "plot (OUT/k_selection.tsv, .png).")
    ensemble.add_argument("data", help="the matrix file (formats as for fit)")
    ensemble.add_argument("--k", required=True, help="ranks: 5-13, or 5,7,9")
    ensemble.add_argument("--replicates", type=int, default=20, help="random restarts per rank (default 20)")
    ensemble.add_argument("--out", required=True, help="output folder (created; reused to resume)")
    ensemble.add_argument("--beta-loss", type=_beta_arg, default="kullback-leibler",
                          help="frobenius | kullback-leibler | itakura-saito | a number (default kullback-leibler)")
    ensemble.add_argument("--max-iter", type=int, default=500)
    ensemble.add_argument("--tol", type=float, default=1e-4)
    ensemble.add_argument("--seed", type=int, default=0)
    ensemble.add_argument("--precision", default="auto", choices=PRECISION_NAMES,
                          help="of the replicates' fits: bf16 is the torch backend's bfloat16 KL MU (default auto)")
    ensemble.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    ensemble.set_defaults(run=run_ensemble_command)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, RuntimeError, OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
