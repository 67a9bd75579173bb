"""python -m fastnmf: the demo and the fit command."""

import subprocess
import sys

import numpy as np
import pytest

from fastnmf.cli import main


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


def test_bad_data_is_a_clean_error(tmp_path, capsys):
    np.save(tmp_path / "neg.npy", -np.ones((3, 3)))
    assert main(["fit", str(tmp_path / "neg.npy"), "-k", "1"]) == 2
    assert "Negative values in data passed to NMF" in capsys.readouterr().err


@pytest.mark.slow  # a subprocess or a whole benchmark run: seconds on 2 cores
def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "fastnmf", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in result.stdout and "fit" in result.stdout
