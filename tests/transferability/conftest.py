"""Fixtures for the transferability scores: synthetic blobs and real features of a tiny source model."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from transferkit.data import ArrayDataset, split
from transferkit.engine.features import extract_features
from transferkit.engine.precision import Placement
from transferkit.models import TransferModel, build_model
from transferkit.runs import LoadedRun

CPU_FP32 = Placement(torch.device("cpu"), bf16=False, channels_last=False)


def blobs(n_per_class: int = 30, classes: int = 4, dim: int = 6, sep: float = 3.0, seed: int = 0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes with unit noise around means ``sep`` apart (rows in class order)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * sep
    y = np.repeat(np.arange(classes), n_per_class)
    return centres[y] + rng.normal(size=(len(y), dim)), y


def soft_probs(y: np.ndarray, source_classes: int, informative: bool, seed: int = 0) -> np.ndarray:
    """Source-class probabilities: peaked on a class tied to ``y`` (informative) or on a random one."""
    rng = np.random.default_rng(seed)
    z = y % source_classes if informative else rng.integers(0, source_classes, len(y))
    logits = rng.normal(size=(len(y), source_classes))
    logits[np.arange(len(y)), z] += 3.0
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="session")
def make_blobs() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """:func:`blobs` as a fixture (test modules here do not import each other)."""
    return blobs


@pytest.fixture(scope="session")
def make_probs() -> Callable[..., np.ndarray]:
    """:func:`soft_probs` as a fixture."""
    return soft_probs


@dataclass
class Inputs:
    """Both kinds of score input for one labelled sample."""

    features: np.ndarray
    probs: np.ndarray
    labels: np.ndarray

    def get(self, needs: str) -> np.ndarray:
        return self.features if needs == "features" else self.probs


def model_inputs(model: TransferModel, x: torch.Tensor, y: np.ndarray) -> Inputs:
    feats = extract_features(model, x, CPU_FP32)
    with torch.no_grad():
        model.eval()
        probs = torch.softmax(model.forward_head(feats).double(), dim=1).numpy()
    return Inputs(feats.double().numpy(), probs, y)


@pytest.fixture(scope="session")
def digits_sample(digits_ds: ArrayDataset) -> tuple[torch.Tensor, np.ndarray]:
    """500 digits8 images (50 per class) from the seeded training split, at MNIST's 28x28."""
    train = split(digits_ds, seed=0).train
    y = train.require_labels()
    idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:50] for c in range(10)]))
    return torch.from_numpy(np.ascontiguousarray(train.x[idx])), y[idx]


@pytest.fixture(scope="session")
def pretrained_inputs(source_loaded: LoadedRun, digits_sample: tuple[torch.Tensor, np.ndarray]) -> Inputs:
    """Features / source probabilities of the tiny MNIST-pretrained small_cnn on digits8."""
    return model_inputs(copy.deepcopy(source_loaded.model), *digits_sample)


@pytest.fixture(scope="session")
def random_init_inputs(source_loaded: LoadedRun, digits_sample: tuple[torch.Tensor, np.ndarray]) -> Inputs:
    """The same architecture, randomly initialised (seed 1), on the same images."""
    model = build_model(copy.deepcopy(source_loaded.spec), seed=1)
    return model_inputs(model, *digits_sample)


@pytest.fixture(scope="session")
def noise_inputs(pretrained_inputs: Inputs) -> Inputs:
    """Label-independent inputs of the same shapes: Gaussian features, Dirichlet probabilities."""
    rng = np.random.default_rng(0)
    n, d = pretrained_inputs.features.shape
    probs = rng.dirichlet(np.ones(pretrained_inputs.probs.shape[1]), size=n)
    return Inputs(rng.normal(size=(n, d)), probs, pretrained_inputs.labels)
