"""``nmf-torch`` (PyPI nmf-torch, lilab-bcb): its batch MU and batch HALS models.

Its public ``run_nmf`` only starts from its own initializations, so the adapter drives the model classes
it wraps (``nmf.nmf_models.NMFBatchMU`` / ``NMFBatchHALS``), as ``run_nmf(mode="batch")`` configures them
(HALS: ``hals_max_iter=1``, i.e. ``algo="hals"``):

- start: a subclass whose ``_initialize_H_W`` returns the shared start, then the library's own
  ``NMFBatchBase.fit`` set-up (casts X, caches ‖X‖², WWᵀ, HᵀH, XWᵀ, computes its initial error);
- ``advance(n)``: n × (``_update_H()``; ``_update_W()``) — the body of its batch ``fit`` loop, without the
  loss check it runs every 10 iterations (the harness measures the loss itself).

nmf-torch names the factors the other way round: its H is samples × k (fastnmf's W), its W is k ×
features (fastnmf's H). It updates its H first, i.e. fastnmf's W first, as scikit-learn does.
"""

from __future__ import annotations

import torch

from . import Family, Unavailable

__all__ = ["FAMILY"]


def _check(device: torch.device) -> None:
    try:
        import nmf.nmf_models  # noqa: F401
    except ImportError as error:
        raise Unavailable(f"not installed ({error}); pip install -e .[bench]") from error


def _model(solver: str, k: int, beta: float, device: torch.device, W0, H0):
    from nmf.nmf_models import NMFBatchHALS, NMFBatchMU
    from nmf.nmf_models._nmf_batch_base import NMFBatchBase

    base = NMFBatchMU if solver == "mu" else NMFBatchHALS
    start = (W0.to(device).clone(), H0.to(device).clone())

    class _SharedStart(base):
        def _initialize_H_W(self, eps=1e-6):
            self.H, self.W = start  # nmf-torch's (H, W) = fastnmf's (W, H)

    options = dict(
        n_components=k, init="random", beta_loss=beta, tol=0.0, random_state=0, alpha_W=0.0, l1_ratio_W=0.0,
        alpha_H=0.0, l1_ratio_H=0.0, fp_precision="float", device_type=device.type,
        n_jobs=-1,  # -1 leaves torch's thread count alone (a positive value would change it process-wide)
    )
    if solver == "hals":
        options.update(hals_tol=0.05, hals_max_iter=1)
    model = _SharedStart(**options)
    return model, NMFBatchBase.fit


class _Session:
    input_format = "dense"
    start_note = ""

    def __init__(self, problem, solver: str, device: torch.device):
        self.device = device
        self.x_input = problem.X.to(device)
        self.solver, self.k, self.beta = solver, problem.k, problem.beta
        self.model = None

    def start(self, W0, H0):
        self.model, set_up = _model(self.solver, self.k, self.beta, self.device, W0, H0)
        set_up(self.model, self.x_input)

    def advance(self, n: int):
        for _ in range(n):
            self.model._update_H()
            self.model._update_W()

    def factors(self):
        return self.model.H, self.model.W


FAMILY = Family(
    name="nmf-torch",
    is_peer=True,
    check=_check,
    solvers=lambda beta: ("mu", "hals") if beta == 2.0 else ("mu",),  # its HALS asserts β = 2
    session=_Session,
)
