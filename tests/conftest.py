"""Test setup: the Triton interpreter on machines without CUDA, seeds, and NaN-poisoned launcher outputs."""

import importlib.util
import os

import torch

# The interpreter flag is read when @triton.jit decorates, i.e. when fastnmf.kernels is imported: it
# must be set before anything imports fastnmf (docs/kernels.md, section "The Triton interpreter").
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

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


def poison(tensor: torch.Tensor) -> torch.Tensor:
    """Fill a freshly allocated kernel output: NaN for floating point, −1 for integers (the HALS sweep
    counts), values no kernel writes, so that an entry a kernel forgets to write fails the test."""
    return tensor.fill_(float("nan") if tensor.is_floating_point() else -1)


@pytest.fixture(autouse=True)
def nan_poisoned_outputs():
    """Every Triton launcher allocates through ``fastnmf.kernels.launch.new_output`` / ``new_workspace``
    (looked up at call time); in tests both fill what they return with :func:`poison` — ``torch.empty``
    often returns zeroed or stale memory, which would hide an unwritten tile. A MonkeyPatch of its own,
    so that a test's ``monkeypatch.undo()`` leaves the poisoning in place."""
    if importlib.util.find_spec("triton") is None:  # no Triton on this platform: no launcher to patch
        yield
        return
    from fastnmf.kernels import launch

    plain_output, plain_workspace = launch.new_output, launch.new_workspace
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(launch, "new_output", lambda like: poison(plain_output(like)))
        patch.setattr(launch, "new_workspace", lambda *shape, **options: poison(plain_workspace(*shape, **options)))
        yield


@pytest.fixture(scope="session")
def distributed_session():
    """Every distributed case, run once on 4 gloo ranks (``distributed_cases.session``): per rank a dict
    ``case → outcome``; rank 3 dies in the last case, so its entry is a ``RankExit``."""
    import distributed_cases

    return distributed_cases.run_session()


@pytest.fixture(scope="session")
def single_process_fit():
    """``single_process_fit(sparse, **options)``: the same fit in this process (cached), as (W, H, n_iter)."""
    import distributed_cases

    import fastnmf

    cache = {}

    def fit(sparse, shape=distributed_cases.SHAPE, seed=0, **options):
        key = (sparse, shape, seed, repr(sorted(options.items())))
        if key not in cache:
            options.setdefault("n_components", distributed_cases.RANK)
            X = distributed_cases.data(sparse, shape, seed)
            cache[key] = fastnmf.non_negative_factorization(X, **options)
        return cache[key]

    return fit
