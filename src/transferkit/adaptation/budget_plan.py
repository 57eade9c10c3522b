"""The plan of ``adapt --method auto --budget`` (:mod:`transferkit.adaptation.halving`): the rungs, what halving
knows of each candidate, and the seconds a plan is expected to take, from the seconds measured. Pure: no training."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transferkit.adaptation.base import AdaptContext
from transferkit.adaptation.stages import CandidateRun

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
#: Time left after the last rung (the machine got faster after the probe) is spent on the pick's run again with a
#: longer schedule, when at least this many times the epochs fit (fontdigits->digits8 at load 6 -> 2.4: 35 epochs
#: planned, 110 s of the budget unused).
LONGER = 1.25

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
    probe: float | None = None  #: seconds per epoch in the probe (every candidate timed within seconds)
    probe_measured: float = 1.0  #: ``measured`` when ``probe`` was: the phase the probe's seconds belong to
    measured: float = 1.0  #: share of the plan through the end of the phase ``per_epoch`` was measured in
    overhead: float = 0.0
    done: bool = False
    timed_out: bool = False
    history: list[float] = field(default_factory=list)
    ctx: AdaptContext | None = None  #: a paused candidate's context (to score it fully if the run stops there)


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
