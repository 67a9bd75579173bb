"""The timing loop: every provider on every problem, in chunks of iterations, under a progress bar.

For one (provider, problem):

1. warm-up: start from (W0, H0), run ``warmup_iters`` iterations, throw the result away — first-call
   costs (Triton compilation, library initialization, first-touch page faults) are paid here, untimed;
   then time a 1-iteration and a 3-iteration call: their difference gives the per-call overhead;
2. start again from the same (W0, H0) and run chunks of n iterations, timing each chunk alone; between
   chunks (outside the clock) take the factors and evaluate the shared loss. A chunk is one call
   ``advance(n)`` for most providers; a provider with a per-iteration callback (fastnmf) makes one call
   for the whole run instead, and the callback stops and restarts the clock at the chunk boundaries, so
   no per-call cost (validation, the library's own loss checks) is inside the timed chunks;
3. chunk sizes grow geometrically from 1 (fine time resolution while the loss falls fast, few loss
   evaluations later), are capped at ``budget / target_chunks`` seconds of iterations (per-call overhead
   not counted), and stop once the timed total
   passes the problem's budget or its ``max_iter``; a NaN loss stops the run at once.

Ctrl-C stops everything: the interrupted run keeps what it measured, and the caller reports all of it.
"""

from __future__ import annotations

import datetime
import math
import sys
import time
from dataclasses import dataclass, field

import torch

from . import problems as problems_module
from .clock import make_memory_meter, make_timer, release_freed_memory
from .costs import x_stream_bytes
from .environment import load_average
from .loss import SharedLoss
from .machine import CpuCounter, wait_until_quiet
from .probes import problem_limits
from .providers import Provider, Skipped, plan

__all__ = ["Settings", "Run", "ProblemResult", "Interrupted", "ChunkClock", "run_problem", "planned_runs"]


@dataclass(frozen=True)
class Settings:
    warmup_iters: int = 2
    growth: float = 1.5  # chunk n → ceil(1.5 n)
    target_chunks: int = 15  # no chunk longer than budget / target_chunks seconds
    probe_repeats: int = 5
    budget_scale: float = 1.0  # multiplies every problem's budget (--budget-scale)
    budget_override: float | None = None  # --budget: the same budget for every problem
    wait_quiet_s: float = 0.0  # --wait-quiet: wait up to this long for other processes to go idle


@dataclass
class Run:
    provider: str
    family: str
    solver: str
    is_peer: bool
    device: str
    status: str  # "ok" | "error" | "interrupted" | "skipped"
    reason: str = ""
    input_format: str = ""
    x_bytes_per_iter: int = 0
    start_note: str = ""
    timer: str = ""
    memory_method: str = ""
    peak_memory_bytes: int | None = None
    warmup_iters: int = 0
    setup_s: float = 0.0  # untimed: building the session and its first start
    waited_s: float = 0.0  # for the machine to go quiet before the run
    foreign_cores: float | None = None  # cores other processes kept busy during the timed chunks
    call_overhead_s: float | None = None  # per call into the provider, beyond its iterations (warm-up)
    timing: str = ""  # CALL_TIMING or CALLBACK_TIMING
    chunk_seconds: list = field(default_factory=list)
    chunk_iters: list = field(default_factory=list)
    losses: list = field(default_factory=list)  # shared loss after each chunk


@dataclass
class ProblemResult:
    spec: problems_module.ProblemSpec
    m: int
    n: int
    nnz: int
    origin: str
    initial_loss: float
    budget_s: float
    limits: dict
    load_average: list | None = None  # of the machine when the problem started: others' work skews times
    started_at: str = ""
    runs: list = field(default_factory=list)


class Interrupted(Exception):
    """Ctrl-C during a problem: carries the partial result of that problem."""

    def __init__(self, partial: ProblemResult | None):
        super().__init__("interrupted")
        self.partial = partial


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _skipped_run(skip: Skipped) -> Run:
    family, _, solver = skip.name.partition("/")
    return Run(provider=skip.name, family=family, solver=solver or "*", is_peer=skip.is_peer, device="",
               status="skipped", reason=skip.reason)


def _next_chunk(n: int, seconds: float, elapsed: float, budget: float, done: int, max_iter: int,
                settings: Settings, overhead: float) -> int:
    # Sized by the time per iteration *without* the per-call overhead: a provider whose calls are
    # expensive gets longer chunks, so that the overhead does not pass for iteration time.
    per_iter = max((seconds - overhead) / n, 0.05 * seconds / n, 1e-9)
    cap = max(1, int(budget / settings.target_chunks / per_iter))
    remaining = max(1, math.ceil((budget - elapsed) / per_iter))
    return max(1, min(math.ceil(n * settings.growth), cap, remaining, max_iter - done))


class ChunkClock:
    """Times one provider's chunks of iterations and decides their lengths (module docstring, step 3).

    ``begin()`` starts a chunk; ``end(n, factors)`` stops the clock, records the chunk, evaluates the
    shared loss of ``factors()`` outside the clock and returns the next chunk's length, 0 to stop. A
    provider driven by calls runs ``begin(); advance(n); n = end(n, factors)``; one that reports through a
    callback (``Session.run_chunks``) calls ``begin`` and ``end`` from inside its single fit.
    """

    def __init__(self, run: "Run", loss, budget: float, max_iter: int, settings: Settings, timer, meter):
        self.run, self.loss, self.budget, self.max_iter = run, loss, budget, max_iter
        self.settings, self.timer, self.meter = settings, timer, meter
        self.others = CpuCounter()
        self.first = 1
        self.elapsed, self.done = 0.0, 0

    def begin(self) -> None:
        self.meter.before_chunk()
        self.others.start()
        self.timer.start()

    def end(self, n: int, factors) -> int:
        seconds = self.timer.stop()
        self.others.stop()
        run = self.run
        run.foreign_cores = self.others.cores()
        self.meter.after_chunk()
        run.peak_memory_bytes = self.meter.result()
        self.elapsed += seconds
        self.done += n
        run.chunk_seconds.append(seconds)
        run.chunk_iters.append(n)
        loss = self.loss(*factors())
        run.losses.append(loss)
        if not math.isfinite(loss) or self.elapsed >= self.budget or self.done >= self.max_iter:
            return 0
        # A callback-driven provider has no per-call overhead inside its chunks.
        overhead = 0.0 if run.timing == CALLBACK_TIMING else (run.call_overhead_s or 0.0)
        return _next_chunk(n, seconds, self.elapsed, self.budget, self.done, self.max_iter, self.settings, overhead)


CALL_TIMING = "one call per chunk"
CALLBACK_TIMING = "one call, chunks timed from its per-iteration callback"


def _time_provider(provider: Provider, data, loss, budget: float, settings: Settings, run: Run) -> None:
    """Fill ``run`` with the chunk times and losses of ``provider`` on ``data`` (modifies ``run`` as it
    goes, so that an exception or Ctrl-C leaves what was measured)."""
    spec = data.spec
    if settings.wait_quiet_s > 0:
        run.waited_s = wait_until_quiet(settings.wait_quiet_s)
    started = time.perf_counter()
    warmup = min(settings.warmup_iters, spec.max_iter)
    session = provider.open(data)
    session.start(data.W0, data.H0)
    session.advance(warmup)
    _sync(session.device)
    run.warmup_iters = warmup
    # What one call costs beyond its iterations (validation, the provider's own loss checks): from a
    # 1-iteration and a 3-iteration call. It sizes the chunks (below) and is reported on its own.
    one = make_timer(session.device)(lambda: session.advance(1))
    three = make_timer(session.device)(lambda: session.advance(3))
    run.call_overhead_s = max(0.0, one - max(0.0, (three - one) / 2))
    # A fresh session for the timed run: the warm-up's state must not sit in the memory baseline.
    del session
    release_freed_memory()

    session = provider.open(data)
    run.input_format = session.input_format
    run.x_bytes_per_iter = x_stream_bytes(session.x_input)
    run.start_note = session.start_note
    by_callback = hasattr(session, "run_chunks")
    run.timing = CALLBACK_TIMING if by_callback else CALL_TIMING
    timer = make_timer(session.device)
    meter = make_memory_meter(session.device)
    run.timer, run.memory_method = timer.name, meter.method
    meter.start()
    session.start(data.W0, data.H0)
    _sync(session.device)
    run.setup_s = time.perf_counter() - started
    clock = ChunkClock(run, loss, budget, spec.max_iter, settings, timer, meter)
    if by_callback:
        session.run_chunks(clock)
        return
    n = clock.first
    while n:
        clock.begin()
        session.advance(n)
        n = clock.end(n, session.factors)


def _budget(spec, settings: Settings) -> float:
    return (settings.budget_override if settings.budget_override is not None else spec.budget_s) * settings.budget_scale


def planned_runs(specs, device: torch.device, patterns) -> int:
    return sum(len(plan(spec, device, patterns)[0]) for spec in specs)


def run_problem(spec, device: torch.device, patterns, settings: Settings, progress=None) -> ProblemResult:
    """Build ``spec``, probe this machine's limits on it, and time every planned provider."""
    runnable, skipped = plan(spec, device, patterns)
    load = load_average()
    data = problems_module.build(spec, device)
    loss = SharedLoss(data)
    result = ProblemResult(
        spec=spec, m=data.m, n=data.n, nnz=data.nnz, origin=data.origin,
        initial_loss=loss(data.W0, data.H0),
        budget_s=_budget(spec, settings),
        limits=problem_limits(data, spec.k, settings.probe_repeats),
        load_average=load,
        started_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        runs=[_skipped_run(s) for s in skipped],
    )
    try:
        for provider in runnable:
            if progress is not None:
                progress.set_description(f"{spec.name} · {provider.name}")
            run = Run(provider=provider.name, family=provider.family.name, solver=provider.solver,
                      is_peer=provider.family.is_peer, device=str(provider.device), status="ok")
            result.runs.append(run)
            try:
                _time_provider(provider, data, loss, result.budget_s, settings, run)
            except KeyboardInterrupt:
                run.status, run.reason = "interrupted", "Ctrl-C"
                raise
            except Exception as error:  # one broken provider must not cost the others their results
                run.status, run.reason = "error", f"{type(error).__name__}: {error}"
                print(f"\n[bench] {provider.name} on {spec.name} failed: {run.reason}", file=sys.stderr)
            finally:
                release_freed_memory()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            if progress is not None:
                progress.update(1)
    except KeyboardInterrupt:
        raise Interrupted(result) from None
    finally:
        del data, loss
        release_freed_memory()
    return result
