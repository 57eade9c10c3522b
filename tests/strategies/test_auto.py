"""The ``auto`` strategy: its signals, the negative-transfer guard, its rules and its budgeted search."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.errors import ConfigError
from transferkit.runs import load_run
from transferkit.strategies.auto import (
    Auto,
    AutoOptions,
    can_change,
    candidates_for,
    cross_fit_correct,
    nearest_mean_accuracy,
    paired_gap,
    rank_with_tolerance,
    val_tolerance,
)


def _blobs(n_per: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), n_per)
    x = rng.normal(size=(len(y), 5))
    x[np.arange(len(y)), y] += 3.0
    return x, y


def test_nearest_mean_accuracy_matches_a_direct_loop() -> None:
    x_tr, y_tr = _blobs(10, 0)
    x_te, y_te = _blobs(5, 1)
    mu = x_tr.mean(0)

    def unit(a: np.ndarray) -> np.ndarray:
        return (a - mu) / np.linalg.norm(a - mu, axis=1, keepdims=True)

    means = [unit(x_tr)[y_tr == c].mean(0) for c in range(4)]
    pred = [int(np.argmax([unit(x[None])[0] @ m for m in means])) for x in x_te]
    assert nearest_mean_accuracy(x_tr, y_tr, x_te, y_te) == pytest.approx(np.mean(np.array(pred) == y_te))


def test_cross_fit_scores_every_sample_once_by_a_probe_that_never_saw_it() -> None:
    a, ya = _blobs(3, 0)
    b, yb = _blobs(2, 1)
    c = cross_fit_correct(a, ya, b, yb)
    assert c.shape == (len(ya) + len(yb),)
    assert c.mean() == pytest.approx((nearest_mean_accuracy(a, ya, b, yb) * len(yb)
                                      + nearest_mean_accuracy(b, yb, a, ya) * len(ya)) / (len(ya) + len(yb)))


def test_paired_gap_is_the_mean_difference_and_its_standard_error() -> None:
    raw = np.array([1, 1, 1, 0, 1, 0, 1, 1], bool)
    feat = np.array([1, 0, 1, 0, 0, 0, 1, 0], bool)
    d = raw.astype(float) - feat.astype(float)
    gap, se = paired_gap(raw, feat)
    assert gap == pytest.approx(d.mean())
    assert se == pytest.approx(np.sqrt(np.sum((d - d.mean()) ** 2) / (len(d) - 1)) / np.sqrt(len(d)))


def test_candidates_keep_source_knowledge_when_labels_are_scarce() -> None:
    assert candidates_for(1)[0] == "linear_probe"
    assert "full" not in candidates_for(2)
    assert candidates_for(5)[0] == "l2sp"
    assert candidates_for(10)[0] == candidates_for(100)[0] == "lp_ft"


def _sig(pf: float, raw: float, se: float, n: int = 100, classes: int = 10) -> dict[str, float]:
    chance = 1 / classes
    return {"shots_per_class": 5, "classes": classes, "probe_n": n, "probe_features": pf, "chance": chance,
            "chance_se": math.sqrt(chance * (1 - chance) / n), "probe_raw_inputs": raw,
            "raw_minus_features": raw - pf, "gap_se": se}


def test_rules_fire_the_guard_only_on_a_clear_gap() -> None:
    auto = Auto(AutoOptions())
    assert auto.rules(_sig(0.12, 0.9, 0.03))[0] == ["scratch"]  # features at chance
    cands, reason = auto.rules(_sig(0.56, 0.76, 0.05))  # 20 pt gap, 4 standard errors
    assert cands == ["scratch", "full"] and "mismatched" in reason
    assert auto.rules(_sig(0.70, 0.80, 0.06))[0] == candidates_for(5)  # 10 pt, under 2 standard errors
    assert auto.rules(_sig(0.94, 0.80, 0.04))[0] == candidates_for(5)


def test_ties_within_tolerance_keep_the_prior_order() -> None:
    prior = ["linear_probe", "wise_ft", "lp_ft"]
    assert rank_with_tolerance({"linear_probe": 0.80, "wise_ft": 0.82, "lp_ft": 0.70}, prior, 0.05) == prior
    assert rank_with_tolerance({"linear_probe": 0.70, "wise_ft": 0.82, "lp_ft": 0.90}, prior, 0.05)[:2] == \
        ["lp_ft", "wise_ft"]


def test_the_search_stops_only_when_no_further_score_could_change_the_winner() -> None:
    prior = ["l2sp", "full", "lp_ft"]
    assert val_tolerance(1.0, 50) == pytest.approx(0.01)  # the 1/4n floor: half a sample in 50
    assert not can_change({"l2sp": 1.0}, prior[:1], 50)  # perfect: nothing can beat it by a tolerance
    assert can_change({"l2sp": 0.98}, prior[:1], 50)  # a perfect newcomer beats 0.98 by more than 0.01
    assert not can_change({"l2sp": 0.99, "full": 1.0}, prior[:2], 100)  # the leader is full, perfect
    assert can_change({"l2sp": 0.6, "full": 0.95}, prior[:2], 20)  # 1.0 - 0.025 > 0.95: full could lose


def test_auto_records_its_signals_and_choice(source_run: Path) -> None:
    res = transferkit.transfer(load_run(source_run), "digits8", strategy="auto", shots=5, epochs=3)
    auto = res.metrics["strategy_info"]["auto"]
    assert auto["choice"] in auto["candidates"]
    assert {"shots_per_class", "probe_features", "probe_raw_inputs", "logme_features", "gap_se"} <= set(auto["signals"])
    assert auto["signals"]["shots_per_class"] == 5
    assert auto["signals"]["probe_n"] == 100  # train and validation draws, cross-fitted


def test_negative_transfer_guard_picks_scratch_for_a_useless_source(source_run: Path) -> None:
    src = load_run(source_run)
    with torch.no_grad():  # a backbone whose features carry nothing about the input
        src.model.groups["fc"][-2].weight.zero_()
    res = transferkit.transfer(src, "digits8", strategy="auto", shots=5, epochs=3)
    auto = res.metrics["strategy_info"]["auto"]
    assert auto["choice"] == "scratch", auto
    assert "negative transfer" in auto["reason"]


def test_search_returns_the_model_its_winning_trial_measured(source_run: Path) -> None:
    """Every candidate runs at full length; the choice is within one SE of the best validation
    accuracy, and the final model is that trial: a direct run of the chosen strategy (same seed)
    gives the same test accuracy."""
    kw = {"shots": 2, "epochs": 3, "seed": 1}
    res = transferkit.transfer(load_run(source_run), "digits8", strategy="auto", options={"budget": "600"}, **kw)
    info = res.metrics["strategy_info"]["auto"]
    search = info["search"]
    assert len(info["candidates"]) > 1 and list(search["val_acc"]) == info["candidates"] and not search["skipped"]
    best = max(search["val_acc"].values())
    assert search["val_acc"][info["choice"]] >= best - search["tie_se"] - 1e-9
    direct = transferkit.transfer(load_run(source_run), "digits8", strategy=info["choice"], **kw)
    assert res.metrics["target"]["accuracy"] == pytest.approx(direct.metrics["target"]["accuracy"], abs=1e-6)


def test_a_budget_too_small_for_a_second_trial_keeps_the_rules_choice(source_run: Path) -> None:
    res = transferkit.transfer(load_run(source_run), "digits8", strategy="auto", shots=2, epochs=2,
                               options={"budget": "1e-6"})
    info = res.metrics["strategy_info"]["auto"]
    assert list(info["search"]["val_acc"]) == [info["candidates"][0]] == [info["choice"]]
    assert info["search"]["skipped"] == info["candidates"][1:]


def test_unlabelled_inputs_add_self_train_as_the_last_candidate(source_run: Path) -> None:
    kw = {"shots": 5, "epochs": 2, "seed": 0, "unlabelled": "rest"}
    res = transferkit.transfer(load_run(source_run), "digits8", strategy="auto", options={"budget": "600"}, **kw)
    info = res.metrics["strategy_info"]["auto"]
    assert info["candidates"][-1] == "self_train" and "self_train" in info["search"]["val_acc"], info
    if info["choice"] == "self_train":  # the winner's trial is the model: its pseudo-labelling is recorded
        assert res.metrics["strategy_info"]["self_train"]["n_pseudo"] > 0
    rules_only = transferkit.transfer(load_run(source_run), "digits8", strategy="auto", **kw)
    assert rules_only.metrics["strategy_info"]["auto"]["choice"] != "self_train"  # budget 0: the rules' choice


def test_under_torchrun_rank_zeros_clock_and_scores_decide_the_search(source_run: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Each rank times its own trials; if each decided from its own clock, one rank could start a
    trial the other skips and both would hang in its collectives. The search reads every time and
    score through ``distributed.broadcast_object``: here a stand-in for rank 0 reports a trial that
    took a day, so a budget that this process's clock would allow still stops after one trial."""
    from transferkit.strategies import auto as auto_mod

    seen: list[object] = []

    def rank0(obj: object, src: int = 0) -> object:
        seen.append(obj)
        return (obj[0], 86_400.0) if isinstance(obj, tuple) and len(obj) == 2 else obj

    monkeypatch.setattr(auto_mod.distributed, "broadcast_object", rank0)
    res = transferkit.transfer(load_run(source_run), "digits8", strategy="auto", shots=2, epochs=2,
                               options={"budget": "3600"})
    info = res.metrics["strategy_info"]["auto"]
    assert isinstance(seen[0], dict) and "shots_per_class" in seen[0]  # the signals: one view for the rules
    assert info["search"]["seconds"] == {info["choice"]: 86_400.0} and info["search"]["stopped"] == "budget"
    assert info["search"]["skipped"] == info["candidates"][1:]


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="budget"):
        transferkit.transfer("unused", "digits8", strategy="auto", options={"budget": "-1"})
    with pytest.raises(ConfigError, match="margin"):
        AutoOptions(margin=-0.1)
