"""Every kernel compiles for an H100 (sm_90) with the GPU configs, without spilling registers.

The interpreter cannot see what only the compiler enforces, so this runs ``fastnmf.kernels.compile_check``
in a subprocess with the interpreter off: triton.compile lowers each variant to a cubin with the ptxas
bundled in the Triton wheel, no GPU or driver needed.
"""

import json
import os
import subprocess
import sys

import pytest

# Subprocesses compile kernel variants to sm_90 cubins: 3–13 s for compile_check's 23, ~1–2 min for the
# compile report at one rank on 2 cores (Triton caches them).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reports():
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when it is unset
    done = subprocess.run(
        [sys.executable, "-m", "fastnmf.kernels.compile_check"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_every_representative_variant_compiles_for_sm90(reports):
    from fastnmf.kernels.compile_check import representative_variants

    assert [report["name"] for report in reports] == [variant[0] for variant in representative_variants()]
    # The largest tile configs stay inside the H100's 227 KB of shared memory per block.
    assert all(report["shared_bytes"] <= 227 * 1024 for report in reports), reports


def test_gpu_configs_do_not_spill_registers_as_launched(tmp_path):
    # What a launch compiles (Triton's binder on the launchers' real arguments, kernels.compile_report), at
    # rank 32 — where spills showed up — for every precision, fp32 and fp16 X, H and W layouts. (compile_check's
    # hand-made "i32" signatures are not what runs: they spill where the real specialization does not.)
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    out = tmp_path / "report.jsonl"
    done = subprocess.run([sys.executable, "-m", "fastnmf.kernels.compile_report", "--ranks", "32", "--no-sparse",
                           "--out", str(tmp_path / "report.md"), "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 1), done.stderr[-4000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) > 20
    measured = [row for row in rows if row["spill_bytes"] is not None]
    if not measured:
        pytest.skip("cuobjdump is not bundled with this Triton")
    spilling = {row["launches"][0]: row["spill_bytes"] for row in measured if row["spill_bytes"] > 0}
    assert not spilling, f"register spills (bytes per thread): {spilling}"
    assert done.returncode == 0


def test_the_compile_report_specializes_like_a_launch():
    # Triton's binder on the launchers' real arguments: unit strides become constexpr 1 and sizes divisible
    # by 16 get the divisibility attribute — what compile_check's hand-made "i32" signatures missed.
    code = (
        "import json, torch\n"
        "from fastnmf.kernels import compile_report as r\n"
        "launches = r.capture_launches(ranks=(16,), precisions=('ieee',), x_dtypes=(torch.float32,), sparse=False)\n"
        "from triton.backends.compiler import GPUTarget\n"
        "from triton.compiler import make_backend\n"
        "frob = next(l for l in launches if l['label'].startswith('frobenius H'))\n"
        "sig, constexprs, attrs, options, key = r._binder_specialization(frob['kernel'], frob['args'], "
        "dict(frob['kwargs']), make_backend(GPUTarget(*r.SM90)))\n"
        "names = list(sig)\n"
        "rows = r.report([frob])\n"
        "print(json.dumps({'stride_xn': sig['stride_xn'], 'stride_xm': sig['stride_xm'], 'labels': sorted({l['label'].split()[0] for l in launches}),"
        " 'divisible': [names[path[0]] for path in attrs], 'registers': rows[0]['registers'], 'fma': rows[0]['fma_f32']}))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["stride_xn"] == "constexpr"  # X row-major: unit column stride, specialized away
    assert result["stride_xm"] != "constexpr" and "stride_xm" in result["divisible"]  # 20000 = 16 · 1250
    assert {"frobenius", "beta=1", "matmul_tn", "objective", "hals"} <= set(result["labels"])
    assert result["fma"] > 0  # ieee: scalar fp32 FMAs, no tensor cores
    if result["registers"] is not None:
        assert 0 < result["registers"] <= 255
