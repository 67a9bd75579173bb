"""Property-based self-check of the public API, with hypothesis (``pip install fastnmf[test]``).

    python -m fastnmf.selfcheck --examples 10000            # the release profile
    python -m fastnmf.selfcheck --examples 200 --triton     # the Triton backend (interpreted on a CPU)
    python -m fastnmf.selfcheck --examples 1000 --bf16      # the torch backend's precision="bf16"

Each example draws a shape (1×1, tall, wide, k ≥ min(m, n)), a container and dtype (numpy float64,
float32, int64; torch float32, float64, float16, bfloat16; scipy CSR, CSC, COO; torch sparse COO, CSR;
sparse CSR with float32 values — with ``--triton``, the containers the Triton backend takes),
magnitudes from 1e-30 to 1e30,
exact zeros, zero rows and columns, a β, a solver and an init. The property: either the documented
error for that case (a ValueError/TypeError with a message), or finite non-negative factors of the right
shape and dtype; the input is never modified; and in float64 the objective of MU and HALS never increases.
``make test`` runs ~300 examples (``tests/test_fuzz.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from .functional import non_negative_factorization
from .losses import parse_beta_loss
from .solvers import supports

__all__ = ["FitCase", "fit_cases", "check_case", "main", "CONTAINERS", "TRITON_CONTAINERS"]

CONTAINERS = ("numpy-float64", "numpy-float32", "numpy-int64", "torch-float32", "torch-float64",
              "torch-float16", "torch-bfloat16", "scipy-csr", "scipy-csc", "scipy-coo", "torchsparse-coo",
              "torchsparse-csr", "scipy32-csr", "torchsparse32-csr")
# What the Triton backend is fuzzed with: float32/float16 dense X and float32 sparse X (its sparse KL kernel).
TRITON_CONTAINERS = ("torch-float32", "torch-float16", "numpy-float32", "scipy32-csr", "torchsparse32-csr")
# Containers whose data is float64 (the objective of every solver is checked for monotonicity on them).
_FLOAT64 = ("numpy-float64", "torch-float64", "scipy-csr", "scipy-csc", "scipy-coo", "torchsparse-coo",
            "torchsparse-csr")
BETAS = ("frobenius", "kullback-leibler", "itakura-saito", 0.5, 1.5, 3.0)
SOLVERS = ("auto", "mu", "hals", "newton")
INITS = (None, "random", "nndsvd", "nndsvda", "nndsvdar")


@dataclass(frozen=True)
class FitCase:
    m: int
    n: int
    k: int
    container: str
    exponent: int
    zero_fraction: float
    zero_row: bool
    zero_column: bool
    beta_loss: object
    solver: str
    init: object
    max_iter: int
    seed: int
    backend: str = "torch"
    precision: str = "auto"


def fit_cases(backends=("torch",), containers=CONTAINERS, max_side=12, precisions=("auto",)):
    """The hypothesis strategy of :class:`FitCase`."""
    from hypothesis import strategies as st

    @st.composite
    def draw_case(draw):
        m, n = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
        return FitCase(
            m=m, n=n, k=draw(st.integers(1, min(m, n) + 3)),
            container=draw(st.sampled_from(containers)),
            exponent=draw(st.integers(-30, 30)),
            zero_fraction=draw(st.sampled_from((0.0, 0.3, 0.9, 1.0))),
            zero_row=draw(st.booleans()), zero_column=draw(st.booleans()),
            beta_loss=draw(st.sampled_from(BETAS)), solver=draw(st.sampled_from(SOLVERS)),
            init=draw(st.sampled_from(INITS)), max_iter=draw(st.integers(1, 15)),
            seed=draw(st.integers(0, 2**31 - 1)), backend=draw(st.sampled_from(backends)),
            precision=draw(st.sampled_from(precisions)),
        )

    return draw_case()


def build_data(case: FitCase):
    rng = np.random.RandomState(case.seed % (2**32))
    X = rng.gamma(0.5, size=(case.m, case.n)) * 10.0 ** case.exponent
    X[rng.rand(case.m, case.n) < case.zero_fraction] = 0.0
    if case.zero_row:
        X[rng.randint(case.m)] = 0.0
    if case.zero_column:
        X[:, rng.randint(case.n)] = 0.0
    library, dtype = case.container.split("-")
    if dtype == "int64":
        # Integer counts: magnitudes beyond int64 are not counts; keep them below 1e15.
        return np.rint(np.minimum(X, 1e15)).astype(np.int64)
    if library == "numpy":
        return X.astype(dtype)
    # "scipy32" / "torchsparse32": the same sparse layouts with float32 values.
    values_dtype = np.float32 if library.endswith("32") else np.float64
    if library.startswith("scipy"):
        return sp.coo_matrix(X.astype(values_dtype)).asformat(dtype)
    if library.startswith("torchsparse"):
        # From COO coordinates (never through a dense tensor): the layouts fastnmf reads directly.
        coo = sp.coo_matrix(X.astype(values_dtype))
        indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        tensor = torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data), X.shape, check_invariants=False).coalesce()
        return tensor if dtype == "coo" else tensor.to_sparse_csr()
    return torch.from_numpy(X).to(getattr(torch, dtype))


def expected_error(case: FitCase, X):
    """``(exception type, message pattern)`` of the documented error for this case, or ``(None, None)``,
    in the order the checks run: options, then X, then the backend, then the initialization."""
    beta = parse_beta_loss(case.beta_loss)
    if case.solver != "auto" and not supports(case.solver, beta):  # fastnmf.solvers.check_loss
        return ValueError, rf"solver='{case.solver}' minimizes the .* only \(beta_loss="
    if isinstance(X, torch.Tensor) and X.layout == torch.strided and not bool(torch.isfinite(X).all()):
        return ValueError, r"Input X contains NaN or infinity"  # too large for float16: stored as inf
    if case.backend == "triton" and case.container in ("numpy-float64", "numpy-int64") + _FLOAT64:
        return TypeError, r"backend='triton' computes with float32 factors, but X is float64"
    if case.init in ("nndsvd", "nndsvda", "nndsvdar") and case.k > min(case.m, case.n):
        return ValueError, r"can only be used when n_components <= min\(n_samples, n_features\)"
    return None, None


def _snapshot(X):
    if isinstance(X, torch.Tensor):
        return X.clone()
    if sp.issparse(X):
        return X.copy()
    return X.copy()


def _unchanged(before, after) -> bool:
    if isinstance(after, torch.Tensor) and after.layout != torch.strided:
        # Compare what is stored (indices and values), never a dense copy.
        before, after = before.to_sparse_coo().coalesce(), after.to_sparse_coo().coalesce()
        return torch.equal(before.indices(), after.indices()) and torch.equal(before.values(), after.values())
    if isinstance(after, torch.Tensor):
        return torch.equal(before, after)
    if sp.issparse(after):
        return (before != after).nnz == 0
    return np.array_equal(before, after)


def _output_dtype(case: FitCase):
    library, dtype = case.container.split("-")
    if library == "numpy":
        return np.float32 if dtype == "float32" else np.float64
    if library.startswith("scipy"):
        return np.float32 if library == "scipy32" else np.float64
    return torch.float64 if dtype == "float64" or library == "torchsparse" else torch.float32


def check_case(case: FitCase) -> str:
    """Run one example; raise AssertionError on a violated property; return an outcome label."""
    X = build_data(case)
    before = _snapshot(X)
    error_type, pattern = expected_error(case, X)
    # bf16 rounds the KL MU's products: a mode for speed, not monotone to the last bit.
    monotone = case.container in _FLOAT64 and case.solver != "auto" and case.precision != "bf16"
    # The Triton backend computes on the GPU where there is one (else interpreted on the CPU).
    device = "cuda" if case.backend == "triton" and torch.cuda.is_available() else None
    try:
        W, H, n_iter = non_negative_factorization(
            X, n_components=case.k, init=case.init, solver=case.solver, beta_loss=case.beta_loss,
            max_iter=case.max_iter, tol=0.0, random_state=case.seed, backend=case.backend,
            check_every=1 if monotone else 10, device=device, precision=case.precision,
        )
    except (ValueError, TypeError) as error:
        message = str(error)
        assert error_type is not None, f"{case}: undocumented error {error!r}"
        assert isinstance(error, error_type) and re.search(pattern, message), f"{case}: unexpected {error!r}"
        return f"error: {type(error).__name__}"
    finally:
        assert _unchanged(before, X), f"{case}: the input was modified"
    assert error_type is None, f"{case}: expected {error_type.__name__} /{pattern}/ but the fit succeeded"
    expected_dtype = _output_dtype(case)
    for name, factor, shape in (("W", W, (case.m, case.k)), ("H", H, (case.k, case.n))):
        assert tuple(factor.shape) == shape, f"{case}: {name} has shape {tuple(factor.shape)}, expected {shape}"
        assert factor.dtype == expected_dtype, f"{case}: {name} has dtype {factor.dtype}, expected {expected_dtype}"
        values = factor.float().cpu().numpy() if isinstance(factor, torch.Tensor) else factor
        assert np.isfinite(values).all(), f"{case}: {name} has non-finite entries"
        assert (values >= 0).all(), f"{case}: {name} has negative entries"
    assert 1 <= n_iter <= case.max_iter
    if monotone:
        _check_monotone(case, X)
    return "fitted"


def _check_monotone(case: FitCase, X) -> None:
    """MU, HALS and Newton never increase their objective (float64). Itakura–Saito's objective leaves out x = 0
    entries, which MU still fits, so it is monotone only on positive data."""
    from .estimator import NMF

    beta = parse_beta_loss(case.beta_loss)
    values = _stored_values(X)
    if beta <= 0.0 and bool(values.min() <= 0):
        return
    model = NMF(case.k, init=case.init, solver=case.solver, beta_loss=case.beta_loss, max_iter=case.max_iter,
                tol=0.0, random_state=case.seed, check_every=1).fit(X)
    history = model.loss_history_
    # The general-β divergence is a difference of sums of x^β-sized terms: allow their rounding.
    rounding = 1e-13 * (abs(history[0]) + float(np.sum(values[values > 0] ** beta)))
    for step, (previous, current) in enumerate(zip(history, history[1:]), start=1):
        assert current <= previous + 1e-9 * abs(previous) + rounding, (
            f"{case}: objective increased at iteration {step}: {previous!r} -> {current!r}"
        )


def _stored_values(X) -> np.ndarray:
    """The entries of X that matter for the bounds of :func:`_check_monotone`: all of a dense X; the
    stored values of a sparse X, plus one 0 when some entry is not stored (never a dense copy)."""
    if sp.issparse(X):
        stored, total = np.asarray(X.tocoo().data), X.shape[0] * X.shape[1]
    elif isinstance(X, torch.Tensor) and X.layout != torch.strided:
        stored, total = X.to_sparse_coo().coalesce().values().numpy(), X.shape[0] * X.shape[1]
    else:
        return X.numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    return np.append(stored, 0.0) if stored.size < total else stored


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastnmf.selfcheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000, help="hypothesis examples (default 1000)")
    parser.add_argument("--triton", action="store_true", help="fuzz the Triton backend (small shapes)")
    parser.add_argument("--bf16", action="store_true", help="fuzz the torch backend's precision='bf16'")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    args = parser.parse_args(argv)
    try:
        from hypothesis import HealthCheck, given, seed, settings
    except ImportError:
        print("fastnmf.selfcheck needs hypothesis: pip install 'fastnmf[test]'", file=sys.stderr)
        return 2
    outcomes: Counter = Counter()
    if args.triton and not torch.cuda.is_available():
        # Read when the kernels are decorated, i.e. imported — which happens lazily, at the first fit.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    if args.triton:
        strategy = fit_cases(backends=("triton",), containers=TRITON_CONTAINERS, max_side=8)
    else:
        strategy = fit_cases(precisions=("bf16",) if args.bf16 else ("auto",))

    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case):
        outcomes[check_case(case)] += 1

    if args.seed is not None:
        run = seed(args.seed)(run)
    start = time.perf_counter()
    run()
    total = sum(outcomes.values())
    print(f"{total} examples in {time.perf_counter() - start:.1f} s, no property violated: "
          + ", ".join(f"{label} {count}" for label, count in sorted(outcomes.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
