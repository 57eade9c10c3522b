"""benchmarks/adapt_auto.py: the verdict per pair (within the budget and within 1 point of every candidate run
fully, label-free choice in both), the choices it compares, and the committed page is its JSON rendered."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
bench = pytest.importorskip("adapt_auto")
report = pytest.importorskip("adapt_auto_report")

CANDS = ["mcc", "dann", "self_training:base=mcc"]
MACHINE = {"cpu_model": "cpu", "usable_cpus": 2, "torch": "2", "torch_threads": 1, "load_average_start": [1.0]}


def _full(pair: str, cand: str, acc: float, im: float) -> dict[str, Any]:
    return {"pair": pair, "seed": 0, "candidate": cand, "label": cand, "method": cand.split(":")[0], "acc": acc,
            "acc_all": acc, "validators": {"im": im}, "train_seconds": 10.0, "n_target_train": 500,
            "n_target_val": 150, "n_target_test": 300}


def _doc(auto: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Two pairs; in each, (b)'s validator picks self_training (0.90) while dann is the oracle (0.95);
    ``auto``: pair -> (wall seconds, accuracy)."""
    cells: dict[str, Any] = {}
    for pair in ("a->b", "c->d"):
        for cand, acc, im in zip(CANDS, (0.80, 0.95, 0.90), (1.0, 1.5, 2.0), strict=True):
            cells[f"full|{pair}|0|{cand}"] = _full(pair, cand, acc, im)
    for pair, (wall, acc) in auto.items():
        cells[f"auto|{pair}|0|5m"] = {"pair": pair, "seed": 0, "budget": "5m", "wall_seconds": wall, "threads": 2,
                                      "chosen": "self_training", "acc": acc, "rungs": [],
                                      "load_average_start": [1.0], "load_average_end": [1.0],
                                      "n_target_train": 500, "n_target_val": 150}
    return {"command": "python benchmarks/adapt_auto.py", "generated": "2026-12-02 14:00 UTC", "machine": MACHINE,
            "seeds": [0], "pairs": ["a->b", "c->d"], "candidates": CANDS, "budget": "5m", "validator": "im",
            "tolerance": 0.01, "quick": False, "source": {"a": {"model": "small_cnn", "model_kwargs": {},
                                                                 "epochs": 40, "optimizer": "adamw"}},
            "cells": cells, "load_average_end": [1.0, 1.0, 1.0]}


def test_held_needs_the_budget_and_one_point_of_the_label_free_full_choice() -> None:
    doc = _doc({"a->b": (290.0, 0.895), "c->d": (310.0, 0.93)})
    rows = {r["pair"]: r for r in report.pair_rows(doc)}
    assert rows["a->b"]["held"] and rows["a->b"]["full"] == 0.90 and rows["a->b"]["oracle"] == 0.95
    assert rows["a->b"]["gap"] == pytest.approx(-0.005)
    assert rows["c->d"]["held"] is False and not rows["c->d"]["in_budget"]  # accurate, but over the budget
    (fail,) = report.checks(doc)
    assert fail.startswith("c->d: auto took 310 s, over the budget 5m")
    doc = _doc({"a->b": (200.0, 0.885)})  # 1.5 points below (b)'s label-free choice
    rows = {r["pair"]: r for r in report.pair_rows(doc)}
    assert rows["a->b"]["held"] is False and rows["c->d"]["held"] is None
    assert report.checks(doc) == ["a->b: auto 88.5 vs full label-free 90.0 (-1.5 pt, must be >= -1)"]


def test_full_choice_picks_by_the_validator_and_the_oracle_by_labels() -> None:
    doc = _doc({})
    f = report.full_choice(doc, "a->b", 0)
    assert f["label_free"]["candidate"] == CANDS[2] and f["oracle"]["candidate"] == "dann"
    without = report.full_choice(doc, "a->b", 0, CANDS[:2])
    assert without["label_free"]["candidate"] == "dann"
    del doc["cells"]["full|a->b|0|mcc"]
    assert report.full_choice(doc, "a->b", 0) is None  # (b) needs every candidate


def test_the_page_states_the_verdicts_and_the_self_training_comparison() -> None:
    page = report.render(_doc({"a->b": (290.0, 0.895), "c->d": (310.0, 0.93)}))
    assert "| a->b | 1 / 1 | 290 | 89.5 | 90.0 | -0.5 | 95.0 | held |" in page
    assert "| c->d | 1 / 1 | 310 | 93.0 | 90.0 | +3.0 | 95.0 | NOT HELD |" in page
    assert "with it among the candidates vs without it, over 2 cells: -5.0 points" in page


def test_the_committed_page_is_its_json_rendered() -> None:
    doc = json.loads((ROOT / "docs" / "adapt_auto.json").read_text())
    assert (ROOT / "docs" / "ADAPT_AUTO.md").read_text() == report.render(doc)


def test_the_page_shows_where_auto_and_the_full_runs_chose_differently() -> None:
    doc = _doc({"a->b": (200.0, 0.80), "c->d": (200.0, 0.90)})
    doc["cells"]["auto|a->b|0|5m"].update(chosen="mcc(trade_off=1.0)", rungs=[
        {"rung": 3, "epochs": 56, "scores": {"mcc(trade_off=1.0)": 2.263, "self_training(base=mcc)": 2.257}}])
    md = report.render(doc)
    assert "## Where (a) and (b) chose differently" in md and "at most 1.000 apart" in md
    assert "| a->b | 0 | `mcc` 80.0 | `self_training` 90.0 | 2.263 vs 2.257 | 1.000 vs 2.000 |" in md
    assert "| c->d |" not in md.split("## Where")[1].split("## (a)")[0]  # the same choice on both sides
    del doc["cells"]["auto|a->b|0|5m"]
    assert "## Where" not in report.render({**doc, "cells": {k: v for k, v in doc["cells"].items() if "c->d" in k}})


def test_full_choice_applies_auto_s_noise_rule() -> None:
    doc = _doc({})
    doc["candidates"] = [CANDS[2], CANDS[0], CANDS[1]]  # self_training first in the order, mcc second
    doc["cells"]["full|a->b|0|mcc"]["validators"]["im"] = 2.5  # the validator's best, later in the order
    assert bench.unresampled(doc["cells"], "a->b", 0, doc["candidates"]) == [0, 1]  # best and those before it
    base = [2.0 + 0.01 * ((7 * k) % 13) for k in range(200)]
    doc["cells"]["full|a->b|0|" + CANDS[2]]["resampled"] = base
    doc["cells"]["full|a->b|0|mcc"]["resampled"] = [x + (0.001 if k % 2 else -0.001) for k, x in enumerate(base)]
    f = report.full_choice(doc, "a->b", 0)
    assert f["validator_best"]["candidate"] == "mcc" and f["label_free"]["candidate"] == CANDS[2]  # half the draws
    assert report.choice_text(f) == "self_training (`mcc` leads within noise)"
    doc["cells"]["full|a->b|0|mcc"]["resampled"] = [x + 0.001 for x in base]  # above in every resample: a lead
    assert report.full_choice(doc, "a->b", 0)["label_free"]["candidate"] == "mcc"
    assert bench.unresampled(doc["cells"], "a->b", 0, doc["candidates"]) == []


def test_the_auto_table_says_where_the_noise_rule_overrode_the_validator() -> None:
    doc = _doc({"a->b": (200.0, 0.90)})
    doc["cells"]["auto|a->b|0|5m"]["choice"] = {"validator_best": "mcc(trade_off=1.0)",
                                                "lead_share": {"self_training": 0.64}}
    assert "| self_training (`mcc` leads in 64% of the resamples: within noise) | 90.0 |" in report.render(doc)
    doc["cells"]["auto|a->b|0|5m"]["choice"] = {"validator_best": "self_training", "lead_share": {"mcc": 1.0}}
    assert "| self_training | 90.0 |" in report.render(doc)
