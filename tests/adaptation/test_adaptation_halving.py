"""``adapt --method auto --budget``: successive halving on the label-free validator."""

from __future__ import annotations

import copy
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from transferkit.adaptation.api import adapt
from transferkit.adaptation.base import AdaptContext, run_method
from transferkit.adaptation.halving import (
    SAFETY,
    Paused,
    Pausing,
    Tracked,
    fit_epochs,
    plan_cost,
    rung_epochs,
    survivors,
)
from transferkit.adaptation.methods import make_method
from transferkit.adaptation.spec import AdaptSpec, parse_budget
from transferkit.cli import main
from transferkit.engine.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.models import TransferModel


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
    return [Tracked(epochs=1, per_epoch=p, overhead=overhead) for p in per_epoch]


def test_plan_cost_counts_the_dearest_survivors_and_the_epochs_left() -> None:
    ts = _tracked([1.0, 2.0, 4.0, 8.0])
    # rungs to 2 and 4 epochs, 4 then 1 alive, all at epoch 1: (1+2+4+8) * 1 more epoch, then the dearest 2 more
    assert plan_cost(ts, [2, 4], [4, 1]) == pytest.approx(SAFETY * (15 + 8 * 2))
    ts[3].done = True  # a finished candidate costs nothing more
    assert plan_cost(ts, [2, 4], [4, 1]) == pytest.approx(SAFETY * (7 + 4 * 2))


def test_fit_epochs_shrinks_the_schedule_to_the_budget() -> None:
    ts = _tracked([1.0] * 8)
    need = {e: plan_cost(ts, rung_epochs(e, 8), survivors(8, len(rung_epochs(e, 8)))) for e in range(1, 41)}
    assert fit_epochs(ts, 40, need[40] + 1) == 40  # all of it fits: the run's own epochs
    assert fit_epochs(ts, 40, need[20]) == max(e for e in need if need[e] <= need[20]) < 40
    assert fit_epochs(ts, 40, 0.0) == 1  # nothing fits: the probe's epoch
    assert all(need[a] <= need[b] for a, b in zip(range(1, 40), range(2, 41), strict=True))


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
    assert probe["epochs"] < 400 and "budget fits" in probe["note"]


def test_when_nothing_more_fits_the_pick_is_the_validator_s_best_as_it_stands(
        source_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transferkit.adaptation import halving

    monkeypatch.setattr(halving, "plan_cost", lambda *a, **kw: float("inf"))  # after the probe, nothing fits
    res = adapt(source_run, "mnist5k", "digits8", method="auto", budget="10m", target_labels_for_eval="digits8",
                options={"candidates": "coral,mmd", "trade_offs": "1"}, epochs=3, batch_size=64, precision="fp32",
                progress="off", max_source=300, max_target=200)
    probe, stop = res.metrics["rungs"]
    assert probe["epochs"] == 1 and stop["skipped"] == "would exceed the budget"
    assert set(probe["seconds_per_epoch"]) == {"coral(trade_off=1.0)", "mmd(trade_off=1.0)"}
    assert res.metrics["chosen"] == max(probe["scores"], key=probe["scores"].get)  # by the validator alone
    (only,) = res.metrics["candidates"]  # the pick alone, scored fully
    assert stop["kept"] == [only["label"]] == [res.metrics["chosen"]] and "target_accuracy" in only
