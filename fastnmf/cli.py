"""Command line: ``python -m fastnmf demo`` and ``python -m fastnmf fit DATA``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .estimator import NMF
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
    parser.add_argument("--device", default=None, help="e.g. cuda (default: cpu for files)")
    parser.add_argument("--check-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)


def _model(args) -> NMF:
    return NMF(
        args.n_components, init=args.init, beta_loss=args.beta_loss, max_iter=args.max_iter, tol=args.tol,
        random_state=args.seed, backend=args.backend, device=args.device, check_every=args.check_every,
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


def _load_matrix(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return archive[archive.files[0]]
    delimiter = "," if path.suffix == ".csv" else None
    return np.loadtxt(path, delimiter=delimiter, ndmin=2)


def run_fit(args) -> int:
    """Factorize a matrix from a file; save W and H to one .npz."""
    X = _load_matrix(Path(args.data))
    model = _model(args)
    start = time.perf_counter()
    W = model.fit_transform(X)
    seconds = time.perf_counter() - start
    _report(model, seconds)
    np.savez(args.out, W=W, H=model.components_)
    print(f"wrote W {W.shape} and H {model.components_.shape} to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastnmf", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="factorize scikit-learn's digits; save the components and loss curve")
    _add_model_options(demo, k=16, max_iter=500)
    demo.add_argument("--out", default="demo-output", help="folder for the PNGs (default demo-output)")
    demo.set_defaults(run=run_demo)
    fit = commands.add_parser("fit", help="factorize a matrix from a .npy, .npz, .csv or text file")
    fit.add_argument("data")
    _add_model_options(fit, k=10, max_iter=200)
    fit.add_argument("--out", default="factors.npz", help="output .npz with W and H (default factors.npz)")
    fit.set_defaults(run=run_fit)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
