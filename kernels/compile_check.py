"""Compile a kernel for a GPU target without a GPU: the check that interpreted kernels are valid Triton.

The interpreter runs kernels as numpy and misses what only the compiler enforces (tl.dot's minimum
sizes, layouts, loop-carried types, constexpr scoping). ``triton.compile`` lowers a kernel all the way to
a cubin for sm_90 (H100) on any Linux machine: the ptxas bundled with Triton needs no driver. The
resulting registers, spill stack and shared memory are what the GPU configs (``configs.py``) were chosen by.

Needs the kernels to be JIT functions, i.e. ``TRITON_INTERPRET`` unset when ``fastnmf.kernels`` is
imported; the tests call :func:`main` in a subprocess for that reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass

__all__ = ["CompileReport", "compile_for_gpu", "representative_variants", "main"]

H100 = ("cuda", 90, 32)  # backend, compute capability, warp size


@dataclass(frozen=True)
class CompileReport:
    name: str
    registers: int | None  # per thread; None when cuobjdump is unavailable
    spill_bytes: int | None  # local-memory stack per thread: > 0 means register spills
    shared_bytes: int


def compile_for_gpu(name, kernel, pointers, floats, constexprs, *, num_warps, num_stages, target=H100):
    """Compile ``kernel`` to a cubin for ``target``; arguments not named in ``pointers`` (name → "*fp32"…),
    ``floats`` or ``constexprs`` are int32 scalars. Returns a :class:`CompileReport`."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = {}
    for arg in kernel.arg_names:
        if arg in constexprs:
            signature[arg] = "constexpr"
        elif arg in pointers:
            signature[arg] = pointers[arg]
        else:
            signature[arg] = "fp32" if arg in floats else "i32"
    compiled = triton.compile(
        ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
        target=GPUTarget(*target),
        options={"num_warps": num_warps, "num_stages": num_stages},
    )
    registers = spill = None
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if os.path.exists(tool):
        path = f"/tmp/fastnmf_compile_check_{os.getpid()}.cubin"
        with open(path, "wb") as handle:
            handle.write(compiled.asm["cubin"])
        usage = subprocess.run([tool, "--dump-resource-usage", path], capture_output=True, text=True).stdout
        os.unlink(path)
        found = re.search(r"REG:(\d+) STACK:(\d+)", usage)
        if found:
            registers, spill = int(found.group(1)), int(found.group(2))
    return CompileReport(name, registers, spill, compiled.metadata.shared)


def representative_variants():
    """(name, kernel, pointers, floats, constexprs, num_warps, num_stages) for a spread of the variants
    the launchers produce on a GPU: every kernel, every precision, split on and off, all X dtypes."""
    from . import configs, gemm, hals, mu_beta, mu_finalize, mu_frobenius, mu_sparse_kl, objective

    factors = {"W": "*fp32", "H": "*fp32", "OUT": "*fp32", "NUM_WS": "*fp32", "DEN_WS": "*fp32"}
    variants = []
    for precision, k_pad, x_type, split in (("ieee", 32, "*fp32", False), ("tf32", 64, "*fp16", True)):
        tiles = configs.frobenius_tiles(k_pad, precision)
        variants.append((
            f"frobenius {precision} k={k_pad} X={x_type[1:]} split={split}", mu_frobenius._mu_frobenius_h_kernel,
            {"X": x_type, "G": "*fp32", **factors}, {"l1", "l2", "tiny", "phi"},
            dict(BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, BLOCK_K=tiles.block_k, SPLIT_M=split,
                 PRECISION=precision),
            tiles.num_warps, tiles.num_stages,
        ))
    for precision, k_pad, case, floor, x_type, split in (
        ("ieee", 16, 1, True, "*fp32", False),
        ("tf32", 64, 3, True, "*bf16", True),
        ("tf32x3", 32, 0, True, "*fp16", False),
        ("tf32", 16, 3, False, "*fp32", False),
    ):
        tiles = configs.beta_tiles(k_pad, precision)
        variants.append((
            f"beta case={case} {precision} k={k_pad} X={x_type[1:]} split={split}", mu_beta._mu_beta_h_kernel,
            {"X": x_type, "COLSUM": "*fp32", **factors}, {"beta", "eps_r", "gamma", "l1", "l2", "tiny", "phi"},
            dict(BETA_CASE=case, FLOOR_R=floor, HAS_GAMMA=case in (0, 3), BLOCK_M=tiles.block_m,
                 BLOCK_N=tiles.block_n, BLOCK_K=tiles.block_k, SPLIT_M=split, PRECISION=precision),
            tiles.num_warps, tiles.num_stages,
        ))
    for precision, case, x_type in (("ieee", 1, "*fp32"), ("tf32", 3, "*fp16")):
        tiles = configs.objective_tiles(32, precision)
        variants.append((
            f"objective case={case} {precision} X={x_type[1:]}", objective._beta_divergence_kernel,
            {"X": x_type, "W": "*fp32", "H": "*fp32", "PARTIAL": "*fp64"}, {"beta", "eps_r"},
            dict(BETA_CASE=case, FLOOR_R=True, BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n,
                 BLOCK_K=tiles.block_k, PRECISION=precision),
            tiles.num_warps, tiles.num_stages,
        ))
    for precision, k_pad, x_type in (("ieee", 32, "*fp32"), ("tf32", 64, "*fp16"), ("tf32x3", 16, "*bf16")):
        tiles = configs.frobenius_tiles(k_pad, precision)
        variants.append((
            f"matmul_tn {precision} k={k_pad} X={x_type[1:]}", gemm._matmul_tn_kernel,
            {"W": "*fp32", "X": x_type, "OUT": "*fp32"}, set(),
            dict(BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, BLOCK_K=tiles.block_k, PRECISION=precision),
            tiles.num_warps, tiles.num_stages,
        ))
    for k_pad, early_stop in ((16, True), (32, True), (64, True), (128, False), (256, True), (512, True)):
        tiles = configs.hals_tiles(k_pad)
        variants.append((
            f"hals sweep k={k_pad} early_stop={early_stop}", hals._hals_sweep_kernel,
            {"H": "*fp32", "A": "*fp32", "B": "*fp32", "STEPS": "*fp32", "OUT": "*fp32", "SWEEPS": "*i32"},
            {"l1", "phi", "delta_sq"},
            dict(EARLY_STOP=early_stop, BLOCK_N=tiles.block_n, BLOCK_K=tiles.block_k),
            tiles.num_warps, 1,
        ))
    # The sparse KL kernel: small and large ranks, short and long columns, every value dtype, and int32
    # indices (SparseMatrix builds int64; a CSR from elsewhere may hold int32).
    for k_pad, mean_nnz, x_type, index_type in (
        (4, 1000, "*fp32", "*i64"), (16, 64, "*fp32", "*i64"), (64, 1000, "*fp16", "*i64"),
        (128, 8, "*bf16", "*i32"), (512, 1000, "*fp32", "*i64"),
    ):
        tiles = configs.sparse_kl_tiles(k_pad, mean_nnz)
        variants.append((
            f"sparse kl k={k_pad} block_nnz={tiles.block_nnz} block_cols={tiles.block_cols} X={x_type[1:]} "
            f"index={index_type[1:]}",
            mu_sparse_kl._mu_sparse_kl_h_kernel,
            {"COL_PTR": index_type, "ROW_IDX": index_type, "VALUES": x_type, "W": "*fp32", "H": "*fp32",
             "COLSUM": "*fp32", "OUT": "*fp32"},
            {"eps_r", "l1", "l2", "tiny", "phi"},
            dict(BLOCK_COLS=tiles.block_cols, BLOCK_NNZ=tiles.block_nnz, BLOCK_K=tiles.block_k),
            tiles.num_warps, 1,
        ))
    variants.append((
        "finalize", mu_finalize._mu_finalize_kernel,
        {"NUM": "*fp32", "DEN": "*fp32", "H": "*fp32", "OUT": "*fp32"}, {"gamma", "l1", "l2", "tiny", "phi"},
        dict(HAS_GAMMA=True, BLOCK_K=64, BLOCK_N=64), 8, 1,
    ))
    return variants


def main() -> int:
    """Compile :func:`representative_variants` for sm_90 and print one JSON report per line."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("compile_check needs TRITON_INTERPRET unset", file=sys.stderr)
        return 2
    for name, kernel, pointers, floats, constexprs, warps, stages in representative_variants():
        report = compile_for_gpu(name, kernel, pointers, floats, constexprs, num_warps=warps, num_stages=stages)
        print(json.dumps(asdict(report)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
