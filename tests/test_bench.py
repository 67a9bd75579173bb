"""The benchmark harness (bench/): end to end on the tiny preset, its JSON schema and its table.

No test here asserts a time: benchmarks are not tests (docs/benchmarks.md). Only the structure of the output
and the harness's own arithmetic (shared loss, interpolation, flags) are checked.
"""

import json
import math
import sys

import numpy as np
import pytest
import torch

from bench import environment, metrics
from bench.__main__ import main
from bench.loss import SharedLoss
from bench.problems import ProblemData, build, preset
from bench.providers import plan
from bench.report import COLUMNS, markdown

PROVIDERS = "fastnmf-torch/mu,torch-naive,fastnmf-triton"
TOP_LEVEL = {
    "schema", "timestamp", "git_sha", "git_dirty_files", "device", "device_type", "versions", "problem",
    "limits", "provider", "status", "reason", "peak_memory_bytes", "peak_memory_method", "warmup_iters",
}
MEASURED = {
    "iterations", "timed_s", "chunks", "time_per_iter_s", "time_to_target_s", "final_loss", "final_over_best",
    "x_stream", "compute", "call_overhead_s", "flags", "trace", "speedup_vs_best_peer",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    out, table = folder / "results.jsonl", folder / "table.md"
    code = main(["--preset", "tiny", "--providers", PROVIDERS, "--out", str(out), "--table", str(table),
                 "--plot", str(folder), "--no-progress"])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return code, records, table.read_text(), folder


@pytest.mark.slow  # shares one whole tiny-preset benchmark run (seconds on 2 cores)
def test_tiny_preset_runs_end_to_end(tiny_run):
    code, records, _, folder = tiny_run
    assert code == 0
    measured = [r for r in records if r["status"] != "skipped"]
    dense = {s.name for s in preset("tiny") if s.densify}
    sparse = {s.name for s in preset("tiny") if not s.densify}
    assert dense and sparse
    assert {(r["problem"]["name"], r["provider"]["name"]) for r in measured} == {
        (p, name) for p in dense for name in ("fastnmf-torch/mu", "torch-naive/mu")
    } | {(p, "fastnmf-torch/mu") for p in sparse}
    assert all(r["status"] == "ok" for r in measured)
    assert (folder / "loss_vs_time.png").stat().st_size > 0
    assert (folder / "time_per_iter_vs_k.png").stat().st_size > 0


@pytest.mark.slow  # shares one whole tiny-preset benchmark run (seconds on 2 cores)
def test_sparse_problem_runs_fastnmf_on_csr_and_skips_dense_only_providers(tiny_run):
    _, records, table, _ = tiny_run
    sparse = [r for r in records if r["problem"]["name"].startswith("tiny-sparse")]
    ours = next(r for r in sparse if r["provider"]["name"] == "fastnmf-torch/mu")
    assert ours["provider"]["input_format"] == "csr"
    assert ours["x_stream"]["bytes_per_iter"] == 2 * ours["problem"]["nnz"] * (4 + 8) + 2 * (80 + 1) * 8
    naive = next(r for r in sparse if r["provider"]["name"].startswith("torch-naive"))
    assert naive["status"] == "skipped" and "takes dense X only" in naive["reason"]
    assert "fastnmf-torch/mu (csr)" in table


@pytest.mark.slow  # shares one whole tiny-preset benchmark run (seconds on 2 cores)
def test_fastnmf_is_timed_through_its_callback_and_others_per_call(tiny_run):
    _, records, _, _ = tiny_run
    for r in records:
        if r["status"] == "skipped":
            continue
        expected = "callback" if r["provider"]["family"] == "fastnmf-torch" else "one call per chunk"
        assert expected in r["provider"]["timing"]
        assert r["iterations"] == 12 and r["trace"][-1][1] == 12


def test_callback_driven_run_is_the_same_computation_as_one_plain_fit():
    """The chunks of a callback-timed fastnmf run add up to one uninterrupted fit from the shared start."""
    import fastnmf
    from bench.clock import make_memory_meter, make_timer
    from bench.providers import ours
    from bench.runner import ChunkClock, Run, Settings

    data = build(preset("tiny")[1], "cpu")
    run = Run(provider="fastnmf-torch/mu", family="fastnmf-torch", solver="mu", is_peer=False, device="cpu",
              status="ok", timing="one call, callback")
    clock = ChunkClock(run, SharedLoss(data), budget=1e9, max_iter=12, settings=Settings(),
                       timer=make_timer(torch.device("cpu")), meter=make_memory_meter(torch.device("cpu")))
    session = ours.TORCH.session(data, "mu", torch.device("cpu"))
    session.start(data.W0, data.H0)
    session.run_chunks(clock)
    assert sum(run.chunk_iters) == 12 and run.chunk_iters[0] == 1 and len(run.chunk_iters) > 2
    W, H, n_iter = fastnmf.non_negative_factorization(
        data.X, data.W0.clone(), data.H0.clone(), init="custom", solver="mu", beta_loss=1.0, tol=0.0,
        max_iter=12, backend="torch")
    assert n_iter == 12
    torch.testing.assert_close(session.factors()[0], W, rtol=0, atol=0)
    torch.testing.assert_close(session.factors()[1], H, rtol=0, atol=0)
    assert run.losses[-1] == pytest.approx(SharedLoss(data)(W, H), rel=1e-12)


@pytest.mark.slow  # shares one whole tiny-preset benchmark run (seconds on 2 cores)
def test_json_schema(tiny_run):
    _, records, _, _ = tiny_run
    for r in records:
        assert TOP_LEVEL <= r.keys()
        assert r["schema"] == "fastnmf-bench/1"
        assert set(r["cpu_flags"]) <= set(environment._CPU_FLAGS)
        assert {"torch", "triton", "scikit-learn", "torchnmf", "nmf-torch"} <= r["versions"].keys()
        assert {"read_x_gbps", "gemm_tflops_square", "read_gbps_large"} <= r["limits"].keys()
        if r["status"] == "skipped":
            assert r["reason"]
            continue
        assert r["status"] == "ok", r["reason"]
        assert MEASURED - {"speedup_vs_best_peer"} <= r.keys()
        peers_measured = any(o["provider"]["is_peer"] and o["status"] == "ok" for o in records
                             if o["problem"]["name"] == r["problem"]["name"])
        assert ("speedup_vs_best_peer" in r) == peers_measured
        assert r["iterations"] == r["problem"]["max_iter"] == 12  # the tiny preset's fixed count
        assert r["provider"]["same_start"] is True
        t = r["time_per_iter_s"]
        assert 0 < t["p20"] <= t["median"] <= t["p80"]
        assert set(r["time_to_target_s"]) == {"1.01", "1.001"}
        trace = r["trace"]
        assert len(trace) == r["chunks"] and trace[-1][1] == 12
        losses = [loss for _, _, loss in trace]
        assert all(math.isfinite(x) for x in losses)
        assert losses[-1] == pytest.approx(r["final_loss"])
        assert r["problem"]["best_loss"] <= r["final_loss"]
        assert set(r["flags"]) <= {"busy-machine"}  # MU never increases the loss; the machine may be shared
        if r["provider"]["input_format"] == "dense":
            assert r["x_stream"]["bytes_per_iter"] == 2 * r["problem"]["m"] * r["problem"]["n"] * 4
        assert r["compute"]["flops_per_iter"] > 0 and r["peak_memory_method"]
        assert r["foreign_cpu_cores"] is None or r["foreign_cpu_cores"] >= 0


@pytest.mark.slow  # shares one whole tiny-preset benchmark run (seconds on 2 cores)
def test_triton_provider_is_skipped_on_a_cpu(tiny_run):
    if torch.cuda.is_available():
        pytest.skip("on a GPU fastnmf-triton runs")
    _, records, table, _ = tiny_run
    skipped = [r for r in records if r["provider"]["name"] == "fastnmf-triton"]
    assert len(skipped) == len(preset("tiny"))
    assert all(r["status"] == "skipped" and "GPU" in r["reason"] for r in skipped)
    assert "| fastnmf-triton | skipped |" in table


@pytest.mark.slow  # shares one whole tiny-preset benchmark run (seconds on 2 cores)
def test_markdown_table(tiny_run):
    _, records, table, _ = tiny_run
    assert table.count("| " + " | ".join(COLUMNS) + " |") == len(preset("tiny"))
    for spec in preset("tiny"):
        assert f"### {spec.name}" in table
    rows = [line for line in table.splitlines() if line.startswith("| fastnmf-torch/mu ") or line.startswith("| torch-naive/mu ")]
    measured = [r for r in records if r["status"] != "skipped"]
    assert len(rows) == len(measured) == 2 * len([s for s in preset("tiny") if s.densify]) + 1
    assert all(row.count("|") == len(COLUMNS) + 1 for row in rows)


@pytest.mark.slow  # shares one whole tiny-preset benchmark run (seconds on 2 cores)
def test_saved_results_are_reported_again(tiny_run, capsys):
    _, _, table, folder = tiny_run
    capsys.readouterr()
    assert main(["--from", str(folder / "results.jsonl")]) == 0
    again = capsys.readouterr().out
    assert again.count("| " + " | ".join(COLUMNS) + " |") == table.count("| " + " | ".join(COLUMNS) + " |")


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    assert "--preset" in capsys.readouterr().out


def test_missing_peer_is_skipped_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchnmf", None)  # makes `import torchnmf.nmf` fail
    monkeypatch.setitem(sys.modules, "torchnmf.nmf", None)
    runnable, skipped = plan(preset("tiny")[0], torch.device("cpu"), ["torchnmf"])
    assert runnable == []
    assert [s.name for s in skipped] == ["torchnmf"] and "not installed" in skipped[0].reason


def test_solvers_follow_beta():
    runnable, _ = plan(preset("tiny")[1], torch.device("cpu"), ["sklearn", "nmf-torch"])  # KL
    assert {p.name for p in runnable} <= {"sklearn/mu", "nmf-torch/mu"}  # CD and HALS are β = 2 only


def _problem_data(X: np.ndarray, beta: float, sparse: bool, k: int = 3) -> ProblemData:
    import scipy.sparse as sp

    from bench.problems import ProblemSpec

    spec = ProblemSpec("test", "poisson", k, beta, shape=X.shape, densify=not sparse)
    W0, H0 = torch.ones(X.shape[0], k), torch.ones(k, X.shape[1])
    return ProblemData(spec=spec, X=None if sparse else torch.from_numpy(X),
                       X_sparse=sp.csr_matrix(X) if sparse else None, W0=W0, H0=H0, origin="test")


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("beta", [2.0, 1.0])
def test_shared_loss_matches_the_formula(beta, sparse):
    rng = np.random.default_rng(0)
    X = rng.poisson(1.0, size=(30, 20)).astype(np.float32)  # about a third zeros
    W = rng.random((30, 3)).astype(np.float32)
    H = rng.random((3, 20)).astype(np.float32)
    R = W.astype(np.float64) @ H.astype(np.float64)
    X64 = X.astype(np.float64)
    if beta == 2.0:
        expected = 0.5 * np.sum((X64 - R) ** 2)
    else:
        positive = X64 > 0
        expected = np.sum(X64[positive] * np.log(X64[positive] / R[positive])) - X64.sum() + R.sum()
    loss = SharedLoss(_problem_data(X, beta, sparse))
    assert loss(torch.from_numpy(W), torch.from_numpy(H)) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(loss(torch.full((30, 3), float("nan")), torch.from_numpy(H)))


def test_time_to_target_interpolates_in_log_loss():
    # loss 100 at t=0, 10 at t=1, 1 at t=2: 1.01× of 1 lies just before t=2
    assert metrics._time_to(10.0, [1.0, 2.0], [10.0, 1.0], 100.0) == pytest.approx(1.0)
    assert metrics._time_to(math.sqrt(10.0), [1.0, 2.0], [10.0, 1.0], 100.0) == pytest.approx(1.5)
    assert metrics._time_to(0.5, [1.0, 2.0], [10.0, 1.0], 100.0) is None
    assert metrics._time_to(1.0, [1.0, 2.0], [math.nan, 1.0], 100.0) is None


def test_flags_and_quantiles():
    assert metrics._flags([3.0, 2.0, 1.0], 4.0) == ([], 0.0)
    flags, rise = metrics._flags([3.0, 3.3, 1.0], 4.0)
    assert flags == ["loss-increased"] and rise == pytest.approx(0.1)
    assert metrics._flags([3.0, math.nan], 4.0)[0] == ["nan"]
    # one chunk of 8 iterations at 1 s/it outweighs two single iterations at 5 s/it
    assert metrics._weighted_quantiles([5.0, 1.0, 5.0], [1, 8, 1], (0.2, 0.5, 0.8)) == [1.0, 1.0, 1.0]


@pytest.mark.slow  # shares one whole tiny-preset benchmark run (seconds on 2 cores)
def test_flags_reach_the_table(tiny_run):
    _, records, _, _ = tiny_run
    record = json.loads(json.dumps(next(r for r in records if r["status"] == "ok")))
    record["flags"] = ["nan"]
    assert "| nan |" in markdown([record])


def test_precision_emulation_matches_what_the_dot_precisions_compute():
    from bench.precision import emulated_matmul, emulated_products, round_to_tf32
    from fastnmf.layouts import dense

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(60, 40, generator=g), torch.rand(40, 30, generator=g)
    exact = a.double() @ b.double()
    error = {mode: float((emulated_matmul(a, b, mode).double() - exact).abs().max() / exact.abs().max())
             for mode in ("ieee", "tf32", "tf32x3")}
    assert error["ieee"] < 1e-6 and error["tf32x3"] < 1e-6 and 1e-5 < error["tf32"] < 1e-3, error
    assert round_to_tf32(torch.tensor([3.14159265])).item() == 3.140625  # 10 mantissa bits
    before = dense.transposed_product
    with emulated_products("tf32"):
        assert dense.transposed_product is not before
    assert dense.transposed_product is before


@pytest.mark.slow
def test_distributed_benchmark_counts_the_formula(tmp_path):
    """``python -m bench --distributed 2`` on a tiny X: one row per grid and case, payload as the formula says."""
    out = tmp_path / "distributed.jsonl"
    assert main(["--distributed", "2", "--shape", "60", "40", "3", "--out", str(out), "--table", str(tmp_path / "d.md")]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(tuple(r["grid"]), r["case"]) for r in records] == [
        (grid, case) for grid in ((1, 1), (2, 1)) for case in ("frobenius-mu", "frobenius-hals", "kl-mu")]
    for record in records:
        payload = record["payload_bytes_per_iter"]
        assert payload["all_gather"] + payload["reduce_scatter"] == record["expected_bytes_per_iter"]
        assert math.isfinite(record["ms_per_iter"]) and math.isfinite(record["single_process_ms_per_iter"])
    assert "| 2×1 | 2 | kl-mu |" in (tmp_path / "d.md").read_text()


@pytest.mark.slow
def test_ensemble_benchmark_compares_every_row_with_its_single_fits(tmp_path):
    """``python -m bench --ensemble`` at a tiny size: Frobenius MU, HALS and KL MU rows, each batch against
    the same fits one by one and scikit-learn's (its coordinate descent beside HALS), losses comparable."""
    from bench import ensemble

    out, table = tmp_path / "ensemble.jsonl", tmp_path / "ensemble.md"
    records = ensemble.run(shape=(120, 40), ks=(2, 3), replicates=4, max_iter=40, out=str(out), table=str(table),
                           repeats=1)
    assert [(r["beta"], r["solver"], r["sklearn_solver"]) for r in records] == list(ensemble.ROWS)
    assert all(r["precision"] == "auto" for r in records)
    for record in records:
        assert record["fits"] == 8 and 1 <= record["mean_n_iter"] <= 40
        assert 0.5 < record["loss_vs_sklearn"] < 2.0
        assert min(record["batched_s"], record["sequential_s"], record["sklearn_s"]) > 0
    assert len(out.read_text().splitlines()) == 3
    assert "| 2 | hals (cd) | 120×40 float32 | 2–3 | 4 | 8 |" in table.read_text()
    assert records[0]["stacked_bytes"] == 4 * (4 * 5 * 160 + 2 * 4 * 5 * 120 + 120 * 40)
    assert records[2]["stacked_bytes"] is None  # KL: no stacks


def test_kl_layout_benchmark_runs_the_same_updates_three_ways(tmp_path):
    """``python -m bench --ensemble-kl-layouts`` at a tiny size: the three layouts agree (the padded
    components stay zero) and every record has its timing."""
    from bench import ensemble_kl_layouts

    out, table = tmp_path / "kl.jsonl", tmp_path / "kl.md"
    records = ensemble_kl_layouts.run(shape=(40, 30), ks=(2, 4), replicates=3, iters=5, repeats=1, out=str(out),
                                      table=str(table))
    assert [r["layout"] for r in records] == list(ensemble_kl_layouts.LAYOUTS)
    assert all(r["max_relative_difference"] < 1e-5 and r["seconds"] > 0 for r in records)
    assert records[0]["speed_vs_one_after_another"] == 1.0
    assert len(out.read_text().splitlines()) == 3 and "| bmm padded |" in table.read_text()
    # Six more iterations from the same starts move the factors: the layouts are not compared at the start.
    X, starts = ensemble_kl_layouts._problems((40, 30), (2,), 1)
    moved = ensemble_kl_layouts.one_after_another(X, starts, 6)[2, 0]
    assert float((moved - starts[2][0][0]).abs().max()) > 1e-3


def test_kl_solver_candidates_decrease_the_loss_and_dna_is_never_worse_than_mu_per_column():
    """``python -m bench.kl_solvers`` at a tiny size: every candidate lowers KL, and each column of a DNA
    half-update is at most MU's (it keeps the better of the two per column)."""
    import torch

    from bench import kl_solvers

    g = torch.Generator().manual_seed(0)
    X = torch.poisson(torch.rand(40, 3, generator=g) @ torch.rand(3, 30, generator=g) * 5)
    W0, H0 = torch.rand(40, 3, generator=g) + 0.1, torch.rand(3, 30, generator=g) + 0.1
    start = kl_solvers._kl(X, W0, H0)
    records = kl_solvers.run(seconds=0.05, check_every=2, data=(X, W0, H0, 0.5 * start))
    assert [r["solver"] for r in records] == list(kl_solvers.SOLVERS)
    assert all(0 < r["final_over_reference"] < 2.0 and r["iterations"] >= 2 for r in records)
    colsum = W0.sum(0)[:, None]
    mu = kl_solvers._column_objective(X, W0, kl_solvers.mu_update(X, W0, H0), colsum)
    dna = kl_solvers._column_objective(X, W0, kl_solvers.dna_update(X, W0, H0), colsum)
    assert torch.all(dna <= mu + 1e-9 * mu.abs())
    assert torch.all(mu < kl_solvers._column_objective(X, W0, H0, colsum))
