"""The GPU validation script rehearsed at tiny shapes (on a CPU: the Triton interpreter): every section runs
and its correctness checks pass; its files are rewritten after each section and a budget skips the rest."""

import json
import math

import pytest
import torch

from bench import gpu_check


@pytest.mark.slow  # ≈ 40 s on 2 cores: every kernel variant of the table under the interpreter
@pytest.mark.interpreter
def test_every_section_runs_and_its_checks_pass(tmp_path):
    report = gpu_check.run(str(tmp_path), tiny=True, budget_s=600)
    sections = report["sections"]
    assert list(sections) == list(gpu_check.SECTIONS)
    for name, result in sections.items():
        expected = "skipped" if name in ("tests", "interpreter_tests") and not torch.cuda.is_available() else "ok"
        assert result["status"] == expected, (name, result.get("error"), result.get("traceback"))
    assert all(row["relative_error"] < 1e-4 for row in sections["grid_limit"]["launchers"].values())
    assert set(sections["grid_limit"]["launchers"]) == {"objective (β=1)", "mu_frobenius_update_h",
                                                        "mu_beta_update_h (β=1)", "matmul_tn", "hals_sweeps"}
    assert all(row["relative_error"] < 1e-4 for row in sections["offsets"]["launchers"].values())
    assert all(row["relative_error_vs_torch"] < 1e-4 for row in sections["sparse_kl"]["rows"])
    kernels = {(r["kernel"], r["precision"]) for r in sections["bandwidth"]["rows"]}
    assert ("frobenius W", "ieee") in kernels and ("kl H", "torch") in kernels and ("WᵀX (HALS)", "tf32x3") in kernels
    assert all(r["ms"] > 0 and math.isfinite(r["fraction_of_read_probe"]) for r in sections["bandwidth"]["rows"])
    # The interpreter ignores input_precision: every precision computes the same fit, and MU the torch
    # backend's (HALS sweeps as often as each backend's cost model allows, so its torch fit differs).
    fits = sections["fits"]["rows"]
    for row in fits:
        assert row["loss_history"][-1] < row["loss_history"][0], row
        if row["solver"] == "mu":
            assert abs(row["final_over_torch"] - 1.0) < 1e-4, row
    triton_hals = [row["final_loss"] for row in fits if row["solver"] == "hals" and row["backend"] == "triton"]
    assert len(triton_hals) == 3 and max(triton_hals) - min(triton_hals) <= 1e-5 * min(triton_hals)
    assert sections["distributed"]["relative_difference_vs_single_process"] < 1e-5
    assert sections["ensemble"]["same_n_iter"] and sections["streamed"]["relative_difference_H"] < 1e-3
    assert 1 <= sections["hals_sweeps"]["sweeps_per_block"]["max"] <= sections["hals_sweeps"]["max_sweeps_h"]
    on_disk = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(on_disk["sections"]) == list(sections)
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| kernel | X | k | precision |" in markdown and "| streamed | ok |" in markdown


@pytest.mark.interpreter
def test_files_are_written_after_each_section_and_a_spent_budget_skips_the_rest(tmp_path):
    report = gpu_check.run(str(tmp_path), tiny=True, sections=["offsets"], budget_s=600)
    assert report["sections"]["offsets"]["status"] == "ok"
    assert json.loads((tmp_path / "gpu_check.json").read_text())["sections"]["offsets"]["past_2_31"] is False
    spent = gpu_check.run(str(tmp_path / "spent"), tiny=True, sections=["offsets", "grid_limit"], budget_s=0)
    assert [s["status"] for s in spent["sections"].values()] == ["skipped", "skipped"]
    assert "past the 0 s budget" in spent["sections"]["grid_limit"]["reason"]


def test_unknown_sections_are_named():
    with pytest.raises(ValueError, match=r"Unknown section\(s\) \['bogus'\]"):
        gpu_check.run("/nonexistent-never-written", tiny=True, sections=["bogus"])
