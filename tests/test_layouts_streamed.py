"""Streamed X (``fastnmf.layouts.streamed``): the fit on row chunks read once per iteration equals the
in-memory fit — every β, MU and HALS, dense memory maps and CSR chunks, uneven and one-row chunks — and
reads X once per iteration, the objective for ``tol`` coming from the same pass."""

import os
import threading
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from low_rank import low_rank_counts
import fastnmf
from fastnmf.streaming import ChunkReadError, Chunks

CASES = [(2.0, "mu"), (2.0, "hals"), (1.0, "mu"), (0.5, "mu"), (0.0, "mu")]
# make test-fast runs the Frobenius and KL cases; the others (pow-heavy) with the slow ones.
MARKED_CASES = [case if case[0] in (1.0, 2.0) else pytest.param(*case, marks=pytest.mark.slow) for case in CASES]
TOLERANCE = 1e-10


def counts(shape=(203, 101), seed=0):
    return low_rank_counts(shape, 3, seed)


@pytest.fixture(scope="module")
def memmap(tmp_path_factory):
    path = tmp_path_factory.mktemp("streamed") / "x.npy"
    np.save(path, counts())
    return np.load(path, mmap_mode="r")


def relative_error(a, b):
    return max(np.abs(a[0] - b[0]).max() / np.abs(b[0]).max(), np.abs(a[1] - b[1]).max() / np.abs(b[1]).max())


def fit(X, **options):
    options = {"n_components": 5, "init": "random", "random_state": 1, "tol": 0.0, "max_iter": 50, **options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fastnmf.non_negative_factorization(X, **options)


@pytest.mark.parametrize("beta, solver", MARKED_CASES)
@pytest.mark.parametrize("storage", ["memmap", "csr"])
def test_streamed_fit_equals_the_in_memory_fit(memmap, beta, solver, storage):
    X = counts()
    given, in_memory = (memmap, X) if storage == "memmap" else (sp.csr_matrix(X), sp.csr_matrix(X))
    reference = fit(in_memory, beta_loss=beta, solver=solver)
    streamed = fit(given, beta_loss=beta, solver=solver, chunk_rows=37)  # 203 = 5·37 + 18: an uneven last chunk
    assert streamed[2] == reference[2]
    assert isinstance(streamed[0], np.ndarray) and streamed[0].dtype == np.float64
    assert relative_error(streamed, reference) <= TOLERANCE


def test_auto_streams_kl_with_mu_which_in_memory_x_gets_when_asked():
    # In memory "auto" is Newton for KL, whose second pass per half-update a stream does not make.
    X = counts()
    assert relative_error(fit(X, beta_loss=1.0, chunk_rows=50), fit(X, beta_loss=1.0, solver="mu")) <= TOLERANCE


@pytest.mark.parametrize("beta, solver", [(1.0, "mu"), (2.0, "hals")])
def test_the_tolerance_stops_where_the_in_memory_fit_stops(memmap, beta, solver):
    reference = fit(counts(), beta_loss=beta, solver=solver, tol=1e-4, max_iter=500)
    streamed = fit(memmap, beta_loss=beta, solver=solver, tol=1e-4, max_iter=500, chunk_rows=50)
    assert 0 < reference[2] < 500 and streamed[2] == reference[2]
    assert relative_error(streamed, reference) <= TOLERANCE


def test_chunks_of_one_row_and_user_blocks_of_any_size():
    X = counts((9, 7), seed=2)
    options = dict(n_components=3, beta_loss=1.0, solver="mu", max_iter=20)
    reference = fit(X, **options)
    assert relative_error(fit(X, **options, chunk_rows=1), reference) <= TOLERANCE
    sizes = [4, 1, 3, 1]
    blocks = lambda: iter(np.split(X, np.cumsum(sizes)[:-1]))  # noqa: E731
    streamed = fit(Chunks.from_blocks(blocks, X.shape, X.dtype), **options)
    assert relative_error(streamed, reference) <= TOLERANCE
    read = Chunks(lambda a, b: X[a:b], X.shape, X.dtype)
    assert relative_error(fit(read, **options, chunk_rows=4), reference) <= TOLERANCE


def test_extrapolated_hals_and_penalties_stream_too(memmap):
    for options in (dict(solver="hals", extrapolate=True),
                    dict(beta_loss=1.0, solver="mu", alpha_W=0.01, l1_ratio=0.5)):
        assert relative_error(fit(memmap, chunk_rows=64, **options), fit(counts(), **options)) <= TOLERANCE


class CountingReader:
    """A Chunks reader that counts its reads (and can fail at a given read)."""

    def __init__(self, X, fail_at=None):
        self.X, self.reads, self.fail_at = X, 0, fail_at

    def __call__(self, start, stop):
        self.reads += 1
        if self.fail_at is not None and self.reads == self.fail_at:
            raise OSError("disk went away")
        return self.X[start:stop]


def test_one_read_of_x_per_iteration_with_the_objective_in_the_same_pass():
    X = counts()
    reader = CountingReader(X)
    fit(Chunks(reader, X.shape, X.dtype), chunk_rows=50, max_iter=20, check_every=5, beta_loss=1.0)
    chunks = 5  # 203 rows in chunks of 50
    # The first pass (values, max, mean), the objective of the start, one pass per iteration (the checks
    # at 5, 10, 15 are computed in passes 6, 11, 16), and the pass that measures iteration 20.
    assert reader.reads == chunks * (1 + 1 + 20 + 1)


def test_a_reader_that_fails_mid_fit_names_the_chunk_and_keeps_the_last_checked_iterate():
    X = counts()
    reader = CountingReader(X, fail_at=5 * 14 + 3)  # in the 13th iteration's pass, after the check at 10
    model = fastnmf.NMF(5, init="random", random_state=1, tol=0.0, max_iter=50, beta_loss=1.0, chunk_rows=50)
    with pytest.raises(ChunkReadError, match=r"rows 100:150 .*chunk 3 of 5.*disk went away"):
        model.fit(Chunks(reader, X.shape, X.dtype))
    assert model.n_iter_ == 10 and model.components_.shape == (5, 101)
    assert model.transform(X).shape == (203, 5)  # usable


def test_bad_values_are_named_with_their_chunk():
    X = counts()
    X[120, 3] = -1.0
    with pytest.raises(ValueError, match=r"Negative values.*rows 100:150"):
        fit(Chunks(lambda a, b: X[a:b], X.shape, X.dtype), chunk_rows=50)


def test_what_cannot_be_streamed_is_refused(memmap):
    with pytest.raises(ValueError, match="init='nndsvda' needs an SVD of all of X"):
        fit(memmap, init="nndsvda")
    with pytest.raises(ValueError, match="cannot be streamed"):
        fastnmf.non_negative_factorization(counts(), n_components=3, weights=np.ones((203, 101)), chunk_rows=10)
    with pytest.raises(ValueError, match="Invalid memory_budget='lots'"):
        fit(memmap, memory_budget="lots")
    with pytest.raises(ValueError, match="Invalid chunk_rows=0"):
        fit(memmap, chunk_rows=0)


def test_estimator_on_a_memmap_fits_transforms_and_resumes(memmap, tmp_path):
    model = fastnmf.NMF(5, random_state=1, tol=0.0, max_iter=30, memory_budget="1MB")
    W = model.fit_transform(memmap)  # init=None: "random" for streamed X
    reference = fastnmf.NMF(5, init="random", random_state=1, tol=0.0, max_iter=30)
    assert relative_error((W, model.components_), (reference.fit_transform(counts()), reference.components_)) <= TOLERANCE
    np.testing.assert_allclose(model.transform(memmap), reference.transform(counts()), rtol=1e-9, atol=1e-12)
    path = tmp_path / "fit.npz"
    half = fastnmf.NMF(5, init="random", random_state=1, tol=0.0, max_iter=15, memory_budget="1MB", checkpoint=path,
                       checkpoint_every=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half.fit(memmap)
        resumed = fastnmf.NMF.resume(path, memmap, max_iter=30)
    assert resumed.n_iter_ == 30
    np.testing.assert_allclose(resumed.components_, model.components_, rtol=1e-9, atol=1e-12)


def _rss_anon_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="RssAnon is read from Linux's /proc")
def test_a_2gb_memmap_is_fitted_in_bounded_anonymous_memory(tmp_path):
    m, n = 131072, 4096  # 2 GiB of float32 on disk
    path = tmp_path / "big.f32"
    big = np.memmap(path, dtype=np.float32, mode="w+", shape=(m, n))
    rng = np.random.default_rng(0)
    block = rng.random((8192, n), dtype=np.float32)
    for start in range(0, m, 8192):
        big[start:start + 8192] = block
    big.flush()
    del big
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(m, n))
    before, peak, done = _rss_anon_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_anon_bytes())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        W, H, n_iter = fit(X, n_components=4, max_iter=2, solver="mu", memory_budget="200MB")
    finally:
        done.set()
        sampler.join()
        del X
        path.unlink()  # pytest keeps the temporary folders of the last runs: not 2 GiB each
    assert n_iter == 2 and W.shape == (m, 4)
    # Factors are 2 MiB; two chunk buffers and the temporaries are within the 200 MB budget.
    assert peak[0] - before < 400 * 2**20, f"anonymous memory grew by {(peak[0] - before) / 2**20:.0f} MiB"


def test_ctrl_c_during_a_streamed_fit_keeps_the_last_checked_iterate(memmap):
    from fastnmf.errors import FitInterrupted

    def interrupt(n_iter, W, H):
        if n_iter == 7:
            raise KeyboardInterrupt

    with pytest.raises(FitInterrupted) as caught:
        fit(memmap, chunk_rows=64, check_every=5, callback=interrupt)
    assert caught.value.output.result.n_iter == 5
    reference = fit(counts(), max_iter=5)
    result = caught.value.output.result
    assert relative_error((result.W.numpy(), result.H.numpy()), reference) <= TOLERANCE
