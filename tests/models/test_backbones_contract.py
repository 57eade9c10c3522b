"""The model contract, checked for EVERY registered backbone (parametrised over ``MODELS``).

A pretrained backbone is built as a transfer source (``from_pretrained``: the builder fills in its
input shape, modality and source classes); an architecture without weights gets the spec of a
small real data set of its modality. Nothing is skipped but an opt-in download (:data:`OPT_IN`:
``mpnet``'s 438 MB of weights, which CI does not install) whose packages are absent: any other
backbone whose package is missing fails with its own one-line message, and a new backbone or
modality this file does not know fails with a message saying what to add here.

Checks: forward shapes (``forward_features`` -> ``[N, feature_dim]``, logits = head(features)),
layer groups covering every parameter exactly once, ``reset_head``, and the save/load round trip
through a run directory (``api.transfer(..., out=...)`` then ``runs.load_run`` gives identical
logits). Each backbone is built once per module (weights loaded once); one small batch each.
"""

from __future__ import annotations

import copy
import csv
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import transferkit
import transferkit.models.mpnet
import transferkit.models.text
from transferkit.data import DATASETS, ArrayDataset, load_dataset
from transferkit.models import MODELS, ModelSpec, TransferModel, build_model, from_pretrained, is_pretrained
from transferkit.runs import load_run

#: A small real data set per modality (shared/DATA.md) and the file format its slice is written in.
MODALITY_DATA = {"image": "digits8", "text": "vader-tweets", "audio": "spoken-digits"}
#: The modality of each architecture without pretrained weights (its spec comes from that data).
ARCHITECTURE_MODALITY = {"small_cnn": "image", "mlp": "image", "audio_cnn": "audio"}
PER_CLASS = 4  # enough for a stratified train/val/test split (2/1/1 per class)
BATCH = 3
NAMES = list(MODELS)
#: options a pretrained backbone needs to build (``hf``: a local Hugging Face folder, here MiniLM's package folder)
SOURCE_OPTIONS = {"hf": {"path": str(transferkit.models.text.model_path())}}
#: backbones whose weights are an opt-in install, and whether they are installed here (else their cases skip)
OPT_IN = {"mpnet": transferkit.models.mpnet.weights_installed}


def _slice(modality: str) -> ArrayDataset:
    assert modality in MODALITY_DATA, f"add a small real data set for modality '{modality}' to MODALITY_DATA"
    ds = DATASETS.get(MODALITY_DATA[modality])(seed=0)
    y = ds.require_labels()
    idx = np.concatenate([np.flatnonzero(y == c)[:PER_CLASS] for c in range(ds.num_classes)])
    return ds.subset(np.sort(idx))


def _write(ds: ArrayDataset, root: Path) -> Path:
    """``ds`` as a file or folder that ``load_dataset`` reads back (the format depends on the modality)."""
    root.mkdir(parents=True, exist_ok=True)
    y = ds.require_labels()
    if ds.modality in ("image", "tabular"):
        path = root / "slice.npz"
        np.savez(path, x=ds.x, y=y, class_names=np.array(ds.class_names))
    elif ds.modality == "text":
        path = root / "slice.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["text", "label"])
            w.writerows([str(t), ds.class_names[c]] for t, c in zip(ds.x, y))
    elif ds.modality == "audio":
        path = root / "wavs"
        rate = int(ds.meta.get("sample_rate", 16000))
        for i, (clip, c) in enumerate(zip(ds.x, y)):
            folder = path / ds.class_names[c]
            folder.mkdir(parents=True, exist_ok=True)
            with wave.open(str(folder / f"{i:03d}.wav"), "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(rate)
                wav.writeframes((np.clip(clip, -1, 1) * 32767).astype("<i2").tobytes())
    else:
        raise AssertionError(f"no file format for modality '{ds.modality}' in this test")
    return path


class Built:
    """One backbone built once, with a small batch of its own (prepared) inputs and a data file."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        if is_pretrained(name):
            self.model: TransferModel = from_pretrained(name, SOURCE_OPTIONS.get(name))
            modality = self.model.spec.modality
        else:
            assert name in ARCHITECTURE_MODALITY, f"add the input modality of '{name}' to ARCHITECTURE_MODALITY"
            modality = ARCHITECTURE_MODALITY[name]
        self.data = _write(_slice(modality), root / name)
        if not is_pretrained(name):
            raw = load_dataset(str(self.data))
            spec = ModelSpec(name, raw.input_shape, raw.class_names, {}, raw.modality)
            self.model = build_model(spec, seed=0)
        ds = load_dataset(str(self.data), model=self.model.spec)
        self.x = torch.from_numpy(np.ascontiguousarray(ds.x[:BATCH]))
        self.model.eval()


@pytest.fixture(scope="module")
def built() -> dict[str, Built]:
    """Backbones built so far in this module, by name (each pretrained one loads its weights once)."""
    return {}


def _get(built: dict[str, Built], name: str, tmp_path_factory: pytest.TempPathFactory) -> Built:
    if name in OPT_IN and not OPT_IN[name]():
        pytest.skip(f"{name}: its weights packages are not installed (an opt-in download)")
    if name not in built:
        built[name] = Built(name, tmp_path_factory.mktemp("backbones"))
    return built[name]


@pytest.fixture
def backbone(request: pytest.FixtureRequest, built: dict[str, Built],
             tmp_path_factory: pytest.TempPathFactory) -> Built:
    return _get(built, request.param, tmp_path_factory)


def _logits(model: TransferModel, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("backbone", NAMES, indirect=True)
def test_forward_shapes(backbone: Built) -> None:
    model, x = backbone.model, backbone.x
    spec = model.spec
    assert spec.modality and spec.input_shape, "the builder must fill in the input shape and modality"
    assert tuple(x.shape[1:]) == tuple(spec.input_shape) or spec.modality == "text"
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (BATCH, model.feature_dim)
    assert logits.shape == (BATCH, spec.num_classes)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, model.forward_head(feats))
    if is_pretrained(backbone.name):
        assert spec.num_classes == 0 or len(set(spec.class_names)) == spec.num_classes


@pytest.mark.parametrize("backbone", NAMES, indirect=True)
def test_layer_groups_cover_every_parameter_exactly_once(backbone: Built) -> None:
    model = backbone.model
    groups = model.layer_groups()
    names = [n for n, _ in groups]
    assert names[-1] == "head" and len(names) >= 2 and len(set(names)) == len(names)
    seen: dict[int, str] = {}
    for gname, g in groups:
        for pname, p in g.named_parameters():
            assert id(p) not in seen, f"{pname} is in both group {seen[id(p)]} and group {gname}"
            seen[id(p)] = gname
    missing = [n for n, p in model.named_parameters() if id(p) not in seen]
    assert not missing, f"parameters outside every layer group: {missing[:5]}"
    assert {id(p) for p in model.backbone_parameters()} == set(seen) - {id(p) for p in model.head.parameters()}


@pytest.mark.parametrize("backbone", NAMES, indirect=True)
def test_reset_head(backbone: Built) -> None:
    model = copy.deepcopy(backbone.model)
    with torch.no_grad():
        before = model.forward_features(backbone.x)
    model.reset_head(["a", "b", "c"])
    assert model.num_classes == 3 and model.spec.class_names == ["a", "b", "c"]
    model.eval()
    with torch.no_grad():
        assert model(backbone.x).shape == (BATCH, 3)
        torch.testing.assert_close(model.forward_features(backbone.x), before)
    assert ModelSpec.from_json(model.spec.to_json()) == model.spec


@pytest.mark.parametrize("backbone", NAMES, indirect=True)
def test_save_load_round_trip_through_a_run_directory(backbone: Built, tmp_path: Path) -> None:
    source: Any = backbone.name if is_pretrained(backbone.name) else backbone.model
    res = transferkit.transfer(source, str(backbone.data), strategy="linear_probe", head="new", out=tmp_path / "run",
                               progress="off", model_kwargs=SOURCE_OPTIONS.get(backbone.name))
    loaded = load_run(tmp_path / "run")
    assert loaded.spec == res.model.spec
    torch.testing.assert_close(_logits(loaded.model, backbone.x), _logits(res.model, backbone.x), rtol=0, atol=0)
    if is_pretrained(backbone.name):  # the saved source head, for forgetting
        head = loaded.source_head()
        assert head is None or head.out_features == backbone.model.spec.num_classes
