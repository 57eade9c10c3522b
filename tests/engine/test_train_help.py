"""Every training flag's --help states the default the command actually uses (pretrain and transfer
differ; a transfer default a backbone recipe may set says so)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

import transferkit
from transferkit.cli import COMMAND_DEFAULTS, RECIPE_FIELDS, build_parser, train_default
from transferkit.engine.config import MAX_EPOCHS_ENV, TrainConfig
from transferkit.strategies.base import TransferContext
from transferkit.strategies.recipes import RECIPES

COMMANDS = ("pretrain", "transfer", "federate", "adapt")


def _helps(command: str) -> dict[str, str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    return {a.dest: " ".join((a.help or "").split()) for a in parser._actions}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_training_flag_states_a_default(command: str) -> None:
    helps = _helps(command)
    for name in TrainConfig.field_help():
        if name != "seed":
            assert re.search(r"\(default[^)]*: .+\)$", helps[name]), (command, name, helps[name])


def test_pretrain_states_the_epochs_it_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: `pretrain --help` said 40 (TrainConfig's) while pretrain trains 8."""
    from transferkit.data.tabular_prep import TABULAR_EPOCHS

    assert _helps("pretrain")["epochs"].endswith(f"(default: 8; tables: {TABULAR_EPOCHS})")
    monkeypatch.setenv(MAX_EPOCHS_ENV, "1")  # the cap applies in the loop; config.json records the setting
    transferkit.pretrain("digits8", "mlp", tmp_path / "run", model_kwargs={"hidden": 16}, progress="off")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["epochs"] == 8


def test_transfer_states_the_recipe_and_the_fallback() -> None:
    helps = _helps("transfer")
    assert "else 40" in helps["epochs"] and TrainConfig.default("epochs") == 40
    assert f"a linear probe on cached features: {TransferContext.probe_epochs}" in helps["epochs"]
    for name in RECIPE_FIELDS:
        assert "from the backbone's recipe where it has one" in helps[name], name
    assert helps["weight_decay"].endswith(f"(default: {TrainConfig.default('weight_decay')})")


def test_the_recipe_fields_are_what_the_recipes_set() -> None:
    recipe_keys = {k for r in RECIPES.values() for k in r.settings} - {"head_lr_scale", "augment"}
    assert set(RECIPE_FIELDS) == recipe_keys


def test_federate_says_epochs_is_not_what_sets_its_rounds() -> None:
    assert "--local-epochs" in _helps("federate")["epochs"]
    assert train_default("federate", "progress") == "off" == COMMAND_DEFAULTS["federate"]["progress"]
