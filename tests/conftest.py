"""Shared fixtures: small real data slices and one tiny source model pretrained once per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.engine.config import MAX_EPOCHS_ENV
from transferkit.data import ArrayDataset, kshot, load_dataset, split
from transferkit.models import TransferModel
from transferkit.runs import LoadedRun

# The suite measures real training: the README check's epoch cap (scripts/readme_check.py) never applies.
os.environ.pop(MAX_EPOCHS_ENV, None)

#: The tiny source backbone: small_cnn keeps BatchNorm (running stats) and dropout in play.
SOURCE_MODEL = "small_cnn"
SOURCE_KWARGS = {"width": 16, "hidden": 64}

Tensors = tuple[torch.Tensor, torch.Tensor]


def as_tensors(ds: ArrayDataset) -> Tensors:
    return torch.from_numpy(np.ascontiguousarray(ds.x)), torch.from_numpy(ds.require_labels().astype(np.int64))


def per_class(ds: ArrayDataset, n: int, start: int = 0) -> ArrayDataset:
    """``n`` examples of every class (the ``start``-th onward, in file order)."""
    y = ds.require_labels()
    idx = np.concatenate([np.flatnonzero(y == c)[start : start + n] for c in range(ds.num_classes)])
    return ds.subset(np.sort(idx))


@pytest.fixture(scope="session")
def mnist_ds() -> ArrayDataset:
    return load_dataset("mnist5k")


@pytest.fixture(scope="session")
def digits_ds() -> ArrayDataset:
    return load_dataset("digits8")


@pytest.fixture(scope="session")
def mnist_slices(mnist_ds: ArrayDataset) -> tuple[Tensors, Tensors]:
    """Real MNIST: 30 training and 20 disjoint validation digits per class (300 / 200 images)."""
    return as_tensors(per_class(mnist_ds, 30)), as_tensors(per_class(mnist_ds, 20, start=30))


@pytest.fixture(scope="session")
def digits_fewshot(digits_ds: ArrayDataset) -> tuple[Tensors, Tensors]:
    """The target task: digits8, 10 shots per class for training, 5 per class for validation."""
    sp = split(digits_ds, seed=0)
    return as_tensors(kshot(sp.train, 10, seed=0)), as_tensors(kshot(sp.val, 5, seed=0))


@pytest.fixture(scope="session")
def source_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete pretrain run directory: a tiny small_cnn trained 2 epochs on mnist5k (~5 s)."""
    out = tmp_path_factory.mktemp("source") / "run"
    transferkit.pretrain("mnist5k", SOURCE_MODEL, out, seed=0, model_kwargs=dict(SOURCE_KWARGS), epochs=2,
                         batch_size=64, precision="fp32", progress="off")
    return out


@pytest.fixture(scope="session")
def source_loaded(source_run: Path) -> LoadedRun:
    return transferkit.load_run(source_run)


@pytest.fixture()
def source_model(source_loaded: LoadedRun) -> TransferModel:
    """A fresh copy of the pretrained source model (tests may train it)."""
    return transferkit.load_run(source_loaded.path).model


@pytest.fixture()
def first_fit_diverges(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The engine's first training attempt raises a divergence (as a NaN loss would), later ones train:
    the learning rate of every attempt is appended to the returned list."""
    from transferkit.engine import divergence
    from transferkit.engine.loop import DivergenceError

    real = divergence.fit
    calls: list[float] = []

    def first_diverges(phase, cfg, checkpoint=None):  # type: ignore[no-untyped-def]
        calls.append(phase.lr or cfg.lr)
        if len(calls) == 1:
            raise DivergenceError(f"phase '{phase.name}': loss became nan at epoch 0 step 2")
        return real(phase, cfg, checkpoint)

    monkeypatch.setattr(divergence, "fit", first_diverges)
    return calls
