"""Helpers of the transfer stages: unlabelled target inputs, the source model's accuracy before training,
and why ``--head keep`` cannot keep the source head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.data import ArrayDataset, ReadOptions, kshot_rest, load_dataset
from transferkit.errors import ConfigError
from transferkit.evaluation.evaluate import source_accuracy
from transferkit.models import ModelSpec, TransferModel
from transferkit.strategies.semi import pool_inputs


def head_mismatch(source: list[str], target: list[str], data: str) -> str:
    """Why ``--head keep`` cannot keep the source head: the class counts, or (same count) the names, differ."""
    def shown(names: list[str]) -> str:
        return ", ".join(names[:10]) + (f", ... ({len(names)})" if len(names) > 10 else "")

    if len(source) != len(target):
        return (f"--head keep: the source has {len(source)} classes, {data} has {len(target)}; "
                f"source: {shown(source)}; data: {shown(target)}")
    return (f"--head keep: the source and {data} both have {len(source)} classes but their names differ; "
            f"source: {shown(source)}; data: {shown(target)}")


def unlabelled_sources(spec: str) -> list[str]:
    """The sources of an ``--unlabelled`` value: ``rest+vader-tweets`` -> ``['rest', 'vader-tweets']``
    (one source when the whole value is an existing path)."""
    parts = [spec] if Path(spec).exists() else spec.split("+")
    if any(not p for p in parts):
        raise ConfigError(f"--unlabelled {spec!r}: an empty source between '+' signs")
    return parts


def unlabelled_inputs(spec: str | None, train_split: ArrayDataset, shots: int | None, seed: int, model: ModelSpec,
                      train_ds: ArrayDataset,
                      read: ReadOptions = ReadOptions()) -> tuple[torch.Tensor | None, np.ndarray | None]:
    """The inputs of ``transfer(unlabelled=...)`` and, when ``spec`` pools several sources
    (``rest+vader-tweets``), the source index of each: ``rest`` of the few-shot draw, or a data set's
    inputs (its labels ignored)."""
    if spec is None:
        return None, None
    xs = []
    for part in unlabelled_sources(spec):
        if part == "rest":
            if shots is None:
                raise ConfigError("--unlabelled rest: the rest of a --shots draw, but no --shots was given (the whole "
                                  "training split is labelled); pass --shots K or --unlabelled DATA")
            ds = kshot_rest(train_split, shots, seed=seed)
        else:
            ds = load_dataset(part, model=model, seed=seed, labels_required=False, read=read)
        if len(ds) == 0:
            raise ConfigError(f"--unlabelled {part}: no examples")
        text = model.modality == "text" and ds.x.shape[1:-1] == train_ds.x.shape[1:-1]  # token widths may differ
        if ds.x.shape[1:] != train_ds.x.shape[1:] and not text:
            raise ConfigError(f"--unlabelled {part}: inputs of shape {ds.x.shape[1:]} do not match the labelled data's "
                              f"{train_ds.x.shape[1:]}")
        xs.append(torch.from_numpy(ds.x))
    return pool_inputs(xs)


_SOURCE_BEFORE: dict[str, dict[str, Any]] = {}


def source_before(model: TransferModel, head: torch.nn.Module, ds: ArrayDataset) -> dict[str, Any]:
    """Source accuracy of the untouched source model, computed once per (weights, data): every
    transfer from the same source would otherwise repeat the same forward pass."""
    from transferkit.engine.features import fingerprint

    key = fingerprint(*model.state_dict().values(), *head.state_dict().values(), torch.from_numpy(ds.x),
                      torch.from_numpy(ds.require_labels()))
    if key not in _SOURCE_BEFORE:
        _SOURCE_BEFORE[key] = source_accuracy(model, head, ds)
    return dict(_SOURCE_BEFORE[key])
