"""Leave-one-out kNN against sklearn, and the cross-validated linear probe."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from transferkit.errors import ConfigError, DataError
from transferkit.transferability import knn, linear_probe_cv

Blobs = Callable[..., tuple[np.ndarray, np.ndarray]]


def sklearn_loo_knn(f: np.ndarray, y: np.ndarray, k: int) -> float:
    g = f / np.linalg.norm(f, axis=1, keepdims=True)
    hits = 0
    for i in range(len(g)):
        rest = np.arange(len(g)) != i
        clf = KNeighborsClassifier(n_neighbors=k).fit(g[rest], y[rest])
        hits += int(clf.predict(g[i : i + 1])[0] == y[i])
    return hits / len(g)


@pytest.mark.parametrize("k", [1, 4, 5])
def test_knn_matches_sklearn_leave_one_out(make_blobs: Blobs, k: int) -> None:
    f, y = make_blobs(n_per_class=15, classes=4, dim=5, sep=0.8, seed=8)
    assert knn(f, y, k=k) == pytest.approx(sklearn_loo_knn(f, y, k))


def test_knn_chunking_does_not_change_the_result(make_blobs: Blobs) -> None:
    f, y = make_blobs(n_per_class=20, classes=3, dim=4, sep=0.7, seed=9)
    assert knn(f, y, chunk=7) == knn(f, y, chunk=1024)


def test_knn_uses_directions_only(make_blobs: Blobs) -> None:
    f, y = make_blobs(seed=10)
    scale = np.random.default_rng(0).uniform(0.1, 10, size=(len(f), 1))
    assert knn(f * scale, y) == knn(f, y)


def test_knn_rejects_k_not_below_n() -> None:
    with pytest.raises(DataError, match="k=5 needs more than 5 samples, got 4"):
        knn(np.eye(4), np.array([0, 1, 0, 1]))
    with pytest.raises(ConfigError, match="k must be an integer of at least 1, got 0"):
        knn(np.eye(4), np.array([0, 1, 0, 1]), k=0)


def test_linear_probe_separable_vs_shuffled_labels(make_blobs: Blobs) -> None:
    f, y = make_blobs(n_per_class=20, classes=4, dim=6, sep=5.0, seed=11)
    assert linear_probe_cv(f, y) == 1.0
    shuffled = np.random.default_rng(0).permutation(y)
    assert linear_probe_cv(f, shuffled) < 0.5


def test_linear_probe_needs_two_samples_per_class() -> None:
    with pytest.raises(DataError, match="at least 2 samples per class; class 7 has 1"):
        linear_probe_cv(np.random.default_rng(0).normal(size=(5, 2)), np.array([0, 0, 7, 1, 1]))
