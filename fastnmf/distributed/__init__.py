"""NMF on ``torch.distributed``: X in blocks over a process grid, one fit across all ranks.

Call :func:`non_negative_factorization` on every rank of an initialized process group (NCCL on GPUs,
gloo on CPUs; ``torchrun`` sets the environment) with that rank's block of X (:func:`shard`); each rank
gets back the parts of W and H it owns (:func:`owned_parts`), and :func:`gather` puts them together.
The communication is MPI-FAUN's (per half-iteration one all-gather of a factor part, one reduce-scatter of
the numerator — with the denominator packed in — and one small all-reduce), for every β, MU and HALS,
dense and sparse blocks. docs/distributed.md: the layout, who owns what, the payload formula, launching.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch.distributed as dist

from ..estimator import NMF
from .agreement import DistributedError, agree
from .checkpoints import read_manifest, read_shard
from .comm import PayloadLog, count_payload
from .fit import INITS, Start, fit_distributed
from .grid import ProcessGrid, make_grid, release_groups
from .loss import factorization_loss
from .sharding import Shard, gather, owned_parts, shard

__all__ = ["non_negative_factorization", "resume", "factorization_loss", "shard", "gather", "owned_parts", "Shard", "ProcessGrid",
           "make_grid", "release_groups", "count_payload", "PayloadLog", "DistributedError", "INITS"]

# Options of a single fit that have no distributed meaning here.
_NOT_OPTIONS = ("self", "n_components")
_RESUME_OVERRIDES = ("max_iter", "tol", "verbose", "checkpoint", "checkpoint_every")


def _option_names() -> list[str]:
    return [name for name in inspect.signature(NMF.__init__).parameters if name not in _NOT_OPTIONS]


def _model(n_components, options) -> NMF:
    unknown = sorted(set(options) - set(_option_names()))
    if unknown:
        raise TypeError(f"fastnmf.distributed.non_negative_factorization() got unexpected options {unknown}; the "
                        f"options are the parameters of fastnmf.NMF: {_option_names()}.")
    options.setdefault("init", "random")
    return NMF(n_components, **options)


def _returned(output):
    result, kind = output.result, output.kind
    return kind.output(result.W.contiguous()), kind.output(result.H.contiguous()), result.n_iter


def non_negative_factorization(X_local, n_components, *, grid=None, group=None, W=None, H=None, callback=None,
                               timeout=None, **options):
    """Fit ``X ≈ WH`` with X held in blocks by the ranks of ``group``; call it on every rank.

    Parameters
    ----------
    X_local : array-like, scipy.sparse matrix, np.memmap or torch.Tensor (dense or sparse)
        This rank's block of X: ``shard(X, grid, rank).X``. All ranks pass blocks of the same kind (dense or
        sparse), dtype and device type; block sizes follow :func:`shard`'s split.
    n_components : int
        The rank k.
    grid : (p_r, p_c), 2-D ``torch.distributed.device_mesh.DeviceMesh`` or None
        The process grid (p_r·p_c = the group's size); group rank ``i·p_c + j`` holds block (i, j).
        None: ``(size, 1)``, blocks of rows.
    group : ProcessGroup, optional
        The ranks of this fit (default: the world). Its row and column sub-groups are created on the first
        fit (only their members take part) and reused.
    W, H : optional
        Starting factors for ``init="custom"``: each whole (m×k, k×n — sliced here) or this rank's owned part.
    callback : callable, optional
        ``callback(n_iter, W_owned, H_owned)`` on every rank, as in ``fastnmf.non_negative_factorization``;
        True on any rank stops every rank (one scalar all-reduce per iteration when given).
    timeout : float seconds or datetime.timedelta, optional
        Timeout of the sub-groups' collectives (the world group's is set by ``init_process_group(timeout=)``):
        a rank that dies or hangs makes the others fail with :class:`DistributedError` within it.
    **options
        The parameters of :class:`fastnmf.NMF` with their meaning there (``beta_loss``, ``solver``, ``tol``,
        ``max_iter``, ``check_every``, ``alpha_W``, ``alpha_H``, ``l1_ratio``, ``random_state``, ``init``,
        ``verbose`` — printed on rank 0 only —, ``backend``, ``precision``, ``device``, ``inner_iter``,
        ``extrapolate``). ``init`` defaults to ``"random"`` (the same start as a single-process fit with the
        same seed, whatever the grid); ``nndsvd*`` is refused (it needs an SVD of all of X).
        ``checkpoint`` is a *folder*: every ``checkpoint_every`` seconds each rank writes its shard there
        and rank 0 a manifest (:func:`resume`).

    Returns
    -------
    W_owned, H_owned, n_iter
        This rank's rows of W and columns of H (:func:`owned_parts`), in X_local's type; ``n_iter`` is the
        same on every rank. Bad input on any rank raises the same error on every rank, before any work.
    """
    model = _model(n_components, dict(options))
    output = fit_distributed(X_local, n_components, model, grid=grid, group=group, W=W, H=H, callback=callback,
                             timeout=timeout)
    return _returned(output)


def resume(path, X_local, *, grid=None, group=None, callback=None, timeout=None, **overrides):
    """Continue the distributed fit checkpointed in folder ``path`` on the same grid and blocks; the
    options are the checkpointed ones, except ``max_iter``, ``tol``, ``verbose``, ``checkpoint`` and
    ``checkpoint_every``. Returns what :func:`non_negative_factorization` returns: a resumed fit reaches
    the result of one that was never stopped."""
    not_allowed = sorted(set(overrides) - set(_RESUME_OVERRIDES))
    if not_allowed:
        raise ValueError(f"Cannot change {not_allowed} when resuming from {path}: only {list(_RESUME_OVERRIDES)} "
                         "may be overridden.")
    process_grid = make_grid(grid, group, None)
    manifest = read_manifest(path, process_grid)
    rank = dist.get_rank(process_grid.group)
    checkpoint, _ = agree(lambda: (read_shard(path, manifest, rank), None), process_grid.group)
    params = dict(manifest["params"])
    params.update(overrides)
    params.setdefault("checkpoint", str(path))
    n_components = params.pop("n_components")
    model = NMF(n_components, **params)
    start = Start(checkpoint.W, checkpoint.H, checkpoint.n_iter, checkpoint.loss_history, checkpoint.solver_state,
                  str(Path(path) / manifest["shards"][rank]))
    output = fit_distributed(X_local, n_components, model, grid=grid, group=group, callback=callback,
                             timeout=timeout, start=start)
    return _returned(output)
