"""Named problems and presets, and the common starting point every provider gets.

A :class:`ProblemSpec` is cheap (a name, a data source, k, β, a time budget); :func:`build` makes the
matrix and the start ``(W0, H0)``. Presets: ``tiny`` (the tests: a few ms per run), ``cpu`` (≈ 10 minutes
on a 2-core machine), ``gpu`` (the shapes of docs/benchmarks.md, section Roofline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from . import datasets

__all__ = ["ProblemSpec", "ProblemData", "PRESETS", "preset", "custom_problem", "build"]

LOSS_NAMES = {2.0: "frobenius", 1.0: "kullback-leibler", 0.0: "itakura-saito"}


@dataclass(frozen=True)
class ProblemSpec:
    """What to factorize, to which rank and loss, and how long each provider may spend on it."""

    name: str
    source: str  # "lowrank" | "poisson" | "sparse-poisson" | "digits" | "docterm"
    k: int
    beta: float
    shape: tuple[int, int] | None = None  # synthetic sources only; real data has its own shape
    budget_s: float = 10.0  # timed seconds each provider may spend (it stops after the chunk that passes it)
    max_iter: int = 1_000_000
    seed: int = 0
    draws: int = 0  # "sparse-poisson": events drawn (≈ stored entries)
    # False: X is too large to hold dense (the GPU preset's 10⁶ × 10⁵ counts): the dense matrix is never
    # built, and providers that only take dense X are skipped with the size they would need.
    densify: bool = True
    # provider family → why it does not run on this problem (e.g. a CPU peer on a 4 GB GPU problem)
    skip: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def loss_name(self) -> str:
        return LOSS_NAMES.get(self.beta, f"beta={self.beta:g}")


@dataclass
class ProblemData:
    """A built problem: X (dense float32 on the device; None when ``spec.densify`` is False), its CSR form
    (float32, on the host) when the data is sparse by nature, and the start ``(W0, H0)`` shared by every
    provider."""

    spec: ProblemSpec
    X: torch.Tensor | None
    X_sparse: sp.csr_matrix | None
    W0: torch.Tensor
    H0: torch.Tensor
    origin: str

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(d) for d in (self.X if self.X is not None else self.X_sparse).shape)

    @property
    def m(self) -> int:
        return self.shape[0]

    @property
    def n(self) -> int:
        return self.shape[1]

    @property
    def k(self) -> int:
        return self.spec.k

    @property
    def beta(self) -> float:
        return self.spec.beta

    @property
    def nnz(self) -> int:
        return int(self.X_sparse.nnz) if self.X_sparse is not None else int(torch.count_nonzero(self.X))


def _synthetic(name, source, m, n, k, beta, budget_s, **options) -> ProblemSpec:
    return ProblemSpec(name=name, source=source, shape=(m, n), k=k, beta=beta, budget_s=budget_s, **options)


def _tiny() -> list[ProblemSpec]:
    # A fixed iteration count, so that the tests run the same work everywhere: the budget is only a
    # safety net that a loaded machine must not reach before the 12 iterations.
    return [
        _synthetic("tiny-fro-60x40-k4", "lowrank", 60, 40, 4, 2.0, budget_s=60.0, max_iter=12),
        _synthetic("tiny-kl-60x40-k4", "poisson", 60, 40, 4, 1.0, budget_s=60.0, max_iter=12),
        # Sparse and never densified: dense-only providers are skipped, fastnmf runs on its CSR path.
        _synthetic("tiny-sparse-kl-80x50-k4", "sparse-poisson", 80, 50, 4, 1.0, budget_s=60.0, max_iter=12,
                   draws=400, densify=False),
    ]


def _cpu() -> list[ProblemSpec]:
    return [
        _synthetic("dense-fro-4000x2000-k32", "lowrank", 4000, 2000, 32, 2.0, budget_s=12.0),
        _synthetic("poisson-kl-4000x2000-k32", "poisson", 4000, 2000, 32, 1.0, budget_s=12.0),
        # Short runs at other ranks: only their time per iteration is of interest (the k plot).
        _synthetic("dense-fro-4000x2000-k8", "lowrank", 4000, 2000, 8, 2.0, budget_s=3.0),
        _synthetic("dense-fro-4000x2000-k128", "lowrank", 4000, 2000, 128, 2.0, budget_s=3.0),
        ProblemSpec("digits-fro-k16", "digits", 16, 2.0, budget_s=3.0),
        ProblemSpec("digits-kl-k16", "digits", 16, 1.0, budget_s=3.0),
        ProblemSpec("docterm-kl-k20", "docterm", 20, 1.0, budget_s=6.0),
        # Sparse counts, 1 % stored: what scikit-learn's CSR path is fast on (every dense peer densifies).
        _synthetic("sparse-kl-20000x5000-k32", "sparse-poisson", 20000, 5000, 32, 1.0, budget_s=8.0,
                   draws=1_050_000),
    ]


def _gpu() -> list[ProblemSpec]:
    problems = []
    cpu_peer_too_slow = (("sklearn", "CPU-only peer: one iteration on a 10⁹-entry X outlasts the time budget"),)
    for m, n in ((16384, 16384), (50000, 20000)):
        for beta, source, tag in ((2.0, "lowrank", "dense-fro"), (1.0, "poisson", "poisson-kl")):
            for k in (16, 64, 256):
                skip = cpu_peer_too_slow if m * n > 16384 * 16384 else ()
                problems.append(_synthetic(f"{tag}-{m}x{n}-k{k}", source, m, n, k, beta, budget_s=5.0, skip=skip))
    # The sparse scale of single-cell and document-term data: 10⁶ × 10⁵, ~10⁷ stored counts (400 GB dense).
    for k in (32, 128):
        problems.append(_synthetic(f"sparse-kl-1000000x100000-k{k}", "sparse-poisson", 1_000_000, 100_000, k, 1.0,
                                   budget_s=10.0, draws=11_000_000, densify=False))
    return problems


PRESETS = {"tiny": _tiny, "cpu": _cpu, "gpu": _gpu}


def preset(name: str) -> list[ProblemSpec]:
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}: expected one of {sorted(PRESETS)}.")
    return PRESETS[name]()


def custom_problem(m: int, n: int, k: int, beta: float, budget_s: float) -> ProblemSpec:
    """``--shape M N K --beta B``: Gaussian low-rank + noise for β = 2, Poisson counts otherwise."""
    source = "lowrank" if beta == 2.0 else "poisson"
    tag = "dense" if source == "lowrank" else "poisson"
    return _synthetic(f"custom-{tag}-b{beta:g}-{m}x{n}-k{k}", source, m, n, k, beta, budget_s=budget_s)


def _starting_point(shape, mean: float, k: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's ``init="random"`` recipe (``|N(0, 1)|·sqrt(mean(X)/k)``, H drawn first) with
    ``RandomState(seed)``: the start ``sklearn.decomposition.NMF(init="random", random_state=seed)`` uses."""
    m, n = shape
    rng = np.random.RandomState(seed)
    scale = np.sqrt(mean / k)
    H = np.abs(scale * rng.standard_normal(size=(k, n))).astype(np.float32)
    W = np.abs(scale * rng.standard_normal(size=(m, k))).astype(np.float32)
    return torch.from_numpy(W).to(device), torch.from_numpy(H).to(device)


def build(spec: ProblemSpec, device) -> ProblemData:
    """Make the matrix of ``spec`` on ``device`` and the start shared by all providers."""
    device = torch.device(device)
    X_sparse = None
    if spec.source == "lowrank":
        X = datasets.lowrank_plus_noise(*spec.shape, spec.k, spec.seed, device)
        origin = f"synthetic: max(W₀H₀ + noise, 0), rank {spec.k}, noise 10 % of the mean"
    elif spec.source == "poisson":
        X = datasets.poisson_counts(*spec.shape, spec.k, spec.seed, device)
        origin = f"synthetic: Poisson counts, rank-{spec.k} rate, mean 3"
    elif spec.source == "digits":
        X = torch.from_numpy(datasets.digits()).to(device)
        origin = "scikit-learn load_digits (1797 × 64)"
    elif spec.source in ("docterm", "sparse-poisson"):
        if spec.source == "docterm":
            X_sparse, origin = datasets.document_term(spec.seed)
        else:
            X_sparse = datasets.sparse_poisson_counts(*spec.shape, spec.k, spec.draws, spec.seed)
            origin = f"synthetic: counts of {spec.draws:.3g} draws from a rank-{spec.k} Gamma(0.3) distribution"
        X = torch.from_numpy(X_sparse.toarray()).to(device) if spec.densify else None
    else:
        raise ValueError(f"Unknown problem source {spec.source!r}.")
    if X_sparse is not None:
        shape, mean = X_sparse.shape, float(X_sparse.sum(dtype=np.float64)) / (X_sparse.shape[0] * X_sparse.shape[1])
    else:
        shape, mean = X.shape, float(X.mean(dtype=torch.float64))
    W0, H0 = _starting_point(shape, mean, spec.k, spec.seed, device)
    return ProblemData(spec=spec, X=None if X is None else X.contiguous(), X_sparse=X_sparse, W0=W0, H0=H0,
                       origin=origin)
