"""The compile report: the kernel variants the launchers produce at the GPU preset's shapes, compiled for
sm_90 exactly as a launch would specialize them, without a GPU.

``python -m fastnmf.kernels.compile_report [--out FILE.md] [--json FILE.jsonl]`` (``TRITON_INTERPRET``
unset). :mod:`compile_check` builds each signature by hand (every int "i32"), so unit strides are not
constexpr and 16-divisibility is not seen, and real register counts differed from it by up to 2×. Here
the public launchers run on real CPU tensors at the GPU configs (the configs' interpreter branch off, an
H100/H200's 132 SMs assumed; X is an uninitialized tensor of the full shape, never touched), each kernel
object is replaced by a recorder of the arguments it is launched with, and every distinct launch is
specialized by **Triton's own binder** (``create_function_from_signature`` and ``JITFunction._pack_args``,
what ``JITFunction.run`` does before it compiles) and compiled with ``triton.compile`` for sm_90. Per
variant: registers and spill stack (``cuobjdump --dump-resource-usage``, bundled with Triton), shared
memory, and the PTX instruction mix — scalar ``fma.rn.f32`` against tensor-core ``mma``/``wgmma``, and
the vector width of the global loads (``ld.global.v4``/``.v2``/scalar, ``cp.async``).

The binder and ``_pack_args`` are Triton internals (checked on 3.9): a Triton that lacks them fails here
with the missing name, not silently.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from unittest import mock

import torch

__all__ = ["capture_launches", "compile_launch", "instruction_mix", "main"]

SM90 = ("cuda", 90, 32)  # backend, compute capability, warp size
# The GPU preset's dense shape; the sparse one (10⁶ × 10⁵, 1.1·10⁷ stored entries) by its density.
DENSE_SHAPE = (50000, 20000)
SPARSE_SHAPE = (1_000_000, 100_000, 11_000_000)
RANKS = (16, 32, 64, 128, 256)

_KERNELS = (("gemm", "_matmul_tn_kernel"), ("mu_frobenius", "_mu_frobenius_h_kernel"), ("mu_beta", "_mu_beta_h_kernel"),
            ("mu_finalize", "_mu_finalize_kernel"), ("hals", "_hals_sweep_kernel"),
            ("objective", "_beta_divergence_kernel"), ("mu_sparse_kl", "_mu_sparse_kl_h_kernel"))


class _Recorder:
    """Stands in for a JIT kernel: ``kernel[grid](*args, **kwargs)`` records the launch instead of running."""

    def __init__(self, kernel, label, launches):
        self.kernel, self.label, self.launches = kernel, label, launches

    def __getitem__(self, grid):
        def record(*args, **kwargs):
            self.launches.append({"label": self.label(), "kernel": self.kernel, "grid": tuple(grid),
                                  "args": args, "kwargs": kwargs})
        return record


def _dense_cases(ranks, precisions, x_dtypes):
    """(label, call) for every dense launcher, H and W updates, at the dense shape."""
    from . import MAX_HALS_RANK, factorization_divergence, hals_sweeps, matmul_tn, mu_beta_update_h, mu_frobenius_update_h
    from ..backends.triton_backend import MAX_FUSED_BETA_RANK

    m, n = DENSE_SHAPE
    cases = []
    for x_dtype in x_dtypes:
        X = torch.empty(m, n, dtype=x_dtype)  # the full shape and strides; its pages are never touched
        name = str(x_dtype).replace("torch.", "")
        for k in ranks:
            W, H = torch.rand(m, k), torch.rand(k, n)
            for precision in precisions:
                tag = f"X={name} k={k} {precision}"
                for side, (A, B, C) in (("H", (X, W, H)), ("W", (X.T, H.T, W.T))):
                    cases.append((f"frobenius {side} {tag}", lambda A=A, B=B, C=C, p=precision:
                                  mu_frobenius_update_h(A, B, C, precision=p)))
                    if k <= MAX_FUSED_BETA_RANK:  # the dispatch's cap (triton_backend)
                        for beta in (1.0, 0.0, 1.5):
                            cases.append((f"beta={beta:g} {side} {tag}", lambda A=A, B=B, C=C, p=precision, b=beta:
                                          mu_beta_update_h(A, B, C, beta=b, eps_r=1e-6, precision=p)))
                    cases.append((f"matmul_tn {side} {tag}", lambda A=A, B=B, p=precision: matmul_tn(B, A, precision=p)))
                cases.append((f"objective {tag}", lambda W=W, H=H, p=precision:
                              factorization_divergence(X, W, H, beta=1.0, eps_r=1e-6, precision=p)))
            if k <= MAX_HALS_RANK and x_dtype == torch.float32:
                for side, target in (("H", H), ("W", W.T)):
                    kk, cols = target.shape
                    cases.append((f"hals sweep {side} k={k}", lambda T=target, c=cols, kk=kk:
                                  hals_sweeps(T, torch.rand(kk, c), torch.eye(kk) + 0.1, max_sweeps=4)))
    return cases


def _sparse_cases(ranks):
    from . import mu_sparse_kl_update_h
    from ..layouts import SparseMatrix

    m, n, nnz = SPARSE_SHAPE
    g = torch.Generator().manual_seed(0)
    X = SparseMatrix.from_coo(torch.randint(0, m, (nnz,), generator=g), torch.randint(0, n, (nnz,), generator=g),
                              torch.ones(nnz), (m, n))
    cases = []
    for k in ranks:
        W, H = torch.rand(m, k), torch.rand(k, n)
        cases.append((f"sparse kl H k={k}", lambda W=W, H=H: mu_sparse_kl_update_h(X, W, H, eps_r=1e-6)))
        cases.append((f"sparse kl W k={k}", lambda W=W, H=H: mu_sparse_kl_update_h(X.T, H.T, W.T, eps_r=1e-6)))
    return cases


def capture_launches(ranks=RANKS, precisions=("ieee", "tf32", "tf32x3"), x_dtypes=(torch.float32, torch.float16),
                     sparse=True) -> list[dict]:
    """Run the launchers at the GPU configs with the kernels replaced by recorders; the recorded launches."""
    from . import configs, gemm, hals, launch, mu_beta, mu_finalize, mu_frobenius, mu_sparse_kl, objective

    modules = {"gemm": gemm, "mu_frobenius": mu_frobenius, "mu_beta": mu_beta, "mu_finalize": mu_finalize,
               "hals": hals, "objective": objective, "mu_sparse_kl": mu_sparse_kl}
    launches, current = [], {"label": ""}
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(configs, "interpreting", lambda: False))
        # The launchers' device checks accept CPU tensors (nothing runs: the kernels are recorders).
        for module in (launch, *modules.values()):
            if hasattr(module, "interpreting"):
                stack.enter_context(mock.patch.object(module, "interpreting", lambda: True))
        stack.enter_context(mock.patch.object(configs, "_sm_count", lambda index: 132))
        stack.enter_context(mock.patch.object(torch.cuda, "current_device", lambda: 0))
        for module_name, kernel_name in _KERNELS:
            module = modules[module_name]
            recorder = _Recorder(getattr(module, kernel_name), lambda: current["label"], launches)
            stack.enter_context(mock.patch.object(module, kernel_name, recorder))
        cases = _dense_cases(ranks, precisions, x_dtypes) + (_sparse_cases(ranks) if sparse else [])
        for label, call in cases:
            current["label"] = label
            call()
    return launches


def _binder_specialization(kernel, args, kwargs, backend):
    """What ``JITFunction.run`` computes before compiling: signature, constexprs, attrs, options."""
    from triton.runtime.jit import create_function_from_signature

    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound_args, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound_args, specialization, options)
    return signature, constexprs, attrs, options, (tuple(str(s) for s in specialization), str(options))


def compile_launch(launch: dict, target=SM90):
    """Compile one recorded launch as a real launch would; returns (specialization key, compiled kernel)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend

    target = GPUTarget(*target)
    backend = make_backend(target)
    signature, constexprs, attrs, options, key = _binder_specialization(launch["kernel"], launch["args"],
                                                                        dict(launch["kwargs"]), backend)
    compiled = triton.compile(ASTSource(fn=launch["kernel"], signature=signature, constexprs=constexprs, attrs=attrs),
                              target=target, options=options.__dict__)
    return key, compiled


def specialization_key(launch: dict, target=SM90) -> tuple:
    """The binder's key of a launch (cheap): launches with equal keys compile to the same variant."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    return _binder_specialization(launch["kernel"], launch["args"], dict(launch["kwargs"]),
                                  make_backend(GPUTarget(*target)))[4]


def instruction_mix(ptx: str) -> dict:
    """Counts of the PTX instructions that say how a kernel computes and loads."""
    patterns = {
        "fma_f32": r"\bfma\.rn\.f32\b", "mma": r"\bmma\.sync\b", "wgmma": r"\bwgmma\.mma_async\b",
        "ld_global_v4": r"\bld\.global(?:\.\w+)*\.v4\b", "ld_global_v2": r"\bld\.global(?:\.\w+)*\.v2\b",
        "cp_async": r"\bcp\.async(?:\.bulk)?\b",
    }
    counts = {name: len(re.findall(pattern, ptx)) for name, pattern in patterns.items()}
    all_global = len(re.findall(r"\bld\.global\b", ptx))
    counts["ld_global_scalar"] = all_global - counts["ld_global_v4"] - counts["ld_global_v2"]
    return counts


def _resources(cubin: bytes) -> tuple[int | None, int | None]:
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return None, None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as handle:
        handle.write(cubin)
        handle.flush()
        usage = subprocess.run([tool, "--dump-resource-usage", handle.name], capture_output=True, text=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+)", usage)
    return (int(found.group(1)), int(found.group(2))) if found else (None, None)


def report(launches: list[dict]) -> list[dict]:
    """One row per distinct compiled variant (launches with the same specialization share it)."""
    import triton

    from . import occupancy

    rows, seen = [], {}
    for launch in launches:
        name = launch["kernel"].fn.__name__
        full_key = (name, specialization_key(launch))
        if full_key in seen:
            seen[full_key]["launches"].append(launch["label"])
            continue
        _, compiled = compile_launch(launch)
        registers, spill = _resources(compiled.asm["cubin"])
        kwargs = launch["kwargs"]
        row = {"kernel": name, "launches": [launch["label"]], "registers": registers, "spill_bytes": spill,
               "shared_bytes": compiled.metadata.shared, "num_warps": kwargs.get("num_warps"),
               "num_stages": kwargs.get("num_stages"), "grid": list(launch["grid"]),
               "constexprs": {k: v for k, v in kwargs.items() if k.isupper()},
               "triton": triton.__version__, **instruction_mix(compiled.asm["ptx"])}
        row["blocks_per_sm"] = occupancy.blocks_per_sm(registers, row["num_warps"] or 4, row["shared_bytes"])
        seen[full_key] = row
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    import triton

    lines = [f"# Compile report: sm_90, Triton {triton.__version__}", "",
             "Every distinct variant the launchers produce at the GPU preset's shapes (dense 50000×20000, fp32 and fp16 X, "
             f"k ∈ {list(RANKS)}, each precision, H and W updates; sparse KL at 10⁶ × 10⁵ with 1.1·10⁷ entries), "
             "specialized by Triton's binder as a launch would be and compiled offline "
             "(`python -m fastnmf.kernels.compile_report`). PTX counts are static instruction counts.", "",
             "| kernel | first launch (of n) | warps/stages | regs | spill B | shared KB | blocks/SM | fma.f32 | mma | wgmma | ld.v4 | ld.v2 | ld scalar | cp.async |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kernel']} | {r['launches'][0]} ({len(r['launches'])}) | {r['num_warps']}/{r['num_stages']} | "
                     f"{r['registers']} | {r['spill_bytes']} | {r['shared_bytes'] / 1024:.1f} | {r['blocks_per_sm']} | {r['fma_f32']} | {r['mma']} | "
                     f"{r['wgmma']} | {r['ld_global_v4']} | {r['ld_global_v2']} | {r['ld_global_scalar']} | {r['cp_async']} |")
    spilling = [r for r in rows if r["spill_bytes"]]
    single = [r for r in rows if r["blocks_per_sm"] == 1]
    lines += ["", "blocks/SM: resident blocks per SM from registers, warps and shared memory (sm_90 limits); "
              f"{len(single)} of {len(rows)} variants fit one block per SM (no second block to hide its latency).",
              "", f"{len(rows)} variants; spilling: {len(spilling)}" + (
        " — " + "; ".join(f"{r['kernel']} {r['launches'][0]}: {r['spill_bytes']} B" for r in spilling) if spilling else "") + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("compile_report needs TRITON_INTERPRET unset", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m fastnmf.kernels.compile_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="markdown table to write (default: print it)")
    parser.add_argument("--json", help="one JSON object per variant to this file")
    parser.add_argument("--ranks", default=",".join(map(str, RANKS)), help="comma-separated ranks")
    parser.add_argument("--precisions", default="ieee,tf32,tf32x3", help="comma-separated dot precisions")
    parser.add_argument("--x-dtypes", default="float32,float16", help="comma-separated dtypes of X")
    parser.add_argument("--no-sparse", action="store_true", help="skip the sparse KL kernel")
    args = parser.parse_args(argv)
    launches = capture_launches(ranks=tuple(int(k) for k in args.ranks.split(",")),
                                precisions=tuple(args.precisions.split(",")),
                                x_dtypes=tuple(getattr(torch, name) for name in args.x_dtypes.split(",")),
                                sparse=not args.no_sparse)
    rows = report(launches)
    text = markdown(rows)
    if args.out:
        with open(args.out, "w") as file:
            file.write(text)
    else:
        print(text)
    if args.json:
        with open(args.json, "w") as file:
            for row in rows:
                file.write(json.dumps(row, default=str) + "\n")
    return 1 if any(r["spill_bytes"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
