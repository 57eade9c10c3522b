"""Fixtures for the data tests: small real slices of the built-in datasets."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.data import ArrayDataset, load_dataset


def _per_class(ds: ArrayDataset, n: int) -> ArrayDataset:
    assert ds.y is not None
    idx = np.concatenate([np.flatnonzero(ds.y == c)[:n] for c in range(ds.num_classes)])
    return ds.subset(idx)


@pytest.fixture(scope="session")
def mnist() -> ArrayDataset:
    """The whole of mnist5k (cached in-process by the loader)."""
    return load_dataset("mnist5k")


@pytest.fixture(scope="session")
def mnist_small(mnist: ArrayDataset) -> ArrayDataset:
    """Three real MNIST digits per class (30 images)."""
    return _per_class(mnist, 3)


@pytest.fixture(scope="session")
def digits_small() -> ArrayDataset:
    """Three real digits8 images per class (30 images)."""
    return _per_class(load_dataset("digits8"), 3)
