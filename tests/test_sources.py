"""Transfer sources by name: run directories, pretrained backbones, and the plug-in seams behind them."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import ArrayDataset, PREPARERS, prepare
from transferkit.errors import CheckpointError, ConfigError, DataError
from transferkit.models import ModelSpec, TransferModel, from_pretrained, is_pretrained
from transferkit.registry import Lazy, Registry, lazy
from transferkit.runs import load_source


def test_a_run_directory_loads_with_its_config(source_run: Path) -> None:
    model, config = load_source(str(source_run))
    assert isinstance(model, TransferModel) and config["command"] == "pretrain"


def test_an_architecture_without_weights_is_not_a_source() -> None:
    assert not is_pretrained("small_cnn")
    with pytest.raises(ConfigError, match="model 'small_cnn' has no pretrained weights: pretrain it first"):
        load_source("small_cnn")


def test_unknown_source_name_suggests_a_backbone() -> None:
    with pytest.raises(CheckpointError, match="no such run directory, nor a registered backbone"):
        load_source("smal_cnn")


def test_model_options_need_a_backbone_name(source_run: Path) -> None:
    with pytest.raises(ConfigError, match="model options apply to a pretrained backbone name"):
        load_source(str(source_run), {"resolution": "96"})


def test_lazy_entries_import_on_use_and_expose_the_signature() -> None:
    reg: Registry[object] = Registry("thing")
    reg.add("colorsys_fn", lazy("colorsys", "rgb_to_hsv"), "RGB to HSV")
    entry = reg.get("colorsys_fn")
    assert isinstance(entry, Lazy)
    assert list(inspect.signature(entry).parameters) == ["r", "g", "b"]
    assert entry(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="needs a summary"):
        reg.add("nosummary", lazy("colorsys", "hls_to_rgb"))


def test_lazy_entry_does_not_import_until_used() -> None:
    sys.modules.pop("this", None)
    reg: Registry[object] = Registry("thing")
    reg.add("zen", lazy("this", "s"), "the zen")
    assert "this" not in sys.modules


def test_preparer_refuses_data_of_another_modality() -> None:
    text = ArrayDataset(np.array(["a good film", "a bad film"]), np.array([1, 0]), ["neg", "pos"], "reviews",
                        modality="text")
    with pytest.raises(DataError, match="reviews: text data cannot feed the image model small_cnn"):
        prepare(text, ModelSpec("small_cnn", (1, 28, 28), ["neg", "pos"]))
    assert "image" in PREPARERS


def test_unknown_model_modality_is_one_line() -> None:
    ds = ArrayDataset(np.zeros((2, 3), np.float32), None, [], "rows", modality="tabular")
    with pytest.raises(DataError, match="takes video inputs, which no data preparer handles"):
        prepare(ds, ModelSpec("m", (3,), [], modality="video"))


def test_from_pretrained_refuses_plain_architectures() -> None:
    with pytest.raises(ConfigError, match="pretrained backbones:"):
        from_pretrained("mlp")
