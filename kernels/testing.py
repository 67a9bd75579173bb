"""Problems, references and the error metric used by the kernel tests (and usable by the benchmark).

Kept in the package (like ``torch.testing``) so that every ``tests/test_kernels_*.py`` module and
``bench`` import the same definitions without importing each other.
"""

from __future__ import annotations

import torch

from .. import reference
from ..safeguard import factor_floor, hals_step_sizes, reconstruction_floor

__all__ = ["make_problem", "eps_r_for", "relative_error", "reference_update", "hals_sweeps_by_column"]


def make_problem(
    m: int,
    n: int,
    k: int,
    *,
    device="cpu",
    x_dtype: torch.dtype = torch.float32,
    zero_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random non-negative ``X (m×n)`` with about ``zero_fraction`` exact zeros, and fp32 ``W``, ``H``.

    X is drawn in fp32 and then cast to ``x_dtype``; the zeros exercise ``0 · log 0`` and the dropped
    IS terms. W and H are bounded away from 0 so that every ratio of the update is well conditioned.
    """
    generator = torch.Generator().manual_seed(seed)
    X = torch.rand(m, n, generator=generator)
    X = X * (torch.rand(m, n, generator=generator) >= zero_fraction)
    W = torch.rand(m, k, generator=generator) + 0.05
    H = torch.rand(k, n, generator=generator) + 0.05
    return X.to(device=device, dtype=x_dtype), W.to(device), H.to(device)


def eps_r_for(X: torch.Tensor) -> float:
    """The reconstruction floor a solver would use for X with fp32 factors."""
    return reconstruction_floor(float(X.float().max()) if X.numel() else 0.0, torch.float32)


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """``max |got − ref| / max |ref|`` in float64 (the metric of docs/kernels.md, section "The Triton
    interpreter"); NaN anywhere gives inf."""
    got, ref = got.detach().double().cpu(), ref.detach().double().cpu()
    if got.shape != ref.shape:
        raise AssertionError(f"shape {tuple(got.shape)} != reference shape {tuple(ref.shape)}")
    if not torch.isfinite(got).all():
        return float("inf")
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    error = float((got - ref).abs().max()) if ref.numel() else 0.0
    return error / scale if scale > 0 else error


def reference_update(
    X: torch.Tensor,
    W: torch.Tensor,
    H: torch.Tensor,
    *,
    beta: float,
    side: str,
    l1: float = 0.0,
    l2: float = 0.0,
    eps_r: float,
) -> torch.Tensor:
    """One autograd-reference MU step (``fastnmf.reference``) in float64 on the CPU; ``side`` is "H" or "W"."""
    factors = [W.detach().double().cpu().clone(), H.detach().double().cpu().clone()]
    index = {"W": 0, "H": 1}[side]
    return reference.multiplicative_update(
        reference.reconstruct_nmf, factors, X.detach().double().cpu(), beta, index, l1=l1, l2=l2, eps_r=eps_r
    )


@torch.no_grad()
def hals_sweeps_by_column(
    H: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    *,
    l1: float = 0.0,
    l2: float = 0.0,
    max_sweeps: int = 1,
    delta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The torch twin of ``fastnmf.kernels.hals_sweeps``, written for readability, not speed.

    Gauss–Seidel sweeps over the rows of H (k×n) given ``A = WᵀX`` and ``B = WᵀW``, with the per-column
    early stop: after sweep s, ``change_c = Σ_j (H_after[j, c] − H_before[j, c])²`` (fp32 differences,
    float64 sum); for s ≥ 2 a column with ``change_c ≤ δ² · change_c(1)`` stops with sweep s's values,
    and only the columns still going are swept again. Returns ``(H_new, sweeps)``: a new tensor, and the
    number of sweeps each column ran (int64, n values). H is not modified.
    """
    k, n = H.shape
    H = H.clone()
    steps = hals_step_sizes(B, l2)
    B = B + l2 * torch.eye(k, dtype=B.dtype, device=B.device)  # B' = B + l2·I
    A = A - l1  # A' = A − l1
    floor = factor_floor(H.dtype)
    going = torch.arange(n, device=H.device)  # the columns still being swept
    sweeps = torch.zeros(n, dtype=torch.int64, device=H.device)
    first = None
    for sweep in range(1, max_sweeps + 1):
        h, a = H[:, going], A[:, going]  # copies: only these columns take part in this sweep
        before = h.clone()
        for j in range(k):
            if steps[j] != 0.0:  # a numerically zero term: its row is left as it is
                gradient = B[j] @ h - a[j]  # (B'H)_j − A'_j, rows < j already updated
                h[j] = torch.clamp_min(h[j] - steps[j] * gradient, floor)
        H[:, going] = h
        sweeps[going] = sweep
        change = torch.sum((h - before).square(), dim=0, dtype=torch.float64)
        if first is None:
            first = change
            continue
        keep = change > delta * delta * first
        going, first = going[keep], first[keep]
        if going.numel() == 0:
            break
    return H, sweeps
