"""The model contract, for every registered backbone, and building from string options (the CLI's)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transferkit.errors import ConfigError
from transferkit.models import MODELS, ModelSpec, build_model, is_pretrained, wrap_module

CLASSES = [str(i) for i in range(10)]
#: Input shape and modality of each architecture built from a spec (pretrained backbones get their
#: own shape and are checked, with real inputs, in test_backbones_contract.py).
SHAPES = {"small_cnn": ((1, 28, 28), "image"), "mlp": ((1, 28, 28), "image"), "audio_cnn": ((4000,), "audio")}
ARCHITECTURES = [n for n in MODELS if not is_pretrained(n)]


def test_every_architecture_has_a_test_shape() -> None:
    assert set(ARCHITECTURES) <= set(SHAPES), f"add {set(ARCHITECTURES) - set(SHAPES)} to SHAPES"


def _spec(name: str) -> ModelSpec:
    shape, modality = SHAPES[name]
    return ModelSpec(name, shape, list(CLASSES), modality=modality)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_model_contract(name: str) -> None:
    """Shapes and groups on synthetic inputs (math only; real-data checks live in test_backbones_contract)."""
    spec = _spec(name)
    model = build_model(spec, seed=0)
    x = torch.rand(5, *spec.input_shape)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (5, model.feature_dim)
        torch.testing.assert_close(model(x), model.forward_head(feats))
    assert model(x).shape == (5, 10)
    names = [n for n, _ in model.layer_groups()]
    assert names[-1] == "head" and len(names) >= 2
    grouped = {id(p) for _, g in model.layer_groups() for p in g.parameters()}
    assert grouped == {id(p) for p in model.parameters()}, "a parameter outside every layer group"
    assert {id(p) for p in model.backbone_parameters()} == grouped - {id(p) for p in model.head.parameters()}
    model.reset_head(["a", "b", "c"])
    assert model.num_classes == 3 and model(x).shape == (5, 3)
    assert ModelSpec.from_json(model.spec.to_json()) == model.spec


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_same_seed_same_weights(name: str) -> None:
    a = build_model(_spec(name), seed=3)
    b = build_model(_spec(name), seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_string_options_are_converted_and_recorded() -> None:
    spec = ModelSpec("small_cnn", (1, 28, 28), list(CLASSES), {"width": "8", "hidden": "32", "dropout": "0.5"})
    model = build_model(spec)
    assert spec.kwargs == {"width": 8, "hidden": 32, "dropout": 0.5}
    assert model.feature_dim == 32 and model.groups["conv1"][0].out_channels == 8


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown option 'widht' for model small_cnn \\(did you mean 'width'\\?\\)"):
        build_model(ModelSpec("small_cnn", (1, 28, 28), list(CLASSES), {"widht": "8"}))
    with pytest.raises(ConfigError, match="depth='two' is not a valid int"):
        build_model(ModelSpec("mlp", (1, 28, 28), list(CLASSES), {"depth": "two"}))
    with pytest.raises(ConfigError, match="mlp depth must be at least 1"):
        build_model(ModelSpec("mlp", (1, 28, 28), list(CLASSES), {"depth": "0"}))
    with pytest.raises(ConfigError, match="small_cnn needs image input"):
        build_model(ModelSpec("small_cnn", (64,), list(CLASSES)))


def test_wrap_module_follows_the_contract() -> None:
    body = nn.Sequential()
    body.add_module("features", nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU()))
    body.add_module("classifier", nn.Linear(16, 7))
    model = wrap_module(body, "classifier", (1, 28, 28), list(CLASSES))
    assert model.feature_dim == 16 and model.num_classes == 10
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert [n for n, _ in model.layer_groups()] == ["features", "head"]
    other = nn.Sequential()
    other.add_module("classifier", nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="no submodule 'clasifier'.*did you mean 'classifier'"):
        wrap_module(other, "clasifier", (1, 28, 28), list(CLASSES))
