"""The ``auto`` strategy: its signals, the negative-transfer guard, and successive halving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.errors import ConfigError
from transferkit.runs import load_run
from transferkit.strategies.auto import candidates_for, nearest_mean_accuracy


def test_nearest_mean_accuracy_matches_a_direct_loop() -> None:
    rng = np.random.default_rng(0)
    x_tr, y_tr = rng.normal(size=(40, 5)), np.repeat(np.arange(4), 10)
    x_tr[np.arange(40), y_tr] += 3.0
    x_te, y_te = rng.normal(size=(20, 5)), np.repeat(np.arange(4), 5)
    x_te[np.arange(20), y_te] += 3.0
    mu = x_tr.mean(0)
    unit = lambda a: (a - mu) / np.linalg.norm(a - mu, axis=1, keepdims=True)  # noqa: E731
    means = [unit(x_tr)[y_tr == c].mean(0) for c in range(4)]
    pred = [int(np.argmax([unit(x[None])[0] @ m for m in means])) for x in x_te]
    assert nearest_mean_accuracy(x_tr, y_tr, x_te, y_te) == pytest.approx(np.mean(np.array(pred) == y_te))


def test_candidates_keep_features_when_labels_are_scarce() -> None:
    assert candidates_for(1)[0] in ("lp_ft", "linear_probe")
    assert "full" not in candidates_for(1)
    assert candidates_for(100)[0] == "full"


def test_auto_records_its_signals_and_choice(source_run: Path) -> None:
    res = transferkit.transfer(load_run(source_run), "digits8", strategy="auto", shots=5, epochs=3)
    auto = res.metrics["strategy_info"]["auto"]
    assert auto["choice"] in auto["candidates"]
    assert {"shots_per_class", "probe_features", "probe_raw_inputs", "logme_features"} <= set(auto["signals"])
    assert auto["signals"]["shots_per_class"] == 5


def test_negative_transfer_guard_picks_scratch_for_a_useless_source(source_run: Path) -> None:
    src = load_run(source_run)
    with torch.no_grad():  # a backbone whose features carry nothing about the input
        src.model.groups["fc"][-2].weight.zero_()
    res = transferkit.transfer(src, "digits8", strategy="auto", shots=5, epochs=3)
    auto = res.metrics["strategy_info"]["auto"]
    assert auto["choice"] == "scratch", auto
    assert "negative transfer" in auto["reason"]


def test_successive_halving_narrows_to_one_within_budget(source_run: Path) -> None:
    res = transferkit.transfer(load_run(source_run), "digits8", strategy="auto", shots=5, epochs=8,
                               options={"budget": "60"})
    rounds = res.metrics["strategy_info"]["auto"]["halving"]
    assert len(rounds[0]["val_acc"]) == 3
    assert rounds[-1]["epochs"] > rounds[0]["epochs"] or len(rounds) == 1
    assert res.metrics["strategy_info"]["auto"]["choice"] in rounds[-1]["val_acc"]


def test_bad_budget_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="budget"):
        transferkit.transfer("unused", "digits8", strategy="auto", options={"budget": "-1"})
