"""python -m fastnmf: the demo and the fit command."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from low_rank import low_rank_counts
import fastnmf
from fastnmf.cli import main


@pytest.mark.slow  # a whole demo fit and two plots
def test_demo_prints_the_loss_and_writes_two_pngs(tmp_path, capsys):
    assert main(["demo", "--max-iter", "30", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits 1797×64, k=16" in out and "objective" in out and "ms/iteration" in out
    for name in ("components.png", "loss.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_command_writes_factors(tmp_path):
    X = np.random.RandomState(0).rand(20, 8)
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "f.npz"
    assert main(["fit", str(tmp_path / "x.npy"), "-k", "3", "--max-iter", "10", "--out", str(out)]) == 0
    with np.load(out) as factors:
        assert factors["W"].shape == (20, 3) and factors["H"].shape == (3, 8)


def test_fit_command_runs_the_newton_solver(tmp_path):
    X = np.random.RandomState(0).poisson(3.0, (20, 8)).astype(np.float64)
    np.save(tmp_path / "x.npy", X)
    expected = fastnmf.non_negative_factorization(X, n_components=3, init="random", random_state=0, max_iter=10,
                                                  tol=0.0, beta_loss="kullback-leibler", solver="newton")[1]
    out = tmp_path / "f.npz"
    assert main(["fit", str(tmp_path / "x.npy"), "-k", "3", "--max-iter", "10", "--tol", "0", "--init", "random",
                 "--seed", "0", "--beta-loss", "kullback-leibler", "--solver", "newton", "--out", str(out)]) == 0
    with np.load(out) as factors:
        np.testing.assert_allclose(factors["H"], expected, rtol=1e-12)


def test_fit_command_passes_the_precision(tmp_path):
    X = np.random.RandomState(0).poisson(3.0, (20, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    outputs = {}
    for precision in ("auto", "bf16"):
        out = tmp_path / f"{precision}.npz"
        assert main(["fit", str(tmp_path / "x.npy"), "-k", "3", "--max-iter", "30", "--beta-loss", "kullback-leibler",
                     "--init", "random", "--solver", "mu", "--precision", precision, "--out", str(out)]) == 0
        with np.load(out) as factors:
            outputs[precision] = factors["H"]
    assert not np.array_equal(outputs["auto"], outputs["bf16"])  # bfloat16 products round differently
    np.testing.assert_allclose(outputs["bf16"], outputs["auto"], rtol=0.1, atol=1e-3)


def test_bad_data_is_a_clean_error(tmp_path, capsys):
    np.save(tmp_path / "neg.npy", -np.ones((3, 3)))
    assert main(["fit", str(tmp_path / "neg.npy"), "-k", "1"]) == 2
    assert "Negative values in data passed to NMF" in capsys.readouterr().err


@pytest.mark.slow  # a subprocess or a whole benchmark run: seconds on 2 cores
def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "fastnmf", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in result.stdout and "fit" in result.stdout


def counts(shape=(30, 12), seed=0):
    return low_rank_counts(shape, 3, seed)


FIT = ["-k", "3", "--max-iter", "15", "--init", "random", "--seed", "0", "--beta-loss", "kullback-leibler"]


def api_factors(X):
    import fastnmf

    model = fastnmf.NMF(3, init="random", random_state=0, max_iter=15, beta_loss="kullback-leibler")
    return model.fit_transform(X), model.components_


def write_10x(folder, X):
    import scipy.io
    import scipy.sparse as sp

    folder.mkdir()
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(X.T))  # genes × cells, as 10x writes it
    (folder / "features.tsv").write_text("".join(f"ENSG{j}\tgene{j}\tGene Expression\n" for j in range(X.shape[1])))
    (folder / "barcodes.tsv").write_text("".join(f"cell{i}-1\n" for i in range(X.shape[0])))


@pytest.mark.parametrize("kind", ["npy", "npz", "sparse-npz", "mtx", "10x", "csv", "tsv"])
def test_fit_reads_every_format_like_the_python_api(tmp_path, kind, capsys):
    import json

    import scipy.io
    import scipy.sparse as sp

    X = counts()
    path = tmp_path / {"npy": "x.npy", "npz": "x.npz", "sparse-npz": "x.npz", "mtx": "x.mtx", "10x": "tenx",
                       "csv": "x.csv", "tsv": "x.tsv"}[kind]
    if kind == "npy":
        np.save(path, X)
    elif kind == "npz":
        np.savez(path, X=X)
    elif kind == "sparse-npz":
        sp.save_npz(path, sp.csr_matrix(X))
    elif kind == "mtx":
        scipy.io.mmwrite(path, sp.coo_matrix(X))
    elif kind == "10x":
        write_10x(path, X)
    else:
        np.savetxt(path, X, delimiter="," if kind == "csv" else "\t")
    out = tmp_path / "out.npz"
    assert main(["fit", str(path), *FIT, "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == [30, 12] and summary["n_iter"] == 15 and summary["output"] == str(out)
    W, H = api_factors(sp.csr_matrix(X) if kind in ("sparse-npz", "mtx", "10x") else X)
    with np.load(out, allow_pickle=False) as factors:
        np.testing.assert_allclose(factors["W"], W, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(factors["H"], H, rtol=1e-10, atol=1e-12)
        if kind == "10x":
            assert factors["row_names"][2] == "cell2-1" and factors["column_names"][3] == "gene3"


def test_fit_on_h5ad_writes_an_annotated_copy(tmp_path, capsys):
    anndata = pytest.importorskip("anndata")
    X = counts()
    path = tmp_path / "cells.h5ad"
    anndata.AnnData(X=X).write_h5ad(path)
    before = path.read_bytes()
    assert main(["fit", str(path), *FIT, "--out", str(tmp_path / "cells.nmf.h5ad")]) == 0
    assert path.read_bytes() == before  # the input is never written
    annotated = anndata.read_h5ad(tmp_path / "cells.nmf.h5ad")
    W, H = api_factors(X)
    np.testing.assert_allclose(annotated.obsm["X_nmf"], W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(annotated.varm["nmf_components"], H.T, rtol=1e-10, atol=1e-12)
    assert main(["fit", str(path), *FIT, "--out", str(path)]) == 2
    assert "never writes over its input" in capsys.readouterr().err


def test_malformed_files_are_clear_errors_with_a_non_zero_status(tmp_path, capsys):
    import scipy.io
    import scipy.sparse as sp

    truncated = tmp_path / "truncated.npy"
    np.save(truncated, counts())
    truncated.write_bytes(truncated.read_bytes()[:200])
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    negative = tmp_path / "negative.mtx"
    scipy.io.mmwrite(negative, sp.coo_matrix(-counts()))
    text = tmp_path / "text.csv"
    text.write_text("1,2,3\n4,five,6\n")
    expectations = {truncated: "truncated.npy", pickled: "Object arrays cannot be loaded",
                    negative: "Negative values", text: "text.csv: not a table of numbers"}
    for path, message in expectations.items():
        assert main(["fit", str(path), "-k", "2", "--max-iter", "3"]) == 2, path
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_version_flag(capsys):
    import fastnmf

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"fastnmf {fastnmf.__version__}"


def _ensemble_killed_after(data, out, fits, error_file):
    """Child process: the ensemble command, SIGKILLed by its own writer after ``fits`` fits are on disk."""
    import os
    import signal

    from fastnmf import workflow

    written = [0]

    def writer(path, result):
        workflow.write_fit(path, result)
        written[0] += 1
        if written[0] == fits:
            os.kill(os.getpid(), signal.SIGKILL)

    try:
        workflow.run_ensemble(data, [2, 3], 4, out, beta_loss="kullback-leibler", max_iter=100, writer=writer)
    except BaseException as error:  # noqa: BLE001
        Path(error_file).write_text(repr(error))


@pytest.mark.slow
def test_ensemble_killed_half_way_then_rerun_gives_the_uninterrupted_outputs(tmp_path):
    import multiprocessing

    X = counts((40, 15))
    data = tmp_path / "x.npy"
    np.save(data, X)
    arguments = ["--k", "2-3", "--replicates", "4", "--beta-loss", "kullback-leibler", "--max-iter", "100"]
    assert main(["ensemble", str(data), *arguments, "--out", str(tmp_path / "straight")]) == 0
    child = multiprocessing.get_context("spawn").Process(
        target=_ensemble_killed_after, args=(str(data), str(tmp_path / "resumed"), 4, str(tmp_path / "error")))
    child.start()
    child.join(120)
    assert child.exitcode == -9 and not (tmp_path / "error").exists()  # killed mid-run, by SIGKILL
    kept = {path.name: path.read_bytes() for path in (tmp_path / "resumed" / "fits").iterdir()}
    assert len(kept) == 4
    assert main(["ensemble", str(data), *arguments, "--out", str(tmp_path / "resumed")]) == 0
    for name, content in kept.items():  # finished fits are kept byte for byte
        assert (tmp_path / "resumed" / "fits" / name).read_bytes() == content
    for name in ("k2.spectra.tsv", "k3.usages.tsv", "k_selection.tsv"):
        straight = np.genfromtxt(tmp_path / "straight" / name, delimiter="\t", skip_header=1)[:, 1:]
        resumed = np.genfromtxt(tmp_path / "resumed" / name, delimiter="\t", skip_header=1)[:, 1:]
        np.testing.assert_allclose(resumed, straight, rtol=1e-6, atol=1e-9)
    assert (tmp_path / "resumed" / "k_selection.png").exists()
    assert main(["ensemble", str(data), "--k", "2-4", "--replicates", "4", "--out", str(tmp_path / "resumed")]) == 2


@pytest.mark.slow
def test_ensemble_records_a_precision_and_refuses_to_resume_without_it(tmp_path, capsys):
    data = tmp_path / "x.npy"
    np.save(data, counts((40, 15)))
    arguments = ["ensemble", str(data), "--k", "2-3", "--replicates", "2", "--beta-loss", "kullback-leibler",
                 "--max-iter", "30", "--out", str(tmp_path / "run")]
    assert main([*arguments, "--precision", "bf16"]) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["precision"] == "bf16"
    assert main(arguments) != 0  # the same folder with the default precision is another run
    assert "holds a run with other arguments" in capsys.readouterr().err
