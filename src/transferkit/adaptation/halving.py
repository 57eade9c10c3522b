"""``adapt --method auto --budget``: successive halving of auto's candidates on the label-free validator.

Every candidate follows one training plan, the run's settings at ``E`` epochs (its learning-rate schedule spans
all ``E``); a rung only *pauses* it at epoch ``e_k`` of that plan (a position: epochs summed over its phases in
order, so a phase that stopped early still ends at its planned position) and the next rung resumes it from its
checkpoints, so a survivor continues its one schedule (Jamieson & Talwalkar, AISTATS 2016; Li et al., JMLR 2018).
Rung ``k`` of ``R`` pauses at ``ceil(E / 2^(R-1-k))``; the better half by ``spec.validator`` goes on, the last two
finalists both train to the last rung. Target labels are never read for the pick.

Sizing the schedule (once, before it is more than one epoch old): every candidate first trains one epoch,
timed (the probe; the first epoch of its plan, trained under the default schedule's warm-up because ``E`` is not
known yet). ``E`` is then the most epochs (at most the run's own, the iteration budget's) whose plan is expected
to fit the time left: each candidate's measured seconds per epoch for the rung that trains them all (a phase it
has not reached yet, :data:`LATER` times those), and for the later rungs, whose survivors are not known, the mean
of the candidates still training (not the dearest:
that assumption left a third of the budget unused, docs/ADAPT_AUTO.md). A learning-rate schedule sized for ``E``
cannot be lengthened once it has started without becoming another schedule, so ``E`` is never raised later:
the schedule is sized to the most the finalists can expect, and the re-plans below decide how far into it they get.

Re-planning (before every rung): from the seconds per epoch the *survivors* actually took (their latest rung: the
machine's load now, self-training's second phase once reached) and the wall time actually left, the final
position ``p <= E`` is the furthest whose remaining plan fits (the same rungs, those at or past ``p`` dropped).
When ``p = E`` the finalists end exactly where a full run of their method at ``E`` epochs ends (``E`` = the run's
epochs: the very training of ``adapt`` without a budget); when ``p`` is in the schedule's last tenth
(:data:`TAIL`) they stop at epoch ``p``, where the cosine's learning rate is below 3% of its peak; when ``p`` is
earlier (the machine got slower after the probe), the validator's current best finishes its schedule alone if
that fits (not before the first rung: the probe ranks one-epoch-old candidates), else the finalists stop at
``p``.
``metrics.json`` ``rungs`` says which. When not even one more epoch fits, the pick is the validator's best as it
stands.

The guarantee: the budget counts from the ``adapt`` call (loading the data included); a reserve is kept for the
scoring and writing after the rungs (:data:`RESERVE_S`, :data:`RESERVE_FRACTION`, :data:`AFTER_SHARE`), and every
epoch starts only when its expected seconds fit before the deadline (else the candidate pauses there and the run
ends with the validator's best), so a plan that guessed low cannot overrun. The interpreter's start before the
call is outside it. A paused candidate is ranked by the selection validator alone.
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
#: Expected seconds are the measured ones times this. With :data:`LATER`, a rung's seconds over those expected
#: before it were 0.68-1.0 in the runs of 2026-12-02 16:30-16:50 (load 6-10), but 1.31 where the load rose from 7
#: to 10 between the probe and the first rung: no margin covers that; the per-epoch deadline check keeps the budget.
SAFETY = 1.05
#: An epoch of a phase not reached yet (a later phase of the plan) is expected to cost this times the phase
#: measured: self-training's second phase (a teacher's labels, consistency on re-styled copies) took 1.8x its
#: first phase's seconds per epoch (20.7 / 11.5 s mnist5k->digits8, 3.60 / 2.04 s fontdigits->digits8, seed 0).
LATER = 1.8
PROBE_EPOCHS = 1
#: When the re-plan ends the finalists before ``(1 - TAIL)`` of their schedule (a cosine's last tenth runs below
#: 3% of the peak rate), the validator's current best finishes its whole schedule alone instead, if that fits: a
#: machine that got slower after the probe (fontdigits->digits8 at load 10: 1.6 s per epoch in the probe, 2.6-4 s
#: after) then still ends with an annealed model rather than two stopped mid-schedule.
TAIL = 0.1


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


def truncated(stops: list[int], alive: list[int], final: int) -> tuple[list[int], list[int]]:
    """The rungs ``stops`` (``alive`` candidates each) ending at position ``final``: the stops before it, then
    ``final`` with as many candidates as the rung it replaces."""
    kept = [s for s in stops if s < final] + [final]
    return kept, alive[: len(kept)]


class Paused(Exception):
    """Raised where a :class:`Pausing` method reaches its stop; holds the context (model as trained so far)."""

    def __init__(self, ctx: AdaptContext) -> None:
        super().__init__("paused")
        self.ctx = ctx


class Pausing(Method):
    """``inner`` trained until it reaches position ``stop`` of its plan (epochs summed over its phases, in order),
    or until the next epoch's expected seconds (``per_epoch`` before one is timed here) would end past
    ``deadline`` (a ``perf_counter`` time), then :class:`Paused`; its phases keep their epochs, so the schedule is
    the full plan's and a resume from the checkpoints continues it. ``starts``: the time each epoch trained here
    began; ``reached``: the position it paused at; ``total``: the plan's epochs over the phases seen."""

    def __init__(self, inner: Method, stop: int, deadline: float | None = None, per_epoch: float = 0.0) -> None:
        self.inner, self.stop, self.options = inner, stop, inner.options
        self.deadline, self.per_epoch = deadline, per_epoch
        self.starts: list[float] = []
        self.paused_at: float | None = None
        self.reached: int | None = None
        self.timed_out = False
        self.total = 0

    def check(self, model: TransferModel) -> None:
        self.inner.check(model)

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        for phase in self.inner.phases(ctx):
            phase.on_epoch_start = self._hook(ctx, phase.on_epoch_start, self.total)
            self.total += capped_epochs(phase.epochs or ctx.cfg.epochs)
            yield phase

    def _hook(self, ctx: AdaptContext, inner: Callable[[int], None] | None, offset: int) -> Callable[[int], None]:
        def hook(epoch: int) -> None:
            now, pos = time.perf_counter(), offset + epoch
            est = (now - self.starts[0]) / len(self.starts) if self.starts else self.per_epoch
            late = self.deadline is not None and now + est * SAFETY > self.deadline
            if pos >= self.stop or late:
                self.paused_at, self.reached, self.timed_out = now, pos, pos < self.stop
                raise Paused(ctx)
            self.starts.append(now)
            if inner is not None:
                inner(epoch)

        return hook

    def finish(self, ctx: AdaptContext) -> None:
        self.inner.finish(ctx)


@dataclass
class Tracked:
    """What halving knows of a candidate: its latest run, its ``position`` in its plan (the epoch a rung paused
    it at: what rungs compare with their stops), the ``epochs`` it actually trained (fewer when a phase stopped
    early), seconds per epoch (``None`` before the probe; the latest rung's), fixed seconds per call, whether its
    plan is complete and whether the deadline paused it before its stop."""

    run: CandidateRun | None = None
    position: int = 0
    epochs: int = 0
    per_epoch: float | None = None
    measured: float = 1.0  #: share of the plan through the end of the phase ``per_epoch`` was measured in
    overhead: float = 0.0
    done: bool = False
    timed_out: bool = False
    history: list[float] = field(default_factory=list)
    ctx: AdaptContext | None = None  #: a paused candidate's context (to score it fully if the run stops there)


def advance(plan: AdaptPlan, prep: Prepared, i: int, run: RunDir, stop: int | None, t: Tracked,
            deadline: float | None = None) -> None:
    """Train candidate ``i`` on to position ``stop`` of its plan (``None``: to its end; earlier when the deadline
    comes first), resuming its checkpoints; update ``t`` with the run, the position, the epochs and the seconds."""
    method = plan.candidates[i].method
    wrapper = Pausing(method, stop if stop is not None else 1 << 30, deadline, t.per_epoch or 0.0)
    t0 = time.perf_counter()
    try:
        t.run = train_candidate(plan, prep, i, run, wrapper)
        t.done, t.position = True, wrapper.total
    except Paused as p:
        t.run, t.ctx = paused_run(plan, prep, i, p.ctx, time.perf_counter() - t0), p.ctx
        t.position, t.timed_out = max(t.position, wrapper.reached or 0), wrapper.timed_out
    wall = time.perf_counter() - t0
    n = len(wrapper.starts)
    if n:
        end = wrapper.paused_at if wrapper.paused_at is not None else time.perf_counter()
        per = (end - wrapper.starts[0]) / n
        t.per_epoch = per  # the latest measure: the machine's load now, the phase it is in
        t.measured = 1.0 if t.done else wrapper.total / max(1, prep.cfg.epochs)  # later phases: not yielded yet
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


def seconds(t: Tracked, start: int, stop: int, end: int) -> float:
    """Expected seconds for ``t`` to train from position ``start`` to ``stop`` of a plan of ``end`` epochs: its
    measured seconds per epoch through the phase they were measured in, :data:`LATER` times that beyond it."""
    if t.done or stop <= start:
        return 0.0
    edge = min(stop, max(start, round(t.measured * end)))
    return ((edge - start) + (stop - edge) * LATER) * (t.per_epoch or 0.0)


def plan_cost(ts: list[Tracked], alive: list[int], stops: list[int], counts: list[int], end: int | None = None
              ) -> float:
    """Expected seconds to train the rungs ``stops`` (``counts`` candidates each) of a plan of ``end`` epochs
    (default: the last stop) from where the ``alive`` candidates are: the first rung trains each of them at its own
    measured seconds (:func:`seconds`); a later rung's survivors are not known yet, so each costs the mean of what
    the candidates still training would. Times :data:`SAFETY`."""
    live = [i for i in alive if not ts[i].done]
    if not live or not stops:
        return 0.0
    end = stops[-1] if end is None else end
    total = sum(seconds(ts[i], ts[i].position, stops[0], end) + ts[i].overhead * (stops[0] > ts[i].position)
                for i in live)
    over = sum(ts[i].overhead for i in live) / len(live)
    share = len(live) / len(alive)  # a finished candidate (e.g. adabn) may survive at no cost
    for prev, stop, n in zip(stops, stops[1:], counts[1:], strict=False):
        mean = sum(seconds(ts[i], prev, stop, end) for i in live) / len(live)
        total += min(n, len(alive)) * share * (mean + over)
    return total * SAFETY


def fit_epochs(ts: list[Tracked], full: int, left: float) -> int:
    """The schedule's epochs: the most (at most ``full``) whose halving plan of every candidate is expected to fit
    ``left`` seconds (at least the probe's)."""
    alive = list(range(len(ts)))
    best = PROBE_EPOCHS
    for e in range(PROBE_EPOCHS, full + 1):
        stops = rung_epochs(e, len(ts))
        if plan_cost(ts, alive, stops, survivors(len(ts), len(stops))) <= left:
            best = e
    return best


def replan(ts: list[Tracked], alive: list[int], stops: list[int], counts: list[int], left: float) -> int | None:
    """The furthest final position (at most ``stops[-1]``, the schedule's end) whose rungs from here, as
    :func:`truncated` cuts them, are expected to fit ``left`` seconds; ``None`` when not one more epoch does."""
    live = [ts[i].position for i in alive if not ts[i].done]
    if not live:
        return stops[-1]
    best = None
    for p in range(min(live) + 1, stops[-1] + 1):
        if plan_cost(ts, alive, *truncated(stops, counts, p), stops[-1]) <= left:
            best = p
    return best


def halve(plan: AdaptPlan, prep: Prepared, run: RunDir | None, started: float | None = None
          ) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    """Successive halving within ``plan.spec.budget`` counted from ``started`` (a ``perf_counter`` time; default
    now): the runs of the last rung trained (the pick is the validator's best of them) and every rung's record
    (epochs, candidates with scores, seconds expected and taken, kept)."""
    assert plan.spec.budget is not None
    budget = parse_budget(plan.spec.budget)
    now = time.perf_counter()
    before = 0.0 if started is None else max(0.0, now - started)
    deadline = now - before + budget * (1 - RESERVE_FRACTION) - RESERVE_S - AFTER_SHARE * before
    with tempfile.TemporaryDirectory(prefix="transferkit-halving-") as tmp:
        rd = run if run is not None else RunDir.create(Path(tmp) / "run", "adapt", {}, False)
        return _halve(plan, prep, rd, deadline, now - before)


def _show(plan: AdaptPlan, prep: Prepared, k: int | str, i: int, t: Tracked) -> None:
    """The progress line: rung, candidate, epoch and optimizer step of its plan, validator score."""
    assert t.run is not None
    d, v, total = prep.data, plan.spec.validator, prep.cfg.epochs
    n = len(d.source_train[0]) if d.source_train is not None else len(d.target_train)
    steps, e = steps_per_epoch(n, prep.cfg.batch_size), total if t.done else min(t.position, total)
    print(f"[auto rung {k}] {plan.candidates[i].label}: epoch {e}/{total} (step {e * steps}/{total * steps}) {v} "
          f"{t.run.record['validators'][v]:.4f}", file=sys.stderr, flush=True)


def _score(plan: AdaptPlan, t: Tracked) -> float:
    assert t.run is not None
    return float(t.run.record["validators"][plan.spec.validator])


def _halve(plan: AdaptPlan, prep: Prepared, run: RunDir, deadline: float, start: float
           ) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    n, full = len(plan.candidates), prep.cfg.epochs
    ts: list[Tracked] = []
    t_probe = time.perf_counter()
    for i in range(n):  # the probe: one epoch each, timed; the start of every candidate's plan
        timed = [t.per_epoch for t in ts if t.per_epoch]
        if ts and time.perf_counter() + SAFETY * sum(timed) / max(1, len(timed)) > deadline:
            break  # the budget is spent: the candidates not reached are left out (noted)
        ts.append(Tracked())
        advance(plan, prep, i, run, PROBE_EPOCHS, ts[i], deadline)
        _show(plan, prep, "probe", i, ts[i])
    left = deadline - time.perf_counter()
    epochs = fit_epochs(ts, full, left)
    sizing: dict[str, Any] = {"probe_epochs": PROBE_EPOCHS, "probe_seconds": time.perf_counter() - t_probe,
                              "epochs": epochs, "full_epochs": full, "deadline_s": deadline - start,
                              "seconds_left": left,
                              "seconds_per_epoch": {plan.candidates[i].label: t.per_epoch for i, t in enumerate(ts)},
                              "scores": {plan.candidates[i].label: _score(plan, t) for i, t in enumerate(ts)}}
    notes = [f"the budget is expected to fit {epochs} of the {full} epochs: every candidate's schedule spans "
             f"{epochs}"] * (epochs < full)
    if len(ts) < n:
        notes.append("the budget ran out in the probe: not tried: "
                     + ", ".join(c.label for c in plan.candidates[len(ts):]))
    if notes:
        sizing["note"] = "; ".join(notes)
    pp = replace(prep, cfg=replace(prep.cfg, epochs=epochs))
    return _rungs(plan, pp, run, ts, deadline, start, [{"rung": "probe", **sizing}])


def _rungs(plan: AdaptPlan, prep: Prepared, run: RunDir, ts: list[Tracked], deadline: float, start: float,
           rungs: list[dict[str, Any]]) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    total, labels = prep.cfg.epochs, [c.label for c in plan.candidates]
    stops = rung_epochs(total, len(ts))
    counts = survivors(len(ts), len(stops))
    alive = list(range(len(ts)))
    for k in range(len(stops)):
        left = deadline - time.perf_counter()
        final = replan(ts, alive, stops[k:], counts[k:], left)
        if final is None:
            return _cut_short(plan, prep, ts, alive, rungs, k, left)
        if k > 0 and final < total * (1 - TAIL):  # the finalists would stop well before their schedule's end
            best = max(alive, key=lambda i: _score(plan, ts[i]))
            if plan_cost(ts, [best], [total], [1], total) <= left:
                return _alone(plan, prep, run, ts, best, deadline, rungs, k, final)
        plan_stops, plan_counts = truncated(stops[k:], counts[k:], final)
        stop, last = plan_stops[0], len(plan_stops) == 1
        expected = plan_cost(ts, alive, [stop], [len(alive)], total)
        t_rung = time.perf_counter()
        for i in alive:
            if not ts[i].done and ts[i].position < stop and not any(ts[j].timed_out for j in alive):
                advance(plan, prep, i, run, None if stop >= total else stop, ts[i], deadline)
            _show(plan, prep, k, i, ts[i])
        order = sorted(alive, key=lambda i: -_score(plan, ts[i]))
        keep = order[:1] if last else order[: plan_counts[1]]
        rec: dict[str, Any] = {
            "rung": k, "epochs": stop, "final_epochs": final, "seconds": time.perf_counter() - t_rung,
            "expected_seconds": expected, "at_s": time.perf_counter() - start,
            "scores": {labels[i]: _score(plan, ts[i]) for i in alive},
            "positions": {labels[i]: total if ts[i].done else ts[i].position for i in alive},
            "seconds_per_epoch": {labels[i]: ts[i].per_epoch for i in alive}, "kept": [labels[i] for i in keep]}
        if final < total:
            rec["note"] = f"the budget left is expected to fit {final} of the schedule's {total} epochs"
        if any(ts[i].timed_out for i in alive):
            rec["note"] = "the deadline came before the rung's end: the pick is the validator's best as it stands"
            rungs.append(rec)
            return [_final(plan, prep, order[0], ts[order[0]])], rungs
        rungs.append(rec)
        if last:  # the pick is the validator's best; the runner-up is scored fully beside it
            return [_final(plan, prep, i, ts[i]) for i in order[:2]], rungs
        alive = keep
    raise AssertionError("the last rung returns")  # pragma: no cover


def _final(plan: AdaptPlan, prep: Prepared, i: int, t: Tracked) -> CandidateRun:
    """``t``'s run scored as a finished candidate's (every validator, accuracy on labelled eval data)."""
    assert t.run is not None
    if t.done or t.ctx is None:
        return t.run
    return score_candidate(plan, prep, i, t.ctx, t.run.record["train_seconds"], t.ctx.results)


def _alone(plan: AdaptPlan, prep: Prepared, run: RunDir, ts: list[Tracked], best: int, deadline: float,
           rungs: list[dict[str, Any]], k: int, final: int) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    """The validator's current best trains to the end of its schedule alone (the rest would stop at ``final``)."""
    t0, total, t = time.perf_counter(), prep.cfg.epochs, ts[best]
    advance(plan, prep, best, run, None, t, deadline)
    _show(plan, prep, f"{k} (alone)", best, t)
    label = plan.candidates[best].label
    rungs.append({"rung": k, "epochs": total if t.done else t.position, "final_epochs": total,
                  "seconds": time.perf_counter() - t0, "scores": {label: _score(plan, t)}, "kept": [label],
                  "note": f"the finalists' plan would stop at {final} of the schedule's {total} epochs: the "
                          "validator's best finished its schedule alone" + (
                              "" if t.done else " (the deadline came first: as it stands)")})
    return [_final(plan, prep, best, t)], rungs


def _cut_short(plan: AdaptPlan, prep: Prepared, ts: list[Tracked], alive: list[int], rungs: list[dict[str, Any]],
               k: int, left: float) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    """Not one more epoch of the plan is expected to fit: the pick is the validator's best as it stands."""
    best = max(alive, key=lambda i: _score(plan, ts[i]))
    rungs.append({"rung": k, "skipped": "would exceed the budget", "seconds_left": left,
                  "kept": [plan.candidates[best].label],
                  "note": "the pick is the validator's best as it stands, before the end of its schedule"})
    return [_final(plan, prep, best, ts[best])], rungs  # only the pick is scored fully: the budget is spent
