"""Fixtures for the adaptation tests: small real slices of mnist5k (source) and digits8 (target)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.data import ArrayDataset, load_dataset


def _per_class(ds: ArrayDataset, n: int, start: int = 0) -> np.ndarray:
    y = ds.require_labels()
    return np.sort(np.concatenate([np.flatnonzero(y == c)[start : start + n] for c in range(ds.num_classes)]))


@pytest.fixture(scope="session")
def source_slices() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """mnist5k: 20 training and 10 validation digits per class."""
    ds = load_dataset("mnist5k")
    tr, va = _per_class(ds, 20), _per_class(ds, 10, start=20)
    y = torch.from_numpy(ds.require_labels().astype(np.int64))
    x = torch.from_numpy(ds.x)
    return (x[tr], y[tr]), (x[va], y[va])


@pytest.fixture(scope="session")
def target_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """digits8 *inputs only* (labels dropped at load time): 200 for training, 100 for validation."""
    ds = load_dataset("digits8", labels_required=False)
    x = torch.from_numpy(np.random.default_rng(0).permutation(ds.x)[:300].copy())
    return x[:200], x[200:]
