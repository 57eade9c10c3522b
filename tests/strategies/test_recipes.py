"""Backbone recipes: applied to the settings the user left unset, never to the ones given, recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import transferkit
from transferkit.engine import divergence
from transferkit.engine.config import TrainConfig
from transferkit.engine.loop import PhaseResult
from transferkit.models import ModelSpec, build_model
from transferkit.strategies.base import TransferContext
from transferkit.strategies.recipes import RECIPES, apply_recipe, concrete, recipe_for, resolve_settings


def _ctx(backbone: str, user_set: frozenset[str] | None) -> TransferContext:
    model = build_model(ModelSpec("small_cnn", (1, 28, 28), list("01"), {"width": 4, "hidden": 8}), 0)
    model.spec.name = backbone  # only the name is read
    x = torch.zeros(2, 1, 28, 28)
    return TransferContext(model, {}, (x, torch.tensor([0, 1])), None, TrainConfig(), lambda: model, user_set=user_set)


def test_a_recipe_fills_only_the_settings_the_user_left_unset() -> None:
    ctx = _ctx("efficientnet_lite0", frozenset({"lr"}))
    assert apply_recipe("lp_ft", ctx) == {"batchnorm": "frozen", "batch_size": 16, "epochs": 5}
    assert ctx.cfg.lr == TrainConfig().lr and (ctx.cfg.batchnorm, ctx.cfg.batch_size, ctx.cfg.epochs) == ("frozen", 16, 5)
    assert ctx.info["recipe"]["settings"]["batchnorm"] == "frozen" and "IMAGE.md" in ctx.info["recipe"]["evidence"]

    ctx = _ctx("minilm", frozenset())
    assert apply_recipe("lp_ft", ctx)["head_lr_scale"] == 50.0
    assert (ctx.cfg.lr, ctx.head_lr_scale, ctx.cfg.batch_size) == (6e-5, 50.0, 16)  # probe 3e-3, then 6e-5 x 0.5


def test_no_recipe_for_unmeasured_pairs_nor_for_contexts_built_by_hand() -> None:
    for backbone, strategy in [("efficientnet_lite0", "scratch"), ("small_cnn", "linear_probe"), ("minilm", "lora")]:
        ctx = _ctx(backbone, frozenset())
        assert recipe_for(backbone, strategy) is None and apply_recipe(strategy, ctx) == {} and "recipe" not in ctx.info
    ctx = _ctx("efficientnet_lite0", None)  # benchmarks and federated clients set their own settings
    assert apply_recipe("lp_ft", ctx) == {} and ctx.cfg == TrainConfig()


def test_every_recipe_is_valid_and_names_its_measurement() -> None:
    for rec in RECIPES.values():
        for device in ("cpu", "auto"):  # a device-dependent value resolved as a run's would be
            TrainConfig(**{k: v for k, v in concrete(rec.settings, device).items() if k != "head_lr_scale"})
        assert rec.evidence.startswith("docs/") and Path(__file__).parents[2].joinpath(rec.evidence.split(",")[0]).exists()


@pytest.fixture
def phases_seen(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the training loop with a spy: each phase's peak learning rate and BatchNorm mode."""
    seen: list[dict[str, Any]] = []

    def spy(phase: Any, cfg: TrainConfig, checkpoint: Any = None) -> PhaseResult:
        seen.append({"name": phase.name, "lr": phase.lr or cfg.lr, "batchnorm": cfg.batchnorm,
                     "scales": [g.get("lr_scale", 1.0) for g in phase.param_groups]})
        return PhaseResult(phase.name)

    monkeypatch.setattr(divergence, "fit", spy)  # the loop run_strategy's phases go through
    return seen


def test_transfer_applies_the_efficientnet_recipe_unless_the_user_sets_it(phases_seen: list[dict[str, Any]],
                                                                        tmp_path: Path) -> None:
    res = transferkit.transfer("efficientnet_lite0", "digits8", strategy="lp_ft", shots=1, out=tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())  # the resolved settings, recipe included
    assert (config["train"]["lr"], config["train"]["batchnorm"], config["recipe"]["batch_size"]) == (1e-4, "frozen", 16)
    probe, ft = phases_seen
    assert (probe["lr"], ft["lr"], ft["batchnorm"]) == (pytest.approx(1e-3), 1e-4, "frozen")
    assert res.metrics["strategy_info"]["recipe"]["settings"] == {"lr": 1e-4, "batchnorm": "frozen", "batch_size": 16,
                                                                  "epochs": 5}
    assert any("efficientnet_lite0 recipe for lp_ft: lr=0.0001, batchnorm=frozen, batch_size=16, epochs=5" in n
               for n in res.notes)

    phases_seen.clear()
    res = transferkit.transfer("efficientnet_lite0", "digits8", strategy="lp_ft", shots=1, lr=3e-3, batchnorm="train",
                               batch_size=64, epochs=5)
    assert [(p["lr"], p["batchnorm"]) for p in phases_seen] == [(pytest.approx(3e-2), "train"), (3e-3, "train")]
    assert "recipe" not in res.metrics["strategy_info"]
    assert transferkit.transfer("efficientnet_lite0", "digits8", strategy="linear_probe", shots=1,
                                out=tmp_path / "probe").metrics["strategy_info"] == {}
    assert json.loads((tmp_path / "probe" / "config.json").read_text())["recipe"] is None


@pytest.mark.parametrize(("device", "gpu_bf16", "cpu_bf16", "expected"),
                         [("cuda", True, False, "bf16"), ("cuda", False, True, "fp32"), ("auto", True, False, "bf16"),
                          ("cpu", True, False, "fp32"), ("cpu", False, True, "bf16")])
def test_minilm_contrastive_precision_follows_the_device_the_run_trains_on(
        monkeypatch: pytest.MonkeyPatch, device: str, gpu_bf16: bool, cpu_bf16: bool, expected: str) -> None:
    """Review finding: the recipe's bf16 was decided from the CPU's instructions even for a run on a GPU."""
    import transferkit.strategies.recipes as recipes

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with a GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: gpu_bf16)
    monkeypatch.setattr(recipes, "cpu_has_fast_bf16", lambda: cpu_bf16)
    given = {} if device == "auto" else {"device": device}
    s = resolve_settings("minilm", "contrastive", given, 0, new_run=False)
    assert s.cfg.precision == expected and s.applied["precision"] == expected
    assert s.provenance["precision"] == "recipe (minilm, contrastive)"
    ctx = _ctx("minilm", frozenset({"device"} if given else set()))  # the older in-training form agrees
    ctx.cfg = TrainConfig(device=device)
    assert apply_recipe("contrastive", ctx)["precision"] == expected
    assert resolve_settings("minilm", "contrastive", {**given, "precision": "fp32"}, 0, new_run=False).cfg.precision \
        == "fp32"  # the user's choice still wins
