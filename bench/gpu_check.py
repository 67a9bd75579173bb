"""The GPU validation script: everything the first minutes on a GPU should measure, in one command.

``python -m bench.gpu_check [--out DIR] [--budget-s 300] [--sections a,b]`` on a CUDA machine with torch and
triton installed (``pip install --no-deps -e .``, no network needed) runs the sections below in priority
order and rewrites ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` after each one, so a run cut short keeps
what it measured. A section that fails records its error and the next one runs; a section that would start
past the time budget is recorded as skipped. Every kernel variant is called once before it is timed (the
compile), and that first call's time is reported as its compile time. Times: ``triton.testing.do_bench``
medians (CUDA events).

``--tiny`` runs the same sections at tiny shapes on whatever device there is (on a CPU: the Triton
interpreter, ``TRITON_INTERPRET=1``): the rehearsal that ``make test`` runs (tests/test_gpu_check.py), which
checks that every section runs and that the correctness checks pass — not the speed.

Sections (docs/kernels.md, "GPU validation"):

1. ``tests`` — the GPU-marked tests (bf16, tf32, large shapes), compiled;
2. ``grid_limit`` — every launcher at n > 4,194,240 columns (a 64 × 4.2·10⁶ X: CUDA's 65535 cap on grid
   axes 1 and 2), against torch;
3. ``bandwidth`` — the fused kernels at 50000×20000 (fp32 and fp16 X, k ∈ {16, 32, 64, 128}, each
   precision for fp32): GB/s of X, fraction of an ``X.sum()`` read probe and of the roofline
   ``max(bytes / read probe, flops / matmul rate)`` (matmul rates measured in the same run), beside the
   torch backend;
4. ``sparse_kl`` — the sparse KL update at 10⁶ × 10⁵ with 1.1·10⁷ stored entries (H and W updates);
5. ``hals_sweeps`` — the inner sweeps the accelerated HALS allows and does per column block;
6. ``offsets`` — a 50000×50000 fp32 X (element offsets past 2³¹) against torch;
7. ``fits`` — whole fits at each precision (loss histories, n_iter) beside the torch backend;
8. ``distributed`` — one rank of ``fastnmf.distributed`` (NCCL) with the Triton local step, against the
   single-process fit;
9. ``ensemble`` — ``fit_ensemble`` batched against the same fits one by one, and the KL batch layouts;
10. ``streamed`` — a host-resident X streamed to the GPU in chunks, against the in-memory fit;
11. ``interpreter_tests`` — the kernel tests the CPU runs under the interpreter, compiled here (last: it
    compiles every variant they use).

Later capabilities add a section here, so that one script stays the whole check.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import sys
import time
import traceback
from dataclasses import dataclass

import torch

__all__ = ["SHAPES", "main", "run"]


@dataclass(frozen=True)
class Shapes:
    bandwidth: tuple  # (m, n) of the bandwidth table
    ranks: tuple  # k of the bandwidth table
    precisions: tuple  # precisions of the fp32 rows (fp16 rows: the default only)
    grid_limit: tuple  # (m, n) with n past the grid-axis cap
    sparse: tuple  # (m, n, stored entries)
    sparse_ranks: tuple
    offsets: tuple  # (m, n), m·n > 2³¹
    fits: tuple  # (m, n, k, max_iter)
    ensemble: tuple  # (m, n, ranks, replicates, max_iter)
    streamed: tuple  # (m, n, k, chunk_rows, max_iter)


SHAPES = {
    "full": Shapes(bandwidth=(50000, 20000), ranks=(16, 32, 64, 128), precisions=("ieee", "tf32", "tf32x3"),
                   grid_limit=(64, 4_200_000), sparse=(1_000_000, 100_000, 11_000_000), sparse_ranks=(32, 64),
                   offsets=(50000, 50000), fits=(20000, 10000, 32, 200), ensemble=(20000, 2000, (5, 6, 7, 8, 9), 8, 200),
                   streamed=(40000, 10000, 32, 8192, 50)),
    "tiny": Shapes(bandwidth=(96, 80), ranks=(4, 16), precisions=("ieee", "tf32x3"), grid_limit=(8, 300),
                   sparse=(300, 200, 3000), sparse_ranks=(4,), offsets=(64, 48), fits=(60, 40, 4, 15),
                   ensemble=(60, 40, (2, 3), 2, 30), streamed=(70, 30, 3, 16, 10)),
}


# --- timing -------------------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _first_call_s(fn, device) -> float:
    """Seconds of the first call (the compile, for a new kernel variant)."""
    _sync(device)
    started = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - started


def _median_ms(fn, device) -> float:
    """Median milliseconds of ``fn`` (CUDA: do_bench with events; elsewhere a few host-timed calls)."""
    if device.type == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))
    times = []
    for _ in range(3):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times)


def _comparison(got, reference, tolerance: float) -> dict:
    """A correctness row: the relative error of ``got`` (a tensor or a float) against ``reference``."""
    if isinstance(got, float):
        error = abs(got - reference) / abs(reference)
    else:
        error = _relative_error(got, reference)
    return {"relative_error": error, "ok": bool(math.isfinite(error) and error < tolerance)}


def _relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    got, ref = got.double(), ref.double()
    return float(torch.linalg.norm(got - ref) / torch.linalg.norm(ref).clamp_min(1e-300))


def _random_factors(m, n, k, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    W = torch.rand(m, k, generator=g, device=device) + 0.1
    H = torch.rand(k, n, generator=g, device=device) + 0.1
    return W, H


def _positive_x(m, n, device, dtype=torch.float32, seed=1):
    g = torch.Generator(device=device).manual_seed(seed)
    return (torch.rand(m, n, generator=g, device=device) + 0.05).to(dtype)


def _dense_problem(m, n, k, device):
    """X (positive, fp32), W, H and the reconstruction floor of X: the inputs of the correctness sections."""
    from fastnmf.safeguard import reconstruction_floor

    X = _positive_x(m, n, device)
    W, H = _random_factors(m, n, k, device)
    return X, W, H, reconstruction_floor(float(X.max()), torch.float32)


# --- torch references (fp32 products with tf32 off, or float64) ----------------------------------------

def _torch_frobenius_h(X, W, H):
    return H * (W.T @ X.float()) / ((W.T @ W) @ H).clamp_min(torch.finfo(torch.float32).tiny)


def _torch_kl_h(X, W, H, eps_r):
    ratio = X.float() / (W @ H).clamp_min(eps_r)
    return H * (W.T @ ratio) / W.sum(0)[:, None]


class _NoTF32:
    """torch's own matmuls in full fp32 while a reference is computed."""

    def __enter__(self):
        self.previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.previous


# --- sections -----------------------------------------------------------------------------------------

def _pytest(ctx, marker: str) -> dict:
    """``pytest -m marker`` in a subprocess with the Triton kernels compiled (TRITON_INTERPRET unset)."""
    import subprocess

    if ctx.device.type != "cuda":
        return {"status": "skipped", "reason": "no CUDA device: the test suite runs these under the interpreter"}
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", marker, "-p", "no:cacheprovider",
                               "--durations=5", "tests"], cwd=ctx.root, env=env, capture_output=True, text=True,
                              timeout=ctx.section_limit_s)
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        return {"status": "failed", "reason": f"timed out after {ctx.section_limit_s:g} s", "output_tail": output[-4000:]}
    tail = (done.stdout + done.stderr)[-4000:]
    summary = next((line for line in reversed(tail.splitlines()) if " in " in line and ("passed" in line or "failed" in line)), "")
    return {"marker": marker, "returncode": done.returncode, "summary": summary, "output_tail": tail,
            "ok": done.returncode == 0}


def section_tests(ctx) -> dict:
    """The GPU-marked tests (bf16, tf32, large shapes), compiled on this GPU."""
    return _pytest(ctx, "gpu")


def section_interpreter_tests(ctx) -> dict:
    """The interpreter-marked kernel tests, compiled on this GPU instead of interpreted (last: many compiles)."""
    return _pytest(ctx, "interpreter")


def section_grid_limit(ctx) -> dict:
    """Every launcher on an X wider than CUDA's grid-axis cap allows for a 2-D grid, against torch."""
    from fastnmf import kernels
    from fastnmf.updates import hals_sweeps_

    m, n = ctx.shapes.grid_limit
    k = 4
    X, W, H, eps_r = _dense_problem(m, n, k, ctx.device)
    with _NoTF32():
        reference = {
            "objective (β=1)": float(((X.double() * torch.log(X.double() / (W.double() @ H.double())))
                                      - X.double() + W.double() @ H.double()).sum()),
            "mu_frobenius_update_h": _torch_frobenius_h(X, W, H),
            "mu_beta_update_h (β=1)": _torch_kl_h(X, W, H, eps_r),
            "matmul_tn": W.T @ X,
        }
        B = W.T @ W
        A = reference["matmul_tn"]
    got = {
        "objective (β=1)": float(kernels.factorization_divergence(X, W, H, beta=1.0, eps_r=eps_r, precision="ieee")),
        "mu_frobenius_update_h": kernels.mu_frobenius_update_h(X, W, H, precision="ieee"),
        "mu_beta_update_h (β=1)": kernels.mu_beta_update_h(X, W, H, beta=1.0, eps_r=eps_r, precision="ieee"),
        "matmul_tn": kernels.matmul_tn(W, X, precision="ieee"),
    }
    H_sweep, _ = kernels.hals_sweeps(H, A, B, max_sweeps=1)
    H_torch = H.clone()
    hals_sweeps_(H_torch, A, B, max_sweeps=1)
    got["hals_sweeps"], reference["hals_sweeps"] = H_sweep, H_torch
    rows = {name: _comparison(got[name], reference[name], 1e-4) for name in got}
    return {"shape": [m, n], "k": k, "launchers": rows, "ok": all(r["ok"] for r in rows.values())}


def _read_probe_gbps(X, device) -> float:
    ms = _median_ms(lambda: X.sum(), device)
    return X.numel() * X.element_size() / (ms * 1e-3) / 1e9


def _matmul_tflops(device, size: int, allow_tf32: bool) -> float:
    a = torch.rand(size, size, device=device)
    b = torch.rand(size, size, device=device)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    try:
        ms = _median_ms(lambda: a @ b, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * size ** 3 / (ms * 1e-3) / 1e12


def section_bandwidth(ctx) -> dict:
    """The fused kernels at the bandwidth shape: GB/s of X, fraction of the read probe and of the roofline."""
    from fastnmf import kernels
    from fastnmf.backends import DEFAULT_PRECISION
    from fastnmf.kernels import occupancy
    from fastnmf.safeguard import reconstruction_floor

    m, n = ctx.shapes.bandwidth
    device = ctx.device
    size = 8192 if device.type == "cuda" else 64
    rates = {"ieee": _matmul_tflops(device, size, False), "tf32": _matmul_tflops(device, size, True)}
    rates["tf32x3"] = rates["tf32"] / 3  # three tf32 products per dot
    rows, probes = [], {}
    for dtype in (torch.float32, torch.float16):
        X = _positive_x(m, n, device, dtype)
        probe = probes[str(dtype).replace("torch.", "")] = _read_probe_gbps(X, device)
        eps_r = reconstruction_floor(float(X.max()), torch.float32)
        precisions = ctx.shapes.precisions if dtype == torch.float32 else (DEFAULT_PRECISION,)
        for k in ctx.shapes.ranks:
            W, H = _random_factors(m, n, k, device)
            cases = {
                "frobenius H": (lambda p: kernels.mu_frobenius_update_h(X, W, H, precision=p),
                                kernels.mu_frobenius_cost(m, n, k, X.element_size())),
                "kl H": (lambda p: kernels.mu_beta_update_h(X, W, H, beta=1.0, eps_r=eps_r, precision=p),
                         kernels.mu_beta_cost(m, n, k, X.element_size(), 1.0)),
                "WᵀX (HALS)": (lambda p: kernels.matmul_tn(W, X, precision=p),
                               kernels.matmul_tn_cost(m, n, k, X.element_size())),
            }
            if k == ctx.shapes.ranks[min(1, len(ctx.shapes.ranks) - 1)] and dtype == torch.float32:
                # the W-update layout (k = 32 at full size): the same kernels on transposed views
                cases["frobenius W"] = (lambda p: kernels.mu_frobenius_update_h(X.T, H.T, W.T, precision=p),
                                        kernels.mu_frobenius_cost(n, m, k, X.element_size()))
                cases["kl W"] = (lambda p: kernels.mu_beta_update_h(X.T, H.T, W.T, beta=1.0, eps_r=eps_r, precision=p),
                                 kernels.mu_beta_cost(n, m, k, X.element_size(), 1.0))
                # One column fewer through a view (row stride n kept): Triton vectorizes a masked load only
                # when the masked extent is a multiple of 16, so these rows price an odd n (4-byte copies,
                # docs/kernels.md "Leading dimensions"), the open question of padding X's extents.
                X_odd, H_odd = X[:, : n - 1], H[:, : n - 1]
                cases["frobenius H, n−1 columns"] = (
                    lambda p: kernels.mu_frobenius_update_h(X_odd, W, H_odd, precision=p),
                    kernels.mu_frobenius_cost(m, n - 1, k, X.element_size()))
                cases["kl H, n−1 columns"] = (
                    lambda p: kernels.mu_beta_update_h(X_odd, W, H_odd, beta=1.0, eps_r=eps_r, precision=p),
                    kernels.mu_beta_cost(m, n - 1, k, X.element_size(), 1.0))
            for name, (launch, (bytes_, flops)) in cases.items():
                for precision in precisions:
                    compile_s = _first_call_s(lambda: launch(precision), device)
                    ms = _median_ms(lambda: launch(precision), device)
                    floor_s = max(bytes_ / (probe * 1e9), flops / (rates[precision] * 1e12))
                    rows.append({"kernel": name, "x_dtype": str(dtype).replace("torch.", ""), "k": k,
                                 "precision": precision, "ms": ms, "compile_s": compile_s,
                                 "x_gbps": m * n * X.element_size() / (ms * 1e-3) / 1e9,
                                 "fraction_of_read_probe": m * n * X.element_size() / (ms * 1e-3) / 1e9 / probe,
                                 "fraction_of_roofline": floor_s / (ms * 1e-3)})
            if dtype == torch.float32:  # the torch backend's products beside them (fp32, tf32 off)
                with _NoTF32():
                    for name, fn in (("frobenius H", lambda: _torch_frobenius_h(X, W, H)),
                                     ("kl H", lambda: _torch_kl_h(X, W, H, eps_r)), ("WᵀX (HALS)", lambda: W.T @ X)):
                        fn()
                        ms = _median_ms(fn, device)
                        rows.append({"kernel": name, "x_dtype": "float32", "k": k, "precision": "torch", "ms": ms,
                                     "x_gbps": m * n * 4 / (ms * 1e-3) / 1e9,
                                     "fraction_of_read_probe": m * n * 4 / (ms * 1e-3) / 1e9 / probe})
        del X
    # The residency each split variant's launches reported (it sized the row splits timed above).
    residency = occupancy.remembered()
    return {"shape": [m, n], "read_probe_gbps": probes, "matmul_tflops": rates, "rows": rows,
            "residency": residency, "ok": True}


def section_sparse_kl(ctx) -> dict:
    """The fused sparse KL update (H and W) against the torch sparse rule."""
    from fastnmf import kernels
    from fastnmf.backends import resolve_backend
    from fastnmf.layouts import SparseMatrix
    from fastnmf.safeguard import reconstruction_floor

    m, n, nnz = ctx.shapes.sparse
    device = ctx.device
    g = torch.Generator(device=device).manual_seed(2)
    rows_, cols = torch.randint(0, m, (nnz,), generator=g, device=device), torch.randint(0, n, (nnz,), generator=g, device=device)
    values = torch.randint(1, 6, (nnz,), generator=g, device=device).float()
    X = SparseMatrix.from_coo(rows_, cols, values, (m, n))
    eps_r = reconstruction_floor(5.0, torch.float32)
    torch_rule = resolve_backend("torch", X).mu_rule(1.0, 0.0, 0.0, eps_r=eps_r)
    out = []
    for k in ctx.shapes.sparse_ranks:
        W, H = _random_factors(m, n, k, device)
        bytes_, _ = kernels.mu_sparse_kl_cost(X.nnz, m, n, k, 4)
        for side, launch, reference in (
            ("H", lambda: kernels.mu_sparse_kl_update_h(X, W, H, eps_r=eps_r), lambda: torch_rule.update(X, W, H)[0]),
            ("W", lambda: kernels.mu_sparse_kl_update_h(X.T, H.T, W.T, eps_r=eps_r).T,
             lambda: torch_rule.update(X.T, H.T, W.T)[0].T),
        ):
            compile_s = _first_call_s(launch, device)
            ms = _median_ms(launch, device)
            with _NoTF32():
                error = _relative_error(launch(), reference())
            out.append({"k": k, "update": side, "ms": ms, "compile_s": compile_s, "relative_error_vs_torch": error,
                        "modelled_gbps": bytes_ / (ms * 1e-3) / 1e9, "ok": error < 1e-4})
    return {"shape": [m, n], "nnz": X.nnz, "rows": out, "ok": all(r["ok"] for r in out)}


def section_hals_sweeps(ctx) -> dict:
    """Inner sweeps: the accelerated HALS limit for each factor and what the fused sweep does."""
    from fastnmf import kernels
    from fastnmf.backends import resolve_backend
    from fastnmf.layouts import DenseMatrix
    from fastnmf.penalties import Penalties
    from fastnmf.solvers import hals_rules

    m, n = ctx.shapes.bandwidth
    k = ctx.shapes.ranks[min(1, len(ctx.shapes.ranks) - 1)]
    X = _positive_x(m, n, ctx.device)
    layout = DenseMatrix(X)
    backend = resolve_backend("triton", layout, "auto", solver="hals")
    rule_w, rule_h = hals_rules(backend, layout, Penalties(), k)
    W, H = _random_factors(m, n, k, ctx.device)
    A, B = kernels.matmul_tn(W, X), W.T @ W
    result = {"shape": [m, n], "k": k, "max_sweeps_w": rule_w.max_sweeps, "max_sweeps_h": rule_h.max_sweeps}
    _first_call_s(lambda: kernels.hals_sweeps(H, A, B, max_sweeps=rule_h.max_sweeps), ctx.device)
    _, sweeps = kernels.hals_sweeps(H, A, B, max_sweeps=rule_h.max_sweeps)
    counts = sweeps.double()
    sweep_ms = _median_ms(lambda: kernels.hals_sweeps(H, A, B, max_sweeps=rule_h.max_sweeps), ctx.device)
    product_ms = _median_ms(lambda: kernels.matmul_tn(W, X), ctx.device)
    one_sweep_ms = _median_ms(lambda: kernels.hals_sweeps(H, A, B, max_sweeps=1), ctx.device)
    # What the sweep limit should be from these times: Gillis & Glineur's 1 + ⌊ρ/2⌋ with ρ = 1 + (time of
    # the X product) / (time of one sweep) — to set triton_backend.FUSED_SWEEP_ROW_OVERHEAD from.
    measured_rho = 1.0 + product_ms / one_sweep_ms
    result.update(sweeps_per_block={"min": float(counts.min()), "median": float(counts.median()), "max": float(counts.max())},
                  sweep_ms=sweep_ms, one_sweep_ms=one_sweep_ms, product_ms=product_ms, measured_rho=measured_rho,
                  limit_from_measured_rho=1 + int(0.5 * measured_rho), ok=True)
    return result


def section_offsets(ctx) -> dict:
    """A matrix with more than 2³¹ elements: every launcher against torch (int64 offsets)."""
    from fastnmf import kernels

    m, n = ctx.shapes.offsets
    k = 16
    X, W, H, eps_r = _dense_problem(m, n, k, ctx.device)
    with _NoTF32():
        pairs = {
            "mu_frobenius_update_h H": (lambda: kernels.mu_frobenius_update_h(X, W, H, precision="ieee"),
                                        lambda: _torch_frobenius_h(X, W, H)),
            "mu_frobenius_update_h W": (lambda: kernels.mu_frobenius_update_h(X.T, H.T, W.T, precision="ieee"),
                                        lambda: _torch_frobenius_h(X.T, H.T, W.T)),
            "mu_beta_update_h H (β=1)": (lambda: kernels.mu_beta_update_h(X, W, H, beta=1.0, eps_r=eps_r, precision="ieee"),
                                         lambda: _torch_kl_h(X, W, H, eps_r)),
            "matmul_tn": (lambda: kernels.matmul_tn(W, X, precision="ieee"), lambda: W.T @ X),
        }
        rows = {name: _comparison(launch(), reference(), 1e-4) for name, (launch, reference) in pairs.items()}
        objective = float(kernels.factorization_divergence(X, W, H, beta=2.0, eps_r=0.0, precision="ieee"))
        exact = 0.5 * float(sum(((X[i:i + 4096].double() - W[i:i + 4096].double() @ H.double()) ** 2).sum()
                                for i in range(0, m, 4096)))
        rows["factorization_divergence (β=2)"] = _comparison(objective, exact, 1e-5)
    return {"shape": [m, n], "elements": m * n, "past_2_31": m * n > 2 ** 31, "launchers": rows,
            "ok": all(r["ok"] for r in rows.values())}


def _lowrank(m, n, k, device, seed=0):
    W, H = _random_factors(m, n, k, device, seed)
    X = W @ H
    return X.add_(0.1 * float(X.mean()) * torch.randn(X.shape, device=device)).clamp_min_(0.0)


def section_fits(ctx) -> dict:
    """Whole fits at each precision on the Triton backend, beside the torch backend; KL also with the Newton
    solver (torch operations on the GPU, precision does not apply), against the fused MU: is "auto" right to
    keep MU there?"""
    import warnings

    import fastnmf
    from fastnmf.backends import PRECISIONS

    m, n, k, max_iter = ctx.shapes.fits
    device = ctx.device
    X_fro = _lowrank(m, n, k, device)
    rate = _lowrank(m, n, k, device, seed=4)
    X_kl = torch.poisson(rate * (3.0 / float(rate.mean())))
    out = []
    cases = (("frobenius", X_fro, "hals"), ("frobenius", X_fro, "mu"), ("kullback-leibler", X_kl, "mu"),
             ("kullback-leibler", X_kl, "newton"))
    for loss, X, solver in cases:
        precisions = PRECISIONS if solver != "newton" else ("ieee",)
        for backend, precision in [("triton", p) for p in precisions] + [("torch", "auto")]:
            model = fastnmf.NMF(k, beta_loss=loss, solver=solver, init="random", random_state=0, max_iter=max_iter,
                                tol=1e-4, backend=backend, precision=precision)
            _sync(device)
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
                model.fit(X)
            _sync(device)
            out.append({"loss": loss, "solver": solver, "backend": backend, "precision": precision,
                        "n_iter": int(model.n_iter_), "seconds": time.perf_counter() - started,
                        "final_loss": float(model.loss_history_[-1]), "loss_history": [float(v) for v in model.loss_history_]})
    for row in out:  # each fit's final loss against the torch backend's (same start, same iteration rule)
        torch_row = next(r for r in out if r["backend"] == "torch" and r["loss"] == row["loss"] and r["solver"] == row["solver"])
        row["final_over_torch"] = row["final_loss"] / torch_row["final_loss"]
    return {"shape": [m, n], "k": k, "rows": out, "ok": all(math.isfinite(r["final_loss"]) for r in out)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def section_distributed(ctx) -> dict:
    """One rank of fastnmf.distributed (the Triton local step) against the single-process fit."""
    import torch.distributed as dist

    import fastnmf
    import fastnmf.distributed as fd
    from fastnmf.distributed.grid import release_groups

    m, n, k, max_iter = ctx.shapes.fits
    device = ctx.device
    X = _lowrank(m, n, k, device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1,
                            timeout=__import__("datetime").timedelta(seconds=60))
    try:
        options = dict(beta_loss="frobenius", solver="mu", tol=0.0, max_iter=max_iter, random_state=0, backend="triton")
        _sync(device)
        started = time.perf_counter()
        W_d, H_d, _ = fd.non_negative_factorization(X, k, grid=(1, 1), **options)
        _sync(device)
        seconds = time.perf_counter() - started
        W, H, _ = fastnmf.non_negative_factorization(X, n_components=k, init="random", **options)
        error = max(_relative_error(W_d, W), _relative_error(H_d, H))
        dist.barrier()
    finally:
        dist.destroy_process_group()
        release_groups()  # the grid cache would keep the destroyed groups alive
    return {"backend": backend, "shape": [m, n], "k": k, "iterations": max_iter, "seconds": seconds,
            "relative_difference_vs_single_process": error, "ok": error < 1e-5}


def section_ensemble(ctx) -> dict:
    """fit_ensemble batched against the same fits one by one (Frobenius MU)."""
    import warnings

    import fastnmf

    m, n, ranks, replicates, max_iter = ctx.shapes.ensemble
    device = ctx.device
    X = _lowrank(m, n, max(ranks), device)
    options = dict(beta_loss="frobenius", solver="mu", tol=1e-4, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _sync(device)
        started = time.perf_counter()
        ensemble = fastnmf.fit_ensemble(X, list(ranks), replicates, random_state=0, **options)
        _sync(device)
        batched_s = time.perf_counter() - started
        started = time.perf_counter()
        worst, same_n_iter = 0.0, True
        for k in ranks:
            for r in range(replicates):
                W, H, n_iter = fastnmf.non_negative_factorization(
                    X, n_components=k, init="random", random_state=fastnmf.replicate_seed(0, k, r), **options)
                same_n_iter &= n_iter == ensemble.n_iter(k, r)
                worst = max(worst, _relative_error(torch.as_tensor(ensemble.H(k, r)), H))
        _sync(device)
        alone_s = time.perf_counter() - started
    # KL batches (each problem its own reconstruction): one after another, bmm stacks per rank, or padded to
    # one rank (bench/ensemble_kl_layouts.py; on the 2-core CPU one after another won, 1.6× ahead of bmm).
    from . import ensemble_kl_layouts

    layouts = ensemble_kl_layouts.run(shape=(m, n), ks=tuple(ranks), replicates=replicates, iters=10, repeats=2,
                                      device=device, echo=False)
    kl_layouts = {r["layout"]: {"seconds": r["seconds"], "speed_vs_one_after_another": r["speed_vs_one_after_another"],
                                "max_relative_difference": r["max_relative_difference"]} for r in layouts}
    return {"shape": [m, n], "ranks": list(ranks), "replicates": replicates, "batched_s": batched_s,
            "one_by_one_s": alone_s, "speedup": alone_s / batched_s, "same_n_iter": bool(same_n_iter),
            "max_relative_difference_H": worst, "kl_layouts": kl_layouts,
            "ok": bool(same_n_iter) and worst < 1e-3 and all(v["max_relative_difference"] < 1e-3 for v in kl_layouts.values())}


def section_streamed(ctx) -> dict:
    """A host-resident X streamed to the device in chunks, against the in-memory fit."""
    import warnings

    import fastnmf

    m, n, k, chunk_rows, max_iter = ctx.shapes.streamed
    device = ctx.device
    X_host = _lowrank(m, n, k, torch.device("cpu"))
    options = dict(n_components=k, init="random", random_state=0, tol=0.0, max_iter=max_iter, solver="mu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _sync(device)
        started = time.perf_counter()
        W_s, H_s, _ = fastnmf.non_negative_factorization(X_host.numpy(), device=device, chunk_rows=chunk_rows, **options)
        _sync(device)
        streamed_s = time.perf_counter() - started
        X_device = X_host.to(device)
        started = time.perf_counter()
        W, H, _ = fastnmf.non_negative_factorization(X_device, **options)
        _sync(device)
        in_memory_s = time.perf_counter() - started
    error = _relative_error(torch.as_tensor(H_s).to(device), H)
    return {"shape": [m, n], "k": k, "chunk_rows": chunk_rows, "iterations": max_iter, "streamed_s": streamed_s,
            "in_memory_s": in_memory_s, "x_gb": m * n * 4 / 1e9,
            "streamed_gbps": m * n * 4 * (max_iter + 1) / streamed_s / 1e9,
            "relative_difference_H": error, "ok": error < 1e-3}


SECTIONS = {
    "tests": section_tests, "grid_limit": section_grid_limit, "bandwidth": section_bandwidth,
    "sparse_kl": section_sparse_kl, "hals_sweeps": section_hals_sweeps, "offsets": section_offsets,
    "fits": section_fits, "distributed": section_distributed, "ensemble": section_ensemble,
    "streamed": section_streamed, "interpreter_tests": section_interpreter_tests,
}


# --- driver -------------------------------------------------------------------------------------------

@dataclass
class _Context:
    device: torch.device
    shapes: Shapes
    root: str
    section_limit_s: float


def _markdown(report: dict) -> str:
    lines = [f"# GPU check — {report['device']}", "", f"{report['started_at']}, git {report.get('git_sha')}, "
             f"torch {report['versions'].get('torch')}, triton {report['versions'].get('triton')}, mode {report['mode']}.", "",
             "| section | status | seconds | key numbers |", "|---|---|---|---|"]
    for name, result in report["sections"].items():
        key = {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool)) and k not in ("status", "seconds", "output_tail", "error")}
        cells = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(key.items())[:8])
        lines.append(f"| {name} | {result.get('status')} | {result.get('seconds', 0):.1f} | {cells.replace('|', '/')} |")
    bandwidth = report["sections"].get("bandwidth", {})
    if bandwidth.get("rows"):
        lines += ["", f"Bandwidth at {bandwidth['shape'][0]}×{bandwidth['shape'][1]}; read probe (X.sum()) "
                  + ", ".join(f"{d} {v:.0f} GB/s" for d, v in bandwidth["read_probe_gbps"].items())
                  + "; matmul " + ", ".join(f"{p} {v:.1f} TFLOP/s" for p, v in bandwidth["matmul_tflops"].items()) + ".", "",
                  "| kernel | X | k | precision | ms | compile s | X GB/s | of read probe | of roofline |", "|---|---|---|---|---|---|---|---|---|"]
        for r in bandwidth["rows"]:
            lines.append(f"| {r['kernel']} | {r['x_dtype']} | {r['k']} | {r['precision']} | {r['ms']:.3f} | "
                         f"{r.get('compile_s', float('nan')):.2f} | {r['x_gbps']:.0f} | {r['fraction_of_read_probe']:.0%} | "
                         + (f"{r['fraction_of_roofline']:.0%}" if "fraction_of_roofline" in r else "—") + " |")
    return "\n".join(lines) + "\n"


def run(out_dir: str, *, tiny: bool = False, sections=None, budget_s: float = 300.0, device=None) -> dict:
    """Run the sections (all by default) and return the report; the files are rewritten after each one."""
    from .environment import describe

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = list(SECTIONS) if not sections else list(sections)
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise ValueError(f"Unknown section(s) {unknown}: choose from {list(SECTIONS)}.")
    os.makedirs(out_dir, exist_ok=True)
    environment = describe(device)
    report = {"device": environment["device"], "mode": "tiny" if tiny else "full", "started_at": environment["timestamp"],
              "git_sha": environment["git_sha"], "versions": environment["versions"],
              "triton_interpret": os.environ.get("TRITON_INTERPRET"), "budget_s": budget_s, "sections": {}}
    ctx = _Context(device=device, shapes=SHAPES["tiny" if tiny else "full"],
                   root=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), section_limit_s=max(30.0, budget_s / 2))
    started = time.perf_counter()
    for name in names:
        if time.perf_counter() - started > budget_s:
            report["sections"][name] = {"status": "skipped", "reason": f"past the {budget_s:g} s budget"}
        else:
            section_started = time.perf_counter()
            try:
                result = SECTIONS[name](ctx)
                result.setdefault("status", "ok" if result.get("ok", True) else "failed")
            except Exception as error:  # one failing section must not cost the others
                result = {"status": "error", "error": f"{type(error).__name__}: {error}",
                          "traceback": traceback.format_exc()[-3000:]}
            result["seconds"] = time.perf_counter() - section_started
            report["sections"][name] = result
            if device.type == "cuda":
                torch.cuda.empty_cache()
        with open(os.path.join(out_dir, "gpu_check.json"), "w") as file:
            json.dump(report, file, indent=1, default=str)
        with open(os.path.join(out_dir, "gpu_check.md"), "w") as file:
            file.write(_markdown(report))
        print(f"[gpu_check] {name}: {report['sections'][name]['status']} "
              f"({report['sections'][name].get('seconds', 0):.1f} s)", flush=True)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check_out", help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (the CPU rehearsal, under the interpreter)")
    parser.add_argument("--sections", help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--budget-s", type=float, default=300.0, help="no section starts after this (default 300)")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    args = parser.parse_args(argv)
    report = run(args.out, tiny=args.tiny, sections=args.sections.split(",") if args.sections else None,
                 budget_s=args.budget_s, device=args.device)
    print(_markdown(report))
    return 0 if all(s.get("status") in ("ok", "skipped") for s in report["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
