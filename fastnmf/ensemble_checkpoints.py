"""Checkpoints of a running ensemble (``fit_ensemble(..., checkpoint=path)``) and their resumption.

One ``.npz`` holds the whole batch at one iteration: for each problem (k, r) still running its factors (in
the fit's internal units), loss history, last checked objective and iteration count; for each finished one
its result; the problems dropped as failed; the options and a fingerprint of X (shape, dtype, float64
mean). It is written like a single fit's checkpoint — a temporary file, fsync, rename
(``fastnmf.checkpoint.write_atomically``) — and read without pickle. A resumed ensemble continues from that
iteration with the same batch, so it ends with exactly the results of the ensemble never stopped.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from .checkpoint import CheckpointError, write_atomically

__all__ = ["write_ensemble_checkpoint", "read_ensemble_checkpoint", "x_fingerprint", "check_same_data"]

_FORMAT = "fastnmf-ensemble/1"


def x_fingerprint(layout) -> dict:
    """Shape, dtype and float64 mean of the (unscaled) data: what a resume checks it was given the same X."""
    return {"shape": [int(d) for d in layout.shape], "dtype": str(layout.dtype).replace("torch.", ""),
            "mean": float(layout.mean(dtype=torch.float64))}


def _array(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def write_ensemble_checkpoint(path, *, iteration: int, options: dict, fingerprint: dict, problems, results: dict,
                              failed: list) -> None:
    """Write the batch state atomically. ``problems``: the running ``_Problem`` records; ``results``: (k, r) →
    SolverResult of the finished ones; ``failed``: (k, r, reason)."""
    arrays, running, finished = {}, [], []
    for index, problem in enumerate(problems):
        arrays[f"W_{index}"], arrays[f"H_{index}"] = _array(problem.W), _array(problem.H)
        running.append({"k": problem.k, "r": problem.r, "n_iter": problem.n_iter, "previous": problem.previous,
                        "divergence": problem.divergence, "history": list(problem.history)})
    for index, ((k, r), result) in enumerate(sorted(results.items())):
        if result.W is not None:
            arrays[f"result_W_{index}"] = _array(result.W)
        arrays[f"result_H_{index}"] = _array(result.H)
        finished.append({"k": k, "r": r, "n_iter": result.n_iter, "loss_history": list(result.loss_history),
                         "final_divergence": result.final_divergence, "stop_reason": result.stop_reason,
                         "has_W": result.W is not None})
    meta = {"format": _FORMAT, "iteration": iteration, "options": options, "x": fingerprint, "running": running,
            "finished": finished, "failed": [list(f) for f in failed]}
    write_atomically(path, lambda handle: np.savez(handle, meta=np.array(json.dumps(meta)), **arrays))


def read_ensemble_checkpoint(path) -> dict:
    """The state written by :func:`write_ensemble_checkpoint`: ``meta`` (dict) and ``arrays`` (name → ndarray).
    Anything unreadable is a :class:`fastnmf.checkpoint.CheckpointError` naming the file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            arrays = {name: archive[name] for name in archive.files if name != "meta"}
    except FileNotFoundError:
        raise
    except Exception as error:  # zip, key or JSON errors: the file is not a usable checkpoint
        raise CheckpointError(f"Ensemble checkpoint {path} is corrupt or incomplete ({type(error).__name__}: {error}).") from error
    if meta.get("format") != _FORMAT:
        raise CheckpointError(f"{path} is not an ensemble checkpoint of this fastnmf (format {meta.get('format')!r}, "
                              f"expected {_FORMAT!r}).")
    return {"meta": meta, "arrays": arrays}


def check_same_data(path, meta: dict, fingerprint: dict) -> None:
    """Refuse to resume on other data than the checkpoint's."""
    saved = meta["x"]
    same_mean = math.isclose(saved["mean"], fingerprint["mean"], rel_tol=1e-12, abs_tol=0.0)
    if saved["shape"] != fingerprint["shape"] or saved["dtype"] != fingerprint["dtype"] or not same_mean:
        raise CheckpointError(f"Ensemble checkpoint {path} was made for X of shape {tuple(saved['shape'])}, dtype "
                              f"{saved['dtype']}, mean {saved['mean']!r}; this X has shape {tuple(fingerprint['shape'])}, "
                              f"dtype {fingerprint['dtype']}, mean {fingerprint['mean']!r}.")
