"""``adapt --method auto --budget``: successive halving on the label-free validator."""

from __future__ import annotations

import copy
import itertools
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import torch

from transferkit.adaptation import budget_plan, halving
from transferkit.adaptation.api import adapt
from transferkit.adaptation.base import AdaptContext, Method, run_method
from transferkit.adaptation.budget_plan import (
    LATER,
    SAFETY,
    Tracked,
    fit_epochs,
    plan_cost,
    replan,
    rung_epochs,
    seconds,
    survivors,
    truncated,
)
from transferkit.adaptation.data import AdaptData
from transferkit.adaptation.halving import Paused, Pausing
from transferkit.adaptation.methods import make_method
from transferkit.adaptation.spec import AdaptSpec, parse_budget
from transferkit.adaptation.stages import AdaptPlan, CandidateRun, Prepared
from transferkit.cli import main
from transferkit.engine.config import TrainConfig
from transferkit.engine.loop import Phase
from transferkit.errors import ConfigError
from transferkit.models import TransferModel
from transferkit.runs import RunDir


def test_budget_parses_seconds_and_durations() -> None:
    assert [parse_budget(v) for v in ("300", "300s", "5m", "0.5h", 12)] == [300, 300, 300, 1800, 12]
    for bad in ("5 minutes", "-3", "0", "m", "nan"):
        with pytest.raises(ConfigError, match="budget"):
            parse_budget(bad)
    with pytest.raises(ConfigError, match="only --method auto"):
        AdaptSpec(source="s", target_data="t", method="dann", budget="5m")


def test_bad_budget_on_the_cli_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["adapt", "--source", "x", "--source-data", "mnist5k", "--target-data", "digits8", "--method",
                 "auto", "--budget", "5 minutes", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "budget" in err and len(err.splitlines()) == 1


def test_rungs_halve_to_the_full_epochs() -> None:
    assert rung_epochs(8, 7) == [1, 2, 4, 8]
    assert rung_epochs(8, 2) == [4, 8]
    assert rung_epochs(3, 1) == [3]
    assert survivors(8, 4) == [8, 4, 2, 2] and survivors(7, 4) == [7, 4, 2, 2] and survivors(3, 1) == [3]
    assert survivors(2, 2) == [2, 2]


def _tracked(per_epoch: list[float], overhead: float = 0.0) -> list[Tracked]:
    return [Tracked(position=1, epochs=1, per_epoch=p, overhead=overhead) for p in per_epoch]


def test_plan_cost_counts_each_candidate_now_and_the_mean_survivor_later() -> None:
    ts = _tracked([1.0, 2.0, 4.0, 9.0])
    alive = [0, 1, 2, 3]
    # rungs to 2 and 4 epochs, 4 then 2 alive, all at epoch 1: (1+2+4+9) * 1 more epoch, then 2 survivors of
    # unknown cost (the mean, 4 s) 2 more epochs each
    assert plan_cost(ts, alive, [2, 4], [4, 2]) == pytest.approx(SAFETY * (16 + 2 * 4 * 2))
    ts[3].done = True  # a finished candidate costs nothing more, and may survive at no cost
    assert plan_cost(ts, alive, [2, 4], [4, 2]) == pytest.approx(SAFETY * (7 + 2 * 0.75 * (7 / 3) * 2))


def test_the_position_not_the_epochs_trained_says_where_a_candidate_is() -> None:
    """A phase that stopped early leaves a candidate at its planned position with fewer epochs trained: the plan
    left is counted from the position (the review's mismatch)."""
    early = Tracked(position=28, epochs=18, per_epoch=1.0)
    assert plan_cost([early], [0], [28, 56], [1, 1]) == pytest.approx(SAFETY * 28)
    assert replan([early], [0], [28, 56], [1, 1], SAFETY * 28) == 56


def test_a_phase_not_reached_yet_costs_later_times_the_measured_one() -> None:
    """Self-training measured in its base phase (the first half of its plan): its second half is dearer."""
    t = Tracked(position=10, epochs=10, per_epoch=2.0, measured=0.5)
    assert seconds(t, 10, 40, 40) == pytest.approx(10 * 2.0 + 20 * 2.0 * LATER)
    assert seconds(t, 25, 30, 40) == pytest.approx(5 * 2.0 * LATER)
    assert seconds(Tracked(position=3, per_epoch=2.0), 3, 8, 40) == pytest.approx(10.0)  # one phase
    assert seconds(Tracked(per_epoch=2.0, done=True), 0, 8, 8) == 0.0


def test_fit_epochs_shrinks_the_schedule_to_the_budget() -> None:
    ts = _tracked([1.0] * 8)
    alive = list(range(8))
    need = {e: plan_cost(ts, alive, rung_epochs(e, 8), survivors(8, len(rung_epochs(e, 8)))) for e in range(1, 41)}
    assert fit_epochs(ts, 40, need[40] + 1) == 40  # all of it fits: the run's own epochs
    assert fit_epochs(ts, 40, need[20]) == max(e for e in need if need[e] <= need[20]) < 40
    assert fit_epochs(ts, 40, 0.0) == 1  # nothing fits: the probe's epoch
    assert all(need[a] <= need[b] for a, b in zip(range(1, 40), range(2, 41), strict=True))


def test_replan_ends_the_plan_where_the_survivors_measured_seconds_allow() -> None:
    ts = _tracked([1.0, 1.0, 1.0, 1.0])
    for t in ts:
        t.position = 4
    stops, counts = [4, 8, 16], [4, 2, 2]
    full = plan_cost(ts, [0, 1], *truncated(stops[1:], counts[1:], 16))  # 2 at 1 s: (4 + 8) epochs each
    assert full == pytest.approx(SAFETY * 24)
    assert replan(ts, [0, 1], stops[1:], counts[1:], full) == 16  # the whole schedule fits
    ts[1].per_epoch = 3.0  # a dearer survivor than expected: the finalists stop before the schedule's end
    p = replan(ts, [0, 1], stops[1:], counts[1:], full)
    assert p is not None and 8 < p < 16 and plan_cost(ts, [0, 1], *truncated(stops[1:], counts[1:], p)) <= full
    assert replan(ts, [0, 1], stops[1:], counts[1:], 0.5) is None  # not one more epoch
    assert truncated([7, 14, 28, 56], [8, 4, 2, 2], 20) == ([7, 14, 20], [8, 4, 2])
    assert truncated([7, 14, 28, 56], [8, 4, 2, 2], 7) == ([7], [8])


class _Two(Method):
    """Two phases of 3 and 2 epochs (no training: the test calls their epoch hooks as the loop would)."""

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        for n, e in (("a", 3), ("b", 2)):
            yield Phase(n, torch.nn.Identity(), (torch.zeros(1), torch.zeros(1)), None, [], epochs=e)


def _hooks(p: Pausing) -> list[Callable[[int], None]]:
    ctx = cast(AdaptContext, SimpleNamespace(cfg=TrainConfig(epochs=5)))
    return [ph.on_epoch_start for ph in p.phases(ctx)]  # type: ignore[misc]


def test_a_pause_after_an_early_stop_is_at_the_planned_position() -> None:
    p = Pausing(_Two(), 3)
    first, second = _hooks(p)
    first(0), first(1)  # phase a stops early after 2 of its 3 epochs
    with pytest.raises(Paused):
        second(0)
    assert (p.reached, len(p.starts), p.timed_out, p.total) == (3, 2, False, 5)


def test_an_epoch_that_would_end_past_the_deadline_is_not_started() -> None:
    p = Pausing(_Two(), 5, deadline=time.perf_counter() + 60, per_epoch=100.0)
    first, _ = _hooks(p)
    with pytest.raises(Paused):
        first(0)
    assert p.reached == 0 and p.timed_out and not p.starts


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _simulate(monkeypatch: pytest.MonkeyPatch, costs: list[float], quality: list[float], full: int, budget: float,
              late: float = 1.0, slow: float = 1.0, longer: float | Exception | None = None,
              speeds: tuple[tuple[float, float], ...] = ()) -> tuple[list[dict[str, Any]], list[str], float, float]:
    """halving's plan on a fake clock: candidate ``i`` costs ``costs[i]`` s per epoch (0: finished by the probe,
    as adabn), ``late`` times that in the second half of its schedule, ``slow`` times after the probe; its
    validator score rises with its position towards ``quality[i]``. Returns the rungs, the labels returned, the
    clock at the end and the deadline. ``longer``: the validator score of a retrained (longer) run, or the error
    it raises. ``speeds``: ``(time, factor)`` in time order: from clock ``time`` on, every epoch costs ``factor``
    times as much (the last one reached applies)."""
    clock = _Clock()
    monkeypatch.setattr(halving.time, "perf_counter", clock)
    monkeypatch.setattr(halving, "_show", lambda *a: None)

    def advance(plan: Any, prep: Any, i: int, run: Any, stop: int | None, t: Tracked,
                deadline: float | None = None) -> None:
        end = prep.cfg.epochs
        target = end if stop is None else stop
        if costs[i] == 0:
            t.position, t.done, t.per_epoch = end, True, 0.0
        while not t.done and t.position < target:
            c = costs[i] * (late if t.position >= end / 2 else 1.0) * (slow if t.position >= 1 else 1.0)
            c *= next((f for at, f in reversed(speeds) if clock.now >= at), 1.0)
            if deadline is not None and clock.now + (t.per_epoch or 0.0) * SAFETY > deadline:
                t.timed_out = True
                break
            clock.now += c
            t.position, t.epochs, t.per_epoch = t.position + 1, t.epochs + 1, c
            t.probe = c if t.probe is None else t.probe
        t.done = t.done or t.position >= end
        rec = {"label": str(i), "validators": {"im": quality[i] * (1 - 0.5 ** t.position)}}
        t.run = CandidateRun(rec, cast(TransferModel, None))

    def retrain(plan: Any, prep: Any, i: int, run: Any, wrapper: Pausing) -> CandidateRun:
        for _ in range(prep.cfg.epochs):
            if clock.now + wrapper.per_epoch * SAFETY > wrapper.deadline:  # type: ignore[operator]
                raise Paused(cast(AdaptContext, None))
            clock.now += costs[i] * slow
        if isinstance(longer, Exception):
            raise longer
        score = quality[i] * (1 - 0.5 ** prep.cfg.epochs) if longer is None else longer
        rec = {"label": str(i), "validators": {"im": score}}
        return CandidateRun(rec, cast(TransferModel, None))

    monkeypatch.setattr(halving, "advance", advance)
    monkeypatch.setattr(halving, "train_candidate", retrain)
    cands = [SimpleNamespace(label=str(i), method=_Two()) for i in range(len(costs))]
    plan = cast(AdaptPlan, SimpleNamespace(candidates=cands,
                                           spec=SimpleNamespace(validator="im")))
    prep = Prepared(cast(TransferModel, None), {}, cast(AdaptData, None), TrainConfig(epochs=full))
    deadline = budget
    runs, rungs = halving._halve(plan, prep, cast(RunDir, None), deadline, 0.0)
    return rungs, [r.record["label"] for r in runs], clock.now, deadline


FONT = [1.8, 2.8, 3.0, 2.4, 3.5, 2.6, 0.0, 1.9]  #: fontdigits->digits8's seconds per epoch (docs/adapt_auto.json)


def test_the_schedule_is_sized_from_the_mean_survivor_and_the_finalists_finish_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheaper survivors (the best-scored here) finish the whole schedule the budget fits: 56 epochs, where
    assuming the dearest candidates survive (the old plan) sized it shorter."""
    quality = [1.0, 1.1, 1.2, 1.0, 0.9, 2.0, 1.5, 2.1]
    rungs, picked, end, deadline = _simulate(monkeypatch, FONT, quality, 56, 440.0)
    probe, *rest = rungs
    assert probe["epochs"] == 56 and rest[-1]["epochs"] == 56 and rest[-1]["final_epochs"] == 56
    assert set(rest[-1]["scores"]) == {"5", "7"} and picked[0] == "7" and end <= deadline
    ts = [Tracked(position=1, epochs=1, per_epoch=c, done=c == 0) for c in FONT]
    stops = rung_epochs(56, 8)
    dearest = SAFETY * (  # the old plan's assumption (the dearest survive each rung), by hand
        sum(FONT) * (stops[0] - 1) + sum(sorted(FONT)[-4:]) * (stops[1] - stops[0])
        + sum(sorted(FONT)[-2:]) * (stops[3] - stops[1]))
    assert dearest > deadline - probe["probe_seconds"] and fit_epochs(ts, 56, probe["seconds_left"]) == 56


def test_a_machine_slower_after_the_probe_ends_with_the_best_s_whole_schedule(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The load doubles after the probe (as fontdigits->digits8 at load 10): the finalists would stop at half of
    their schedule, so the validator's best after the first rung finishes its schedule alone, within the deadline."""
    quality = [1.0, 1.1, 1.2, 1.0, 0.9, 2.0, 1.5, 2.1]
    rungs, picked, end, deadline = _simulate(monkeypatch, FONT, quality, 56, 440.0, slow=1.8)
    probe, *rest = rungs
    assert probe["epochs"] == 56 and "finished its schedule alone" in rest[-1]["note"]
    assert rest[-1]["epochs"] == 56 and picked == ["7"] and end <= deadline


def test_the_runner_up_follows_the_best_alone_at_the_pace_the_best_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    """The load doubles after the probe, then drops (to 0.45 of that) just after the first rung, as in
    fontdigits->digits8 seed 1: the best finishes alone, and the runner-up, last timed at the busy moment, is
    costed at the pace the best ran alone, so it finishes its schedule too, within the deadline; a machine that
    stays slow leaves it out."""
    quality = [1.0, 1.1, 1.2, 1.0, 0.9, 2.0, 1.5, 2.1]
    rungs, picked, end, deadline = _simulate(monkeypatch, FONT, quality, 56, 440.0, slow=1.8, speeds=((200.0, 0.45),))
    assert "alone, then the runner-up" in rungs[-1]["note"] and picked == ["7", "5"] and end <= deadline
    assert rungs[-1]["positions"] == {"7": 56, "5": 56}
    rungs, picked, end, deadline = _simulate(monkeypatch, FONT, quality, 56, 440.0, slow=1.8)
    assert "runner-up" not in rungs[-1]["note"] and picked == ["7"] and end <= deadline
    # the load comes back while the runner-up trains: the deadline stops it mid-schedule, and it is left out
    rungs, picked, end, deadline = _simulate(monkeypatch, FONT, quality, 56, 440.0, slow=1.8,
                                             speeds=((200.0, 0.45), (300.0, 4.0)))
    assert "then the runner-up (the deadline came before its end: left out)" in rungs[-1]["note"]
    assert picked == ["7"] and rungs[-1]["positions"]["5"] < 56


def test_time_left_after_the_last_rung_trains_the_pick_again_with_a_longer_schedule(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine got twice as fast after the probe: the schedule sized then (fewer than 56 epochs) leaves time,
    and the pick runs again with a longer schedule from its first step, within the deadline."""
    quality = [1.0, 1.1, 1.2, 1.0, 0.9, 2.0, 1.5, 2.1]
    rungs, picked, end, deadline = _simulate(monkeypatch, FONT, quality, 56, 300.0, slow=0.5)
    probe, *rest, longer = rungs
    assert probe["epochs"] < 56 and rest[-1]["final_epochs"] == probe["epochs"] and "note" not in rest[-1]
    assert longer["rung"] == "longer" and longer["epochs"] >= 1.25 * probe["epochs"] and picked[0] == "7"
    assert end <= deadline
    rungs, _, end, deadline = _simulate(monkeypatch, FONT, quality, 56, 300.0)  # as fast as measured: no time left
    assert rungs[-1]["rung"] != "longer" and end <= deadline


@pytest.mark.parametrize("outcome", [0.01, RuntimeError("diverged")])
def test_a_longer_run_that_scores_lower_or_fails_leaves_the_finished_runs(
        monkeypatch: pytest.MonkeyPatch, outcome: float | Exception) -> None:
    """The retrained pick scores lower by the validator than its shorter run (or fails): the shorter run stays
    among the finalists, so the validator still picks the best of everything that finished."""
    quality = [1.0, 1.1, 1.2, 1.0, 0.9, 2.0, 1.5, 2.1]
    rungs, picked, end, deadline = _simulate(monkeypatch, FONT, quality, 56, 300.0, slow=0.5, longer=outcome)
    longer = rungs[-1]
    assert longer["rung"] == "longer" and picked[0] == "7" and end <= deadline
    assert ("run kept" in longer["note"]) and ("failed" in longer["note"]) == isinstance(outcome, Exception)


@pytest.mark.parametrize("late", [1.0, 1.6, 4.0])
@pytest.mark.parametrize("seed", range(12))
def test_the_plan_never_passes_the_deadline(monkeypatch: pytest.MonkeyPatch, seed: int, late: float) -> None:
    """Any costs, scores and budget (the probe's epochs fit), later epochs up to 4x dearer than the probe's: the
    clock ends before the deadline when the seconds measured hold (the per-epoch check), at most one epoch after
    it when they rise, and the last rung ends at its planned position unless the deadline came."""
    rng = random.Random(seed)
    costs = [rng.choice([0.0, rng.uniform(0.5, 5.0)]) for _ in range(rng.randint(2, 8))]
    quality = [rng.uniform(1, 2) for _ in costs]
    full = rng.choice([4, 12, 56])
    budget = rng.uniform(0.1, 1.5) * full * sum(costs) / 2 + rng.uniform(0, 5)  # a tenth of all fully to 1.5 x
    rungs, picked, end, deadline = _simulate(monkeypatch, costs, quality, full, max(budget, 1.2 * sum(costs)), late)
    # past the deadline by one epoch dearer than the last one measured at most (the reserve covers it)
    assert end <= deadline + (0.0 if late == 1 else max(costs) * late) and picked
    last = rungs[-2] if rungs[-1]["rung"] == "longer" else rungs[-1]
    note = last.get("note", "")
    assert "skipped" in last or "as it stands" in note or "alone" in note or all(
        p >= last["epochs"] for p in last["positions"].values())


def _ctx(model: TransferModel, slices: Any, target: Any, epochs: int) -> AdaptContext:
    (s_tr, s_va), (t_tr, t_va) = slices, target
    cfg = TrainConfig(epochs=epochs, batch_size=32, precision="fp32", progress="off", seed=0, optimizer="sgd", lr=0.01)
    return AdaptContext(model, s_tr, s_va, t_tr, t_va, cfg)


def test_a_paused_plan_continues_its_schedule(source_model: TransferModel, source_slices: Any, target_inputs: Any,
                                              tmp_path: Path) -> None:
    """Paused after 3 of 4 epochs (in self-training's second phase) and resumed, a candidate trains at the
    learning rates of one uninterrupted run: the schedule spans the plan, a rung does not restart it."""
    opts = {"base": "mcc", "base_fraction": "0.5", "threshold": "0.5"}
    whole = run_method(make_method("self_training", opts), _ctx(copy.deepcopy(source_model), source_slices,
                                                                 target_inputs, 4), tmp_path / "whole")
    paused = Pausing(make_method("self_training", opts), 3)
    ctx = _ctx(copy.deepcopy(source_model), source_slices, target_inputs, 4)
    with pytest.raises(Paused) as caught:
        run_method(paused, ctx, tmp_path / "halved")
    assert caught.value.ctx is ctx and len(paused.starts) == 3 and [r.epochs_run for r in ctx.results] == [2]
    again = Pausing(make_method("self_training", opts), 1 << 30)
    rest = run_method(again, _ctx(copy.deepcopy(source_model), source_slices, target_inputs, 4), tmp_path / "halved")
    assert len(again.starts) == 1  # only epoch 4 trained now
    lrs = [[h["lr"] for h in r.history] for r in rest]
    assert lrs == [[h["lr"] for h in r.history] for r in whole]
    assert lrs[1][0] > lrs[1][1] > 0  # a decaying schedule, not one restarted per rung


def test_auto_with_a_budget_prunes_and_the_survivor_trains_its_whole_plan(source_run: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    res = adapt(source_run, "mnist5k", "digits8", method="auto", budget="10m", out=tmp_path / "run",
                options={"candidates": "source_only,coral,mmd,dann", "trade_offs": "1"}, epochs=4,
                batch_size=64, precision="fp32", progress="off", max_source=300, max_target=200)
    probe, *rungs = res.metrics["rungs"]
    assert probe["rung"] == "probe" and probe["epochs"] == 4 and set(probe["seconds_per_epoch"]) == {
        "source_only", "coral(trade_off=1.0)", "mmd(trade_off=1.0)", "dann(trade_off=1.0)"}
    assert [r["epochs"] for r in rungs] == [1, 2, 4] and [len(r["scores"]) for r in rungs] == [4, 2, 2]
    assert all(set(b["scores"]) == set(a["kept"]) for a, b in itertools.pairwise(rungs))
    assert res.metrics["chosen"] == rungs[-1]["kept"][0]
    finalists = res.metrics["candidates"]  # both trained their whole plan: 4 epochs, as a full run
    assert {c["label"] for c in finalists} == set(rungs[-1]["scores"])
    assert len(finalists) == 2 and res.metrics["phases"][0]["epochs"] == 4
    err = capsys.readouterr().err
    assert "[auto rung probe] coral(trade_off=1.0): epoch 1/4 (step 5/20) im " in err
    assert "[auto rung 2]" in err


def test_a_short_budget_shortens_every_schedule(source_run: Path, tmp_path: Path) -> None:
    """A budget the full plan cannot fit: the epochs are cut from the start (one schedule per candidate), and
    the run ends within the budget (give or take the scoring after it)."""
    t0 = time.perf_counter()
    res = adapt(source_run, "mnist5k", "digits8", method="auto", budget="45s",
                options={"candidates": "coral,mmd,dann", "trade_offs": "1"}, epochs=400,
                batch_size=64, precision="fp32", progress="off", max_source=300, max_target=200)
    assert time.perf_counter() - t0 < 45 + 20
    probe = res.metrics["rungs"][0]
    assert probe["epochs"] < 400 and "budget is expected to fit" in probe["note"]


def test_when_nothing_more_fits_the_pick_is_the_validator_s_best_as_it_stands(
        source_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget_plan, "plan_cost", lambda *a, **kw: float("inf"))  # after the probe, nothing fits
    res = adapt(source_run, "mnist5k", "digits8", method="auto", budget="10m", target_labels_for_eval="digits8",
                options={"candidates": "coral,mmd", "trade_offs": "1"}, epochs=3, batch_size=64, precision="fp32",
                progress="off", max_source=300, max_target=200)
    probe, stop = res.metrics["rungs"]
    assert probe["epochs"] == 1 and stop["skipped"] == "would exceed the budget"
    assert set(probe["seconds_per_epoch"]) == {"coral(trade_off=1.0)", "mmd(trade_off=1.0)"}
    assert res.metrics["chosen"] == max(probe["scores"], key=probe["scores"].get)  # by the validator alone
    (only,) = res.metrics["candidates"]  # the pick alone, scored fully
    assert stop["kept"] == [only["label"]] == [res.metrics["chosen"]] and "target_accuracy" in only
