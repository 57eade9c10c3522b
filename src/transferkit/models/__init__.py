"""Backbones behind one contract (:class:`TransferModel`) and the ``models`` registry."""

from __future__ import annotations

from collections.abc import Callable

import torch

from transferkit.models.base import ModelSpec, TransferModel
from transferkit.models.builtin import mlp, small_cnn
from transferkit.models.wrap import wrap_module
from transferkit.registry import Registry

MODELS: Registry[Callable[..., TransferModel]] = Registry("model")
MODELS.add("small_cnn", small_cnn, "conv64 -> conv128 -> fc512 CNN with BatchNorm, for small images (1.7M params at 28x28)")
MODELS.add("mlp", mlp, "multilayer perceptron on flattened inputs (images or tabular)")


def build_model(spec: ModelSpec, seed: int | None = None) -> TransferModel:
    """Build the registered architecture ``spec.name`` (weights seeded when ``seed`` is given)."""
    builder = MODELS.get(spec.name)
    if seed is not None:
        torch.manual_seed(seed)
    return builder(spec, **spec.kwargs)


__all__ = ["MODELS", "ModelSpec", "TransferModel", "build_model", "wrap_module"]
