"""The matrices: synthetic low-rank data, scikit-learn's digits, and a document-term count matrix.

Everything is made or read offline (docs/benchmarks.md, section Problems and presets): nothing here
downloads. Synthetic data is drawn on the device it will be used on, so a 4 GB GPU problem never crosses
the PCIe bus.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "lowrank_plus_noise",
    "poisson_counts",
    "sparse_poisson_counts",
    "digits",
    "document_term",
    "GENSIM_CORPORA",
]

# Text files shipped in the gensim wheel (gensim/test/test_data/): one document per line, already
# tokenized. 300 news stories (Lee), 250 Wikipedia articles (stemmed) and 200 film reviews.
GENSIM_CORPORA = ("lee_background.cor", "head500.noblanks.cor", "pang_lee_polarity.cor")


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def lowrank_plus_noise(m: int, n: int, rank: int, seed: int, device, noise: float = 0.1) -> torch.Tensor:
    """``max(W₀H₀ + σ·N(0, 1), 0)`` with uniform W₀, H₀ of rank ``rank`` and σ = ``noise`` × mean(W₀H₀).

    The noise sets a floor the loss cannot go below, so "1.001× the best loss" is a real target and not
    a race to round-off.
    """
    device = torch.device(device)
    g = _generator(seed, device)
    W = torch.rand(m, rank, generator=g, device=device)
    H = torch.rand(rank, n, generator=g, device=device)
    X = W @ H
    sigma = noise * float(X.mean())
    X.add_(torch.randn(m, n, generator=g, device=device), alpha=sigma).clamp_min_(0.0)
    return X


def poisson_counts(m: int, n: int, rank: int, seed: int, device, mean_count: float = 3.0) -> torch.Tensor:
    """Poisson counts whose rate is a rank-``rank`` non-negative matrix with mean ``mean_count``."""
    device = torch.device(device)
    g = _generator(seed, device)
    rate = torch.rand(m, rank, generator=g, device=device) @ torch.rand(rank, n, generator=g, device=device)
    rate.mul_(mean_count / float(rate.mean()))
    return torch.poisson(rate, generator=g)


def sparse_poisson_counts(m: int, n: int, rank: int, draws: int, seed: int) -> sp.csr_matrix:
    """Counts of ``draws`` events (i, j) drawn from a rank-``rank`` distribution, as a float32 CSR matrix.

    ``P(i, j) ∝ Σ_t W₀[i, t] H₀[t, j]`` with heavy-tailed Gamma(0.3) factors, so that row and column sums
    are skewed as in real count data (a few long documents, frequent words, highly expressed genes). The
    counts are multinomial(draws, P) — for a small P per entry, Poisson counts of rate draws·P: KL is the
    matching loss. Stored entries are slightly fewer than ``draws`` (repeated draws of an entry add up).
    Drawn on the host with numpy (seeded, the same matrix on every machine), one topic at a time: memory
    O(draws), never m×n.
    """
    rng = np.random.default_rng(seed)
    W0 = rng.gamma(0.3, size=(m, rank))
    H0 = rng.gamma(0.3, size=(rank, n))
    column_mass, row_mass = W0.sum(axis=0), H0.sum(axis=1)
    topic_draws = rng.multinomial(draws, column_mass * row_mass / np.dot(column_mass, row_mass))
    rows = np.empty(draws, dtype=np.int64)
    cols = np.empty(draws, dtype=np.int64)
    start = 0
    for t, count in enumerate(topic_draws):
        rows[start:start + count] = rng.choice(m, size=count, p=W0[:, t] / column_mass[t])
        cols[start:start + count] = rng.choice(n, size=count, p=H0[t] / row_mass[t])
        start += count
    # COO → CSR sums the repeated (i, j): the counts.
    X = sp.coo_matrix((np.ones(draws, dtype=np.float32), (rows, cols)), shape=(m, n)).tocsr()
    X.sum_duplicates()
    return X


def digits() -> np.ndarray:
    """scikit-learn's 8×8 digits: 1797 × 64, integers 0–16 (ships inside scikit-learn)."""
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float32)


def _gensim_test_data() -> str | None:
    # find_spec locates the installed package without importing it: gensim's own imports are not needed
    # (and would be slow); only its data files are read.
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], "test", "test_data")
    if all(os.path.exists(os.path.join(folder, name)) for name in GENSIM_CORPORA):
        return folder
    return None


def _zipf_corpus(seed: int, n_docs: int = 750, vocabulary: int = 15000, topics: int = 20,
                 mean_length: int = 500) -> sp.csr_matrix:
    """A synthetic corpus with Zipf word frequencies: each topic re-ranks a shared Zipf law over a random
    permutation of the vocabulary, each document mixes topics with Dirichlet(0.1) weights."""
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, vocabulary + 1) ** 1.07
    topic_word = np.stack([0.5 * zipf + 0.5 * zipf[rng.permutation(vocabulary)] for _ in range(topics)])
    topic_word /= topic_word.sum(axis=1, keepdims=True)
    doc_topic = rng.dirichlet(np.full(topics, 0.1), size=n_docs)
    lengths = rng.poisson(mean_length, size=n_docs)
    rows = [rng.multinomial(length, p) for length, p in zip(lengths, doc_topic @ topic_word)]
    counts = sp.csr_matrix(np.asarray(rows, dtype=np.float32))
    return counts[:, np.asarray(counts.sum(axis=0)).ravel() > 0]


def document_term(seed: int = 0) -> tuple[sp.csr_matrix, str]:
    """A document-term count matrix (CSR, float32) and where it came from.

    Built with scikit-learn's CountVectorizer from the text corpora inside the gensim wheel when gensim is
    installed (``pip install -e .[bench]``); otherwise a synthetic Zipf corpus of similar shape.
    """
    folder = _gensim_test_data()
    if folder is None:
        return _zipf_corpus(seed), "synthetic Zipf corpus (gensim not installed)"
    from sklearn.feature_extraction.text import CountVectorizer

    documents = []
    for name in GENSIM_CORPORA:
        with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as handle:
            documents.extend(line for line in handle if line.strip())
    # min_df=2 drops hapaxes (typos, numbers) that no factorization can explain; max_df drops words that
    # are in most documents and carry no topic.
    vectorizer = CountVectorizer(min_df=2, max_df=0.5, stop_words="english", dtype=np.float32)
    counts = vectorizer.fit_transform(documents).tocsr()
    return counts, "gensim test corpora: " + " + ".join(GENSIM_CORPORA) + " (CountVectorizer)"
