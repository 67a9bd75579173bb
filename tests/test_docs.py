"""The API reference builds (``make docs``: Sphinx with autodoc, numpydoc and the docs/*.md pages) with
warnings as errors, and documents the public entry points."""

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.slow
def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")  # in the test extra: CI builds it
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    functions = (tmp_path / "api" / "functions.html").read_text()
    assert "fastnmf.non_negative_factorization" in functions and "fastnmf.tl.nmf" in functions
    assert "fastnmf.distributed.non_negative_factorization" in (tmp_path / "api" / "distributed.html").read_text()
    assert (tmp_path / "streaming.html").exists()  # the docs/ pages are part of it
