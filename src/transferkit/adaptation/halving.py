"""``adapt --method auto --budget``: successive halving of auto's candidates on the label-free validator.

Every candidate follows one training plan, the run's settings at ``E`` epochs (its learning-rate schedule spans
all ``E``); a rung only *pauses* it after ``e_k`` epochs (counted over its phases in order) and the next rung
resumes it from its checkpoints, so a survivor continues its schedule, and the two finalists end with exactly
the training a full run of their methods gets (Jamieson & Talwalkar, AISTATS 2016; Li et al., JMLR 2018).

Sizing: every candidate first trains one epoch, timed (the probe; it is the start of its plan, not extra
work). From those seconds per epoch ``E`` is set: the run's epochs (the iteration budget's) when the whole
plan fits the budget, else the most that fit (a shorter schedule from the start, so nothing ends mid-schedule),
with the most expensive candidates assumed to survive each rung. Before each later rung the plan left is
re-estimated from the epochs measured so far; when it no longer fits, the validator's current best is trained
to the end of its schedule if that fits, else the pick is the best as it stands (``metrics.json`` ``rungs``
says which). Rung ``k`` of ``R`` trains to ``ceil(E / 2^(R-1-k))`` epochs; the better half by
``spec.validator`` goes on. Target labels are never read for the pick.

The budget counts from the ``adapt`` call (loading the data included); a reserve is kept for the scoring and
writing after the rungs (:data:`RESERVE_S`, :data:`RESERVE_FRACTION`, :data:`AFTER_SHARE`). The interpreter's
start before the call is outside it. A paused candidate is ranked by the selection validator alone.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from transferkit.adaptation.base import AdaptContext, Method, validation_data
from transferkit.adaptation.spec import parse_budget
from transferkit.adaptation.stages import AdaptPlan, CandidateRun, Prepared, score_candidate, train_candidate
from transferkit.adaptation.validators import score
from transferkit.engine.config import capped_epochs
from transferkit.engine.loop import Phase, steps_per_epoch
from transferkit.models import TransferModel
from transferkit.runs import RunDir

#: Seconds kept back from the budget for what follows the last rung (scoring, the A-distance, writing the run):
#: a fixed part, a share of the budget, and a share of what the run spent before the rungs (loading the data and
#: the scores before adaptation, which take as long as the scores after it on a machine as busy).
RESERVE_S, RESERVE_FRACTION, AFTER_SHARE = 10.0, 0.05, 0.5
#: A candidate's later epochs may cost more than its first (e.g. self-training's second phase): estimates are
#: scaled by this.
SAFETY = 1.25
PROBE_EPOCHS = 1


def rung_epochs(final_epochs: int, n_candidates: int) -> list[int]:
    """The epochs each rung trains to: halving ``n_candidates`` down to one, the last rung at ``final_epochs``."""
    rungs = max(1, math.ceil(math.log2(max(1, n_candidates)))) + 1 if n_candidates > 1 else 1
    return sorted({max(1, math.ceil(final_epochs / 2 ** (rungs - 1 - k))) for k in range(rungs)})


def survivors(n: int, rungs: int) -> list[int]:
    """Candidates alive in each of ``rungs`` rungs: halved (rounded up) each time, the last two finalists both
    trained to the end (a method that gains late, e.g. self-training after its base phase, is not cut at a rung
    that catches it mid-plan: fontdigits->digits8, docs/ADAPT_AUTO.md)."""
    out = [max(1, math.ceil(n / 2**k)) for k in range(rungs)]
    return [*out[:-1], min(2, n)] if rungs > 1 else [n]


class Paused(Exception):
    """Raised where a :class:`Pausing` method reaches its stop; holds the context (model as trained so far)."""

    def __init__(self, ctx: AdaptContext) -> None:
        super().__init__("paused")
        self.ctx = ctx


class Pausing(Method):
    """``inner`` trained until it reaches epoch ``stop`` of its plan (epochs summed over its phases, in order),
    then :class:`Paused`; its phases keep their epochs, so the schedule is the full plan's and a resume from the
    checkpoints continues it. ``starts``: the time each epoch trained here began (its seconds per epoch)."""

    def __init__(self, inner: Method, stop: int) -> None:
        self.inner, self.stop, self.options = inner, stop, inner.options
        self.starts: list[float] = []
        self.paused_at: float | None = None

    def check(self, model: TransferModel) -> None:
        self.inner.check(model)

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        offset = 0
        for phase in self.inner.phases(ctx):
            phase.on_epoch_start = self._hook(ctx, phase.on_epoch_start, offset)
            offset += capped_epochs(phase.epochs or ctx.cfg.epochs)
            yield phase

    def _hook(self, ctx: AdaptContext, inner: Callable[[int], None] | None, offset: int) -> Callable[[int], None]:
        def hook(epoch: int) -> None:
            now = time.perf_counter()
            if offset + epoch >= self.stop:
                self.paused_at = now
                raise Paused(ctx)
            self.starts.append(now)
            if inner is not None:
                inner(epoch)

        return hook

    def finish(self, ctx: AdaptContext) -> None:
        self.inner.finish(ctx)


@dataclass
class Tracked:
    """What halving knows of a candidate: its latest run, the epochs of its plan trained, seconds per epoch
    (``None`` before the probe), fixed seconds per call, and whether its plan is complete."""

    run: CandidateRun | None = None
    epochs: int = 0
    per_epoch: float | None = None
    overhead: float = 0.0
    done: bool = False
    history: list[float] = field(default_factory=list)
    ctx: AdaptContext | None = None  #: a paused candidate's context (to score it fully if the run stops there)


def advance(plan: AdaptPlan, prep: Prepared, i: int, run: RunDir, stop: int | None, t: Tracked) -> None:
    """Train candidate ``i`` on to epoch ``stop`` of its plan (``None``: to its end), resuming its checkpoints;
    update ``t`` with the run, the epochs reached and the measured seconds."""
    method = plan.candidates[i].method
    wrapper = Pausing(method, stop if stop is not None else 1 << 30)
    t0 = time.perf_counter()
    try:
        t.run = train_candidate(plan, prep, i, run, wrapper)
        t.done = True
    except Paused as p:
        t.run, t.ctx = paused_run(plan, prep, i, p.ctx, time.perf_counter() - t0), p.ctx
    wall = time.perf_counter() - t0
    n = len(wrapper.starts)
    if n:
        end = wrapper.paused_at if wrapper.paused_at is not None else time.perf_counter()
        per = (end - wrapper.starts[0]) / n
        t.per_epoch = per  # the latest measure: the machine's load now
        t.overhead = max(0.0, wall - per * n) if t.overhead == 0.0 else t.overhead
        t.epochs += n
    elif t.per_epoch is None:
        t.per_epoch, t.overhead = 0.0, wall  # nothing to train (e.g. adabn): its cost is the call
    t.history.append(wall)


def paused_run(plan: AdaptPlan, prep: Prepared, i: int, ctx: AdaptContext, seconds: float) -> CandidateRun:
    """A paused candidate as halving ranks it: only ``spec.validator``'s score (on the target validation inputs;
    with the source validation data for ``dev``), not every validator and accuracy as a finished one."""
    v, d, cand = plan.spec.validator, prep.data, plan.candidates[i]
    vd = validation_data(ctx.model, ctx.placement(), d.target_val, d.source_val if v == "dev" else None)
    rec = {"label": cand.label, "method": cand.name, "options": cand.options, "validators": {v: score(v, vd)},
           "train_seconds": seconds, "info": ctx.info, "paused": True}
    return CandidateRun(rec, ctx.model, list(ctx.results))


def plan_cost(ts: list[Tracked], stops: list[int], alive: list[int]) -> float:
    """Estimated seconds to train the rungs ``stops`` with ``alive`` candidates each, from where the candidates
    are, assuming the most expensive ones survive."""
    total, reached = 0.0, {i: t.epochs for i, t in enumerate(ts)}
    order = sorted(range(len(ts)), key=lambda i: 0.0 if ts[i].done else -((ts[i].per_epoch or 0.0) + ts[i].overhead))
    for stop, n in zip(stops, alive, strict=True):
        for i in order[:n]:
            if not ts[i].done:
                total += max(0, stop - reached[i]) * (ts[i].per_epoch or 0.0) * SAFETY + ts[i].overhead
                reached[i] = max(reached[i], stop)
    return total


def fit_epochs(ts: list[Tracked], full: int, left: float) -> int:
    """The most epochs (at most ``full``) whose halving plan fits ``left`` seconds (at least the probe's)."""
    best = PROBE_EPOCHS
    for e in range(PROBE_EPOCHS, full + 1):
        stops = rung_epochs(e, len(ts))
        if plan_cost(ts, stops, survivors(len(ts), len(stops))) <= left:
            best = e
    return best


def halve(plan: AdaptPlan, prep: Prepared, run: RunDir | None, started: float | None = None
          ) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    """Successive halving within ``plan.spec.budget`` counted from ``started`` (a ``perf_counter`` time; default
    now): the runs of the last rung trained (the pick is the validator's best of them) and every rung's record
    (epochs, candidates with scores, seconds, kept)."""
    assert plan.spec.budget is not None
    budget = parse_budget(plan.spec.budget)
    now = time.perf_counter()
    before = 0.0 if started is None else max(0.0, now - started)
    deadline = now - before + budget * (1 - RESERVE_FRACTION) - RESERVE_S - AFTER_SHARE * before
    with tempfile.TemporaryDirectory(prefix="transferkit-halving-") as tmp:
        rd = run if run is not None else RunDir.create(Path(tmp) / "run", "adapt", {}, False)
        return _halve(plan, prep, rd, deadline)


def _show(plan: AdaptPlan, prep: Prepared, k: int | str, i: int, t: Tracked) -> None:
    """The progress line: rung, candidate, epoch and optimizer step of its plan, validator score."""
    assert t.run is not None
    d, v, total = prep.data, plan.spec.validator, prep.cfg.epochs
    n = len(d.source_train[0]) if d.source_train is not None else len(d.target_train)
    steps, e = steps_per_epoch(n, prep.cfg.batch_size), total if t.done else min(t.epochs, total)
    print(f"[auto rung {k}] {plan.candidates[i].label}: epoch {e}/{total} (step {e * steps}/{total * steps}) {v} "
          f"{t.run.record['validators'][v]:.4f}", file=sys.stderr, flush=True)


def _halve(plan: AdaptPlan, prep: Prepared, run: RunDir, deadline: float
           ) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    n, full = len(plan.candidates), prep.cfg.epochs
    ts: list[Tracked] = []
    t_probe = time.perf_counter()
    for i in range(n):  # the probe: one epoch each, timed; the start of every candidate's plan
        if ts and time.perf_counter() > deadline:
            break  # the budget is spent: the candidates not reached are left out (noted)
        ts.append(Tracked())
        advance(plan, prep, i, run, PROBE_EPOCHS, ts[i])
        _show(plan, prep, "probe", i, ts[i])
    epochs = fit_epochs(ts, full, deadline - time.perf_counter())
    sizing: dict[str, Any] = {"probe_epochs": PROBE_EPOCHS, "probe_seconds": time.perf_counter() - t_probe,
                              "epochs": epochs, "full_epochs": full,
                              "seconds_per_epoch": {plan.candidates[i].label: t.per_epoch for i, t in enumerate(ts)},
                              "scores": {plan.candidates[i].label: t.run.record["validators"][plan.spec.validator]
                                         for i, t in enumerate(ts) if t.run is not None}}
    notes = [f"the budget fits {epochs} of the {full} epochs: every candidate's schedule spans {epochs}"] * (
        epochs < full)
    if len(ts) < n:
        notes.append("the budget ran out in the probe: not tried: "
                     + ", ".join(c.label for c in plan.candidates[len(ts):]))
    if notes:
        sizing["note"] = "; ".join(notes)
    pp = replace(prep, cfg=replace(prep.cfg, epochs=epochs))
    return _rungs(plan, pp, run, ts, deadline, [{"rung": "probe", **sizing}])


def _rungs(plan: AdaptPlan, prep: Prepared, run: RunDir, ts: list[Tracked], deadline: float,
           rungs: list[dict[str, Any]]) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    v, total = plan.spec.validator, prep.cfg.epochs
    stops = rung_epochs(total, len(ts))
    alive_n = survivors(len(ts), len(stops))
    alive = trained = list(range(len(ts)))
    for k, stop in enumerate(stops):
        left = deadline - time.perf_counter()
        if plan_cost(ts, stops[k:], [min(len(alive), a) for a in alive_n[k:]]) > left:
            return _cut_short(plan, prep, run, ts, alive, deadline, rungs, k)
        t_rung = time.perf_counter()
        for i in alive:
            target = None if stop >= total else stop
            if not ts[i].done and (target is None or ts[i].epochs < target):  # the probe may have reached it
                advance(plan, prep, i, run, target, ts[i])
            _show(plan, prep, k, i, ts[i])
        order = sorted(alive, key=lambda i: -ts[i].run.record["validators"][v])  # type: ignore[union-attr]
        keep = order[: alive_n[k + 1]] if k + 1 < len(stops) else order[:1]
        rungs.append({"rung": k, "epochs": stop, "seconds": time.perf_counter() - t_rung,
                      "scores": {plan.candidates[i].label: ts[i].run.record["validators"][v]  # type: ignore[union-attr]
                                 for i in alive}, "kept": [plan.candidates[i].label for i in keep]})
        trained, alive = alive, keep
    return [_final(plan, prep, i, ts[i]) for i in trained], rungs  # the last rung's: the pick is their best


def _final(plan: AdaptPlan, prep: Prepared, i: int, t: Tracked) -> CandidateRun:
    """``t``'s run scored as a finished candidate's (every validator, accuracy on labelled eval data)."""
    assert t.run is not None
    if t.done or t.ctx is None:
        return t.run
    return score_candidate(plan, prep, i, t.ctx, t.run.record["train_seconds"], t.ctx.results)


def _cut_short(plan: AdaptPlan, prep: Prepared, run: RunDir, ts: list[Tracked], alive: list[int], deadline: float,
               rungs: list[dict[str, Any]], k: int) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    """The plan left does not fit: train the validator's current best to the end of its schedule when that fits,
    else stop with it as it stands."""
    v, total = plan.spec.validator, prep.cfg.epochs
    best = max(alive, key=lambda i: ts[i].run.record["validators"][v])  # type: ignore[union-attr]
    left = deadline - time.perf_counter()
    if plan_cost([ts[best]], [total], [1]) <= left:
        t0 = time.perf_counter()
        advance(plan, prep, best, run, None, ts[best])
        _show(plan, prep, f"{k} (finish)", best, ts[best])
        rungs.append({"rung": k, "epochs": total, "seconds": time.perf_counter() - t0,
                      "scores": {plan.candidates[best].label: ts[best].run.record["validators"][v]},  # type: ignore[union-attr]
                      "kept": [plan.candidates[best].label],
                      "note": "the rest of the plan would exceed the budget: the validator's best finished alone"})
        return [ts[best].run], rungs  # type: ignore[list-item]
    rungs.append({"rung": k, "skipped": "would exceed the budget", "seconds_left": left,
                  "kept": [plan.candidates[best].label],
                  "note": "the pick is the validator's best as it stands, before the end of its schedule"})
    return [_final(plan, prep, best, ts[best])], rungs  # only the pick is scored fully: the budget is spent
