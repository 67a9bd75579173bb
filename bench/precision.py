"""What the Triton kernels' dot precisions would do to whole fits, measured on a CPU by emulation.

``python -m bench.precision [--out FILE.md]``: the Triton interpreter ignores ``input_precision``, so the
products are emulated in torch instead: ``tf32`` rounds both operands to tf32 (10-bit mantissa, round to
nearest) before an fp32-accumulated GEMM; ``tf32x3`` splits each operand into a tf32 high part and a tf32
residual and adds the three products ``hi·hi + hi·lo + lo·hi`` (what Triton's tf32x3 computes). The
emulation covers the products that stream X — ``WᵀQ`` and ``WH`` of the dense layout, which the fused
kernels compute with ``tl.dot`` — while the k×k Gram products stay fp32 (slightly optimistic for the
Frobenius MU's ``(WᵀW)H``); the loss curves are evaluated exactly afterwards. The CUDA default precision
is meant to be chosen from this table (docs/kernels.md, section "Precisions").
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch

import fastnmf
from fastnmf.layouts import DenseMatrix, dense
from fastnmf.objective import objective
from fastnmf.safeguard import reconstruction_floor

from . import datasets

__all__ = ["round_to_tf32", "emulated_matmul", "emulated_products", "main"]

MODES = ("ieee", "tf32", "tf32x3")


def round_to_tf32(x: torch.Tensor) -> torch.Tensor:
    """``x`` (float32) rounded to the nearest tf32 value: 10 explicit mantissa bits, fp32's exponent."""
    bits = x.contiguous().view(torch.int32)
    # Adding half an ulp of tf32 (bit 12) then clearing the 13 low bits rounds the magnitude to nearest.
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32).reshape(x.shape)


def emulated_matmul(a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
    """``a @ b`` as a tensor-core dot of the given precision computes it (fp32 accumulation)."""
    if mode == "ieee":
        return a @ b
    a_hi, b_hi = round_to_tf32(a), round_to_tf32(b)
    if mode == "tf32":
        return a_hi @ b_hi
    a_lo, b_lo = round_to_tf32(a - a_hi), round_to_tf32(b - b_hi)
    return a_hi @ b_hi + a_hi @ b_lo + a_lo @ b_hi


@contextlib.contextmanager
def emulated_products(mode: str):
    """Within the block, the dense layout's X-sized products (``WᵀQ``, ``WH``) use ``emulated_matmul``."""
    originals = dense.transposed_product, dense.reconstruction_like
    dense.transposed_product = lambda W, Q: emulated_matmul(W.T, Q, mode)
    dense.reconstruction_like = lambda X, W, H: emulated_matmul(W, H, mode)
    try:
        yield
    finally:
        dense.transposed_product, dense.reconstruction_like = originals


def _problems():
    from sklearn.datasets import load_digits

    digits = torch.from_numpy(load_digits().data.astype(np.float32))
    return [
        ("digits 1797×64 k=16", digits, 16, 2.0, "hals"),
        ("digits 1797×64 k=16", digits, 16, 2.0, "mu"),
        ("digits 1797×64 k=16", digits, 16, 1.0, "mu"),
        ("low-rank 2000×1000 k=32", datasets.lowrank_plus_noise(2000, 1000, 32, 0, "cpu"), 32, 2.0, "hals"),
        ("low-rank 2000×1000 k=32", datasets.lowrank_plus_noise(2000, 1000, 32, 0, "cpu"), 32, 2.0, "mu"),
        ("Poisson 2000×1000 k=32", datasets.poisson_counts(2000, 1000, 32, 0, "cpu"), 32, 1.0, "mu"),
    ]


def _curve(X, k, beta, solver, mode, checkpoints):
    snapshots = {}
    with emulated_products(mode):
        fastnmf.non_negative_factorization(
            X, n_components=k, init="random", random_state=0, beta_loss=beta, solver=solver, tol=0.0,
            max_iter=max(checkpoints), check_every=10**6, backend="torch",
            callback=lambda i, W, H: snapshots.__setitem__(i, (W.clone(), H.clone())) if i in checkpoints else None,
        )
    # The solvers' own objective (WH floored at eps·max X, as every fit's is): the snapshots carry exact zeros,
    # and an unfloored KL of a zero reconstruction where X > 0 is infinite.
    X64, eps_r = DenseMatrix(X.double()), reconstruction_floor(float(X.max()), torch.float32)
    return {i: float(objective(X64, W.double(), H.double(), beta=beta, eps_r=eps_r)) for i, (W, H) in snapshots.items()}


def run(checkpoints=(50, 200, 1000)) -> str:
    lines = ["| problem | loss | solver | " + " | ".join(f"{m} vs ieee at {i}" for m in MODES[1:] for i in checkpoints)
             + " |", "|---|---|---|" + "---|" * (2 * len(checkpoints))]
    for name, X, k, beta, solver in _problems():
        curves = {mode: _curve(X, k, beta, solver, mode, set(checkpoints)) for mode in MODES}
        cells = [f"{abs(curves[m][i] - curves['ieee'][i]) / curves['ieee'][i]:.1e}" for m in MODES[1:] for i in checkpoints]
        loss = {2.0: "Frobenius", 1.0: "KL"}[beta]
        lines.append(f"| {name} | {loss} | {solver} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.precision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    start = time.time()
    table = run()
    text = (f"Relative difference of the exact loss from the fp32 (ieee) fit, same start, after n iterations "
            f"(emulated on the CPU; {time.time() - start:.0f} s):\n\n{table}\n")
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
