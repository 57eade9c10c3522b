"""Evaluate a model on a dataset: target accuracy / macro-F1 and source-task accuracy (forgetting)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.data import ArrayDataset, align_classes, load_dataset, split
from transferkit.engine.precision import Placement, predict_logits, resolve_placement
from transferkit.evaluation.metrics import classification_report
from transferkit.models.base import ModelSpec, TransferModel


def evaluate_model(model: nn.Module, ds: ArrayDataset, num_classes: int,
                   place: Placement | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1 and the confusion matrix of ``model`` on labelled ``ds``."""
    y = ds.require_labels()
    place = place or resolve_placement(model, "auto", "auto")
    model.to(place.device)
    pred = predict_logits(model, torch.from_numpy(ds.x), place).argmax(1).numpy()
    return {"data": ds.name, **classification_report(y, pred, num_classes)}


class _WithHead(nn.Module):
    """A model's backbone with another head (e.g. the source head after transfer)."""

    def __init__(self, model: TransferModel, head: nn.Module) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.model.forward_features(x))


def source_test_split(spec: str, source_config: dict[str, Any], model: ModelSpec,
                      class_names: list[str]) -> ArrayDataset:
    """Rebuild the source run's held-out test split (same data, fractions and seed), prepared for ``model``."""
    sp = source_config.get("split", {})
    ds = load_dataset(spec, model=model, seed=int(sp.get("seed", 0)))
    if spec == source_config.get("data"):
        ds = split(ds, val=sp.get("val", 0.15), test=sp.get("test", 0.3), seed=int(sp.get("seed", 0))).test
    return align_classes(ds, class_names)


def source_accuracy(model: TransferModel, head: nn.Module, ds: ArrayDataset) -> dict[str, Any]:
    """Accuracy of ``model``'s backbone with the source ``head`` on the source test data."""
    wrapped = _WithHead(model, head.to(next(model.parameters()).device))
    out = evaluate_model(wrapped, ds, int(getattr(head, "out_features", 0)) or int(np.max(ds.require_labels())) + 1)
    out.pop("confusion", None)
    return out
