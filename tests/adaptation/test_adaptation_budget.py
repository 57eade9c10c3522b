"""The iteration budget, augmentation wiring, auto's candidate syntax, two-phase self-training, CDAN's
random map, ``adapt --help`` defaults, all-image scoring and the held-out split ``evaluate`` should use."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import transferkit
from transferkit.adaptation import cli as adapt_cli
from transferkit.adaptation import make_method
from transferkit.adaptation.adversarial import RandomMap
from transferkit.adaptation.api import adapt, epochs_for, heldout_target, method_candidates, unlabelled_split
from transferkit.adaptation.base import AdaptContext, run_method
from transferkit.data import load_dataset
from transferkit.engine.config import TrainConfig
from transferkit.errors import ConfigError

Slices = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _cfg(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "precision": "fp32", "progress": "off", "seed": 0, **kw})


@pytest.mark.parametrize(("iterations", "n", "bs", "epochs"), [(500, 3500, 64, 10), (1, 10, 64, 1), (100, 129, 64, 50),
                                                               (55, 3500, 64, 1), (56, 3500, 64, 2)])
def test_epochs_for_gives_at_least_the_iterations(iterations: int, n: int, bs: int, epochs: int) -> None:
    assert epochs_for(iterations, n, bs) == epochs
    per_epoch = n // min(bs, n) if n % min(bs, n) == 1 else -(-n // min(bs, n))
    assert per_epoch * epochs >= iterations > per_epoch * (epochs - 1)


def test_auto_candidate_syntax() -> None:
    c = method_candidates("auto", {"candidates": "source_only,mcc:temperature=2,self_training:base=mcc:mcc=1",
                                   "trade_offs": "0.5,1"})
    labels = [label for label, _, _ in c]
    assert labels == ["source_only", "mcc(temperature=2, trade_off=0.5)", "mcc(temperature=2, trade_off=1.0)",
                      "self_training(base=mcc, mcc=1, trade_off=0.5)", "self_training(base=mcc, mcc=1, trade_off=1.0)"]
    assert c[1][2] == {"temperature": "2", "trade_off": "0.5"}
    fixed = method_candidates("auto", {"candidates": "mcc:trade_off=3", "trade_offs": "0.5,1"})
    assert fixed == [("mcc(trade_off=3)", "mcc", {"trade_off": "3"})]
    with pytest.raises(ConfigError, match="options must be key=value"):
        method_candidates("auto", {"candidates": "mcc:oops"})


def test_self_training_splits_the_budget_and_augmented_phases_train(source_model: Any, source_slices: Slices,
                                                                     target_inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    (s_tr, s_va), (t_tr, t_va) = source_slices, target_inputs
    ctx = AdaptContext(source_model, s_tr, s_va, t_tr, t_va, _cfg(epochs=4), augment=True)
    m = make_method("self_training", {"base": "mcc", "mcc": "1", "base_fraction": "0.5", "threshold": "0.5"})
    results = run_method(m, ctx)
    assert [r.name for r in results] == ["mcc", "self_training"] and [r.epochs_run for r in results] == [2, 2]
    assert all(np.isfinite(r.history[-1]["train_loss"]) for r in results)
    with pytest.raises(ConfigError, match="base_fraction"):
        make_method("self_training", {"base_fraction": "0"})


def test_cdan_uses_the_random_map_above_max_map_dim(source_model: Any, source_slices: Slices,
                                                    target_inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    (s_tr, s_va), (t_tr, t_va) = source_slices, target_inputs
    ctx = AdaptContext(source_model, s_tr, s_va, t_tr, t_va, _cfg(epochs=1))
    phase = next(make_method("cdan", {"max_map_dim": "64"}).phases(ctx))
    assert isinstance(phase.module.random_map, RandomMap)
    assert phase.module.discriminator[0].in_features == 64
    assert "random_map.r_features" in phase.module.state_dict()
    full = next(make_method("cdan").phases(AdaptContext(source_model, s_tr, s_va, t_tr, t_va, _cfg(epochs=1))))
    dim = source_model.feature_dim * source_model.num_classes
    assert getattr(full.module, "random_map", None) is None or dim > 4096


def test_adapt_help_shows_the_adaptation_defaults() -> None:
    p = argparse.ArgumentParser(prog="transferkit")
    adapt_cli.add_parsers(p.add_subparsers(dest="command", required=True))
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices["adapt"]
    helps = {a.dest: a.help or "" for a in sub._actions}
    assert "default for adapt: sgd" in helps["optimizer"] and "adamw)" not in helps["optimizer"]
    assert "0.01" in helps["lr"] and "0 with sgd" in helps["grad_clip"]
    assert "iterations" in helps and "restyle_source" in helps
    assert "re-style" in helps["restyle_source"] and "re-style" not in helps["augment"]  # the training policy


def test_adapt_iterations_all_images_and_evaluate_heldout(source_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "da"
    res = adapt(source_run, "mnist5k", "digits8", method="mcc", out=out, target_labels_for_eval="digits8",
                iterations=12, batch_size=64, precision="fp32", progress="off", max_source=300, restyle_source=True)
    m = res.metrics
    assert m["phases"][0]["epochs"] == 3  # 300 examples at batch 64: 5 steps per epoch
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["grad_clip"] == 0.0 and cfg["iterations"] == 12 and cfg["restyle_source"] is True
    assert m["target_all"]["data"] == "digits8" and m["target"]["data"].endswith(":heldout")
    n = len(load_dataset("digits8"))
    assert m["target_all"]["n"] == n and m["target"]["n"] == len(unlabelled_split(n, val=0.15, test=0.3, seed=0)[2])
    ds = load_dataset("digits8", model=transferkit.load_run(out).spec, seed=0)
    held = heldout_target(cfg, "digits8", ds)
    assert held is not None and len(held) == len(unlabelled_split(n, val=0.15, test=0.3, seed=0)[2])
    assert heldout_target(cfg, "mnist5k", ds) is None
    assert heldout_target({**cfg, "command": "transfer"}, "digits8", ds) is None
    scored = transferkit.evaluate(out, "digits8", save=False)["target"]  # the same held-out part adapt reported
    assert scored["accuracy"] == pytest.approx(m["target"]["accuracy"])
    with pytest.raises(ConfigError, match="iterations must be at least 1"):
        adapt(source_run, "mnist5k", "digits8", iterations=0)
