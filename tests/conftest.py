"""Test setup: the Triton interpreter on machines without CUDA, seeds, and NaN-poisoned launcher outputs."""

import os

import torch

# The interpreter flag is read when @triton.jit decorates, i.e. when fastnmf.kernels is imported: it
# must be set before anything imports fastnmf (DESIGN.md §3).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Outputs allocated by the kernel launchers are filled with NaN, so an unwritten tile fails a test.
os.environ.setdefault("FASTNMF_POISON_OUTPUTS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", "cuda"] if HAS_CUDA else ["cpu"]


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (the Triton interpreter computes bf16/tf32 wrongly)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
