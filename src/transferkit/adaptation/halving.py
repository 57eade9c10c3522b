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
of the candidates still training (not the dearest: that assumption left a third of the budget unused,
docs/ADAPT_AUTO.md). A learning-rate schedule sized for ``E``
cannot be lengthened once it has started without becoming another schedule, so ``E`` is never raised later:
the schedule is sized to the most the finalists can expect, and the re-plans below decide how far into it they get.
Time the plan leaves over (the machine got faster after the probe) goes to a *new* schedule: when the finalists
complete theirs with time left for at least :data:`LONGER` times ``E`` epochs of the pick (its seconds measured),
the pick trains again from the source model with the longest schedule that fits (at most the run's epochs) and
that run replaces its ``E``-epoch one if it completes (``rungs``: ``longer``); the pick is then the validator's
best of it and the runner-up.

Re-planning (before every rung): from the seconds per epoch the *survivors* actually took (their latest rung: the
machine's load now, self-training's second phase once reached) and the wall time actually left, the final
position ``p <= E`` is the furthest whose remaining plan fits (the same rungs, those at or past ``p`` dropped).
When ``p = E`` the finalists end exactly where a full run of their method at ``E`` epochs ends (``E`` = the run's
epochs: the very training of ``adapt`` without a budget); when ``p`` is in the schedule's last tenth
(:data:`TAIL`) they stop at epoch ``p``, where the cosine's learning rate is below 3% of its peak; when ``p`` is
earlier (the machine got slower after the probe), the validator's current best finishes its schedule alone if
that fits (not before the first rung: the probe ranks one-epoch-old candidates; the runner-up follows if its rest
then fits, costed at the pace the best ran alone), else the finalists stop at ``p``. ``metrics.json`` ``rungs``
says which. When not even one more epoch fits, the pick is the validator's best as it stands.

The guarantee: the budget counts from the ``adapt`` call (loading the data included); a reserve is kept for the
scoring and writing after the rungs (:data:`RESERVE_S`, :data:`RESERVE_FRACTION`, :data:`AFTER_SHARE`), and every
epoch starts only when its expected seconds fit before the deadline (else the candidate pauses there and the run
ends with the validator's best), so a plan that guessed low overruns by at most one epoch dearer than the one
measured before it, inside the reserve. The interpreter's start before the call is outside it. A paused
candidate is ranked by the selection validator alone.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from transferkit.adaptation.base import AdaptContext, Method, validation_data
from transferkit.adaptation.budget_plan import (
    LONGER,
    PROBE_EPOCHS,
    SAFETY,
    TAIL,
    Tracked,
    fit_epochs,
    plan_cost,
    replan,
    rung_epochs,
    survivors,
    truncated,
)
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
        if t.probe is None:
            t.probe, t.probe_measured = per, t.measured
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


def halve(plan: AdaptPlan, prep: Prepared, run: RunDir | None, started: float | None = None
          ) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    """Successive halving within ``plan.spec.budget`` counted from ``started`` (a ``perf_counter`` time; default
    now): the runs of the last rung trained (the pick among them: :func:`~transferkit.adaptation.stages.choose`)
    and every rung's record (epochs, candidates with scores, seconds expected and taken, kept)."""
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
    return float(t.run.record["validators"][plan.spec.validator])  # type: ignore[union-attr]


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
    runs, rungs = _rungs(plan, pp, run, ts, deadline, start, [{"rung": "probe", **sizing}])
    done = rungs[-1].get("final_epochs") == epochs and "note" not in rungs[-1]  # the finalists completed it
    return _longer(plan, prep, runs, ts, deadline, rungs, epochs) if done and epochs < full else (runs, rungs)


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
                return _alone(plan, prep, run, ts, alive, deadline, rungs, k, final)
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
        if last:  # the validator's best and the runner-up, scored fully: `choose` picks between them
            return [_final(plan, prep, i, ts[i]) for i in order[:2]], rungs
        alive = keep
    raise AssertionError("the last rung returns")  # pragma: no cover


def _longer(plan: AdaptPlan, prep: Prepared, runs: list[CandidateRun], ts: list[Tracked], deadline: float,
            rungs: list[dict[str, Any]], epochs: int) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    """Time left after the finalists completed their ``epochs``-epoch schedule: the validator's pick trains again
    from the source model with the longest schedule (at most ``prep``'s epochs, the run's own, and at least
    :data:`LONGER` times ``epochs``) its measured seconds fit, a new schedule from its first step. If that completes,
    the validator keeps the better of the pick's two runs, and then picks among the finalists as always; if it
    stops at the deadline or fails, the finished runs stand."""
    v, labels = plan.spec.validator, [c.label for c in plan.candidates]
    pick = max(runs, key=lambda r: r.record["validators"][v])
    i, left = labels.index(pick.record["label"]), deadline - time.perf_counter()
    t = ts[i]
    fits = [e for e in range(math.ceil(epochs * LONGER), prep.cfg.epochs + 1)
            if (e * (t.per_epoch or 0.0) + t.overhead) * SAFETY <= left]
    if not fits or not t.per_epoch:
        return runs, rungs
    t0, wrapper = time.perf_counter(), Pausing(plan.candidates[i].method, 1 << 30, deadline, t.per_epoch)
    try:
        new = train_candidate(plan, replace(prep, cfg=replace(prep.cfg, epochs=fits[-1])), i, None, wrapper)
    except Paused:
        rungs.append({"rung": "longer", "epochs": fits[-1], "seconds": time.perf_counter() - t0,
                      "note": f"the deadline came first: its {epochs}-epoch run kept"})
        return runs, rungs
    except Exception as exc:  # an optional run (e.g. diverged past its retries): the finished finalists stand
        print(f"[auto longer] {labels[i]}: failed ({exc}); its {epochs}-epoch run kept", file=sys.stderr, flush=True)
        rungs.append({"rung": "longer", "epochs": fits[-1], "seconds": time.perf_counter() - t0,
                      "note": f"failed ({type(exc).__name__}): its {epochs}-epoch run kept"})
        return runs, rungs
    score, before = new.record["validators"][v], pick.record["validators"][v]
    print(f"[auto longer] {labels[i]}: epoch {fits[-1]}/{fits[-1]} {v} {score:.4f} (was {before:.4f})",
          file=sys.stderr, flush=True)
    better = score > before  # the validator keeps the better of the pick's two runs; it then picks among finalists
    rungs.append({"rung": "longer", "epochs": fits[-1], "seconds": time.perf_counter() - t0,
                  "scores": {labels[i]: score}, "kept": [labels[i]],
                  "note": (f"time left: the pick trained again with a {fits[-1]}-epoch schedule, kept in place of "
                           f"its {epochs}-epoch run (higher {v})" if better else
                           f"time left: the pick trained again with a {fits[-1]}-epoch schedule; its {epochs}-epoch "
                           f"run kept (higher {v})")})
    return ([new if r is pick else r for r in runs] if better else runs), rungs


def _final(plan: AdaptPlan, prep: Prepared, i: int, t: Tracked) -> CandidateRun:
    """``t``'s run scored as a finished candidate's (every validator, accuracy on labelled eval data)."""
    assert t.run is not None
    if t.done or t.ctx is None:
        return t.run
    return score_candidate(plan, prep, i, t.ctx, t.run.record["train_seconds"], t.ctx.results)


def _alone(plan: AdaptPlan, prep: Prepared, run: RunDir, ts: list[Tracked], alive: list[int], deadline: float,
           rungs: list[dict[str, Any]], k: int, final: int) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    """The validator's current best trains to the end of its schedule first (the finalists' plan would stop both
    at ``final``); then the runner-up too if the time left is expected to fit it. The runner-up's seconds were
    measured at another load, so both are costed from their probe's seconds (measured within seconds of each
    other), the runner-up's times the pace of the best's run alone (its seconds taken over those costed): the
    machine's load now, not when the runner-up last trained (fontdigits->digits8 seed 1, docs/ADAPT_AUTO.md:
    the best ran alone at 0.56x its latest seconds per epoch, and the runner-up, costed at its own latest, was
    left out though it would have fitted)."""
    t0, total, labels = time.perf_counter(), prep.cfg.epochs, [c.label for c in plan.candidates]
    order = sorted(alive, key=lambda i: -_score(plan, ts[i]))[:2]
    pace = 1.0
    for n, i in enumerate(order):
        t = ts[i]
        at_probe = replace(t, per_epoch=t.probe, measured=t.probe_measured) if t.probe is not None else t
        expected = plan_cost([at_probe], [0], [total], [1], total) / SAFETY
        if n and not (ts[order[0]].done and expected * pace * SAFETY <= deadline - time.perf_counter()):
            order = order[:1]
            break
        t1, start, trained = time.perf_counter(), t.position, t.epochs
        advance(plan, prep, i, run, None, t, deadline)
        trained = t.epochs - trained
        if not n and expected > 0 and trained > 0:  # seconds per epoch trained over those costed per position
            pace = ((time.perf_counter() - t1) / trained) / (expected / max(1, total - start))
        _show(plan, prep, f"{k} (alone)" if n == 0 else f"{k} (runner-up)", i, ts[i])
    rec: dict[str, Any] = {"rung": k, "epochs": total, "final_epochs": total, "seconds": time.perf_counter() - t0,
                           "scores": {labels[i]: _score(plan, ts[i]) for i in order}, "kept": [labels[order[0]]],
                           "positions": {labels[i]: total if ts[i].done else ts[i].position for i in order},
                           "note": f"the finalists' plan would stop at {final} of the schedule's {total} epochs: the "
                                   "validator's best finished its schedule alone"
                                   + ", then the runner-up" * (len(order) > 1)
                                   + " (the deadline came first: as it stands)" * (not ts[order[0]].done)}
    if len(order) > 1 and not ts[order[1]].done:  # stopped mid-schedule by the deadline: not a finalist
        rec["note"] += " (the deadline came before its end: left out)"
        order = order[:1]
    rungs.append(rec)
    return [_final(plan, prep, i, ts[i]) for i in order], rungs


def _cut_short(plan: AdaptPlan, prep: Prepared, ts: list[Tracked], alive: list[int], rungs: list[dict[str, Any]],
               k: int, left: float) -> tuple[list[CandidateRun], list[dict[str, Any]]]:
    """Not one more epoch of the plan is expected to fit: the pick is the validator's best as it stands."""
    best = max(alive, key=lambda i: _score(plan, ts[i]))
    rungs.append({"rung": k, "skipped": "would exceed the budget", "seconds_left": left,
                  "kept": [plan.candidates[best].label],
                  "note": "the pick is the validator's best as it stands, before the end of its schedule"})
    return [_final(plan, prep, best, ts[best])], rungs  # only the pick is scored fully: the budget is spent
