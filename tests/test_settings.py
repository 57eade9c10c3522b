"""Settings are resolved once, before training: user > recipe > command default > TrainConfig default."""

from __future__ import annotations

import pytest

from transferkit.engine.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.strategies.recipes import RECIPES, resolve_settings


def test_the_user_wins_then_the_recipe_then_the_defaults() -> None:
    s = resolve_settings("efficientnet_lite0", "lp_ft", {"lr": 3e-3}, seed=4)
    assert (s.cfg.lr, s.cfg.batchnorm, s.cfg.batch_size, s.cfg.epochs, s.cfg.seed) == (3e-3, "frozen", 16, 5, 4)
    assert s.provenance["lr"] == "user" and s.provenance["batchnorm"] == "recipe (efficientnet_lite0, lp_ft)"
    assert s.provenance["optimizer"] == "default" and s.provenance["seed"] == "run seed"
    assert s.applied == {"batchnorm": "frozen", "batch_size": 16, "epochs": 5} and s.given == {"lr"}
    assert s.recipe is RECIPES["efficientnet_lite0", "lp_ft"] and s.head_lr_scale == 10.0
    assert set(s.provenance) == set(TrainConfig.field_help()) | {"head_lr_scale"}


def test_head_rate_from_the_recipe_and_augment_auto_is_no_choice() -> None:
    s = resolve_settings("minilm", "lp_ft", {}, seed=0)
    assert (s.cfg.lr, s.head_lr_scale, s.provenance["head_lr_scale"]) == (6e-5, 50.0, "recipe (minilm, lp_ft)")
    s = resolve_settings("small_cnn", "full", {"augment": "auto"}, seed=0)
    assert (s.cfg.augment, s.provenance["augment"]) == ("affine", "recipe (small_cnn, full)")
    s = resolve_settings("small_cnn", "full", {"augment": "off"}, seed=0)
    assert (s.cfg.augment, s.provenance["augment"], s.recipe) == ("off", "user", None)


def test_no_recipe_for_auto_and_command_defaults() -> None:
    s = resolve_settings("efficientnet_lite0", "auto", {}, seed=0)
    assert s.cfg == TrainConfig() and s.recipe is None and s.recipe_record("efficientnet_lite0", "auto") is None
    s = resolve_settings("small_cnn", "scratch", {}, seed=0, command="pretrain")
    assert (s.cfg.epochs, s.provenance["epochs"]) == (8, "command default")
    s = resolve_settings("mlp", "scratch", {"epochs": 3}, seed=0, command="pretrain", command_defaults={"epochs": 100})
    assert (s.cfg.epochs, s.provenance["epochs"]) == (3, "user")


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="unknown training option 'lrr'"):
        resolve_settings("small_cnn", "full", {"lrr": 1.0}, seed=0)
    with pytest.raises(ConfigError, match="optimizer='adam' is not one of"):
        resolve_settings("small_cnn", "full", {"optimizer": "adam"}, seed=0)
