"""The test data of the fit-level tests: Poisson counts of a rank-r Gamma product, no empty row or column."""

import numpy as np


def low_rank_counts(shape, rank, seed=0, dtype=np.float64):
    """``Poisson(G₁ G₂)`` with Gamma(0.5) factors of rank ``rank``; a 1 put in every empty row and column (β < 1
    divides by WH)."""
    rng = np.random.RandomState(seed)
    X = rng.poisson(rng.gamma(0.5, 1.0, (shape[0], rank)) @ rng.gamma(0.5, 1.0, (rank, shape[1]))).astype(dtype)
    X[X.sum(axis=1) == 0, 0] = 1.0
    X[0, X.sum(axis=0) == 0] = 1.0
    return X
