"""The README's Python examples run (every ```python block, except those fenced ```python no-run: a GPU
process group, scanpy), in a folder with the files they read and the variables they name."""

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def namespace():
    rng = np.random.RandomState(0)
    X = rng.poisson(rng.gamma(0.5, 1.0, (60, 3)) @ rng.gamma(0.5, 1.0, (3, 40))).astype(np.float64) + 0.1
    W, H = torch.rand(60, 4, dtype=torch.float64), torch.rand(4, 40, dtype=torch.float64)
    import fastnmf

    return dict(fastnmf=fastnmf, np=np, torch=torch, X=X, X_csr=sp.csr_matrix(X), X_torch_sparse=torch.from_numpy(X).to_sparse(),
                M=rng.rand(60, 40), W=W, H=H, W_lags=torch.rand(3, 60, 4, dtype=torch.float64),
                A=torch.rand(5, 2, dtype=torch.float64), B=torch.rand(6, 2, dtype=torch.float64),
                C=torch.rand(7, 2, dtype=torch.float64), T=torch.rand(5, 6, 7, dtype=torch.float64) + 0.1)


def test_there_are_examples_to_run():
    assert len(BLOCKS) >= 4


@pytest.mark.slow  # the first example fits 500 iterations
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope = namespace()
    np.save("cells_by_genes.npy", scope["X"])  # the file the streaming example reads
    code = BLOCKS[index].replace('"2GB"', '"2kB"').replace("batch_size=4096", "batch_size=16")  # small data
    code = code.replace("fastnmf.NMF(30,", "fastnmf.NMF(3,").replace("fastnmf.MiniBatchNMF(30,", "fastnmf.MiniBatchNMF(3,")
    if "reference" in code:  # the autograd reference works on torch tensors
        scope["X"] = torch.from_numpy(scope["X"])
    exec(compile(code, f"README.md example {index + 1}", "exec"), scope)  # noqa: S102 — the README's own code
