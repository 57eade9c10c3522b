"""Partitioners: exact cover, sizes, seeds, label skew; the per-client holdout split."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.errors import ConfigError
from transferkit.federated.partition import dirichlet, holdout, iid, label_counts, parse_partition, partition

LABELS = np.repeat(np.arange(10), 100)  # 1,000 examples, 10 balanced classes


def _is_exact_cover(parts: list[np.ndarray], n: int) -> bool:
    joined = np.concatenate(parts)
    return len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))


def test_iid_is_an_exact_near_equal_cover_and_seeded() -> None:
    parts = iid(1003, 4, seed=1)
    assert _is_exact_cover(parts, 1003)
    assert sorted(len(p) for p in parts) == [250, 251, 251, 251]
    assert all(np.array_equal(a, b) for a, b in zip(parts, iid(1003, 4, seed=1)))
    assert not np.array_equal(parts[0], iid(1003, 4, seed=2)[0])


@pytest.mark.parametrize("alpha", [0.1, 0.3, 1.0, 100.0])
def test_dirichlet_is_an_exact_cover_with_min_size(alpha: float) -> None:
    parts = dirichlet(LABELS, 5, alpha, seed=0, min_size=10)
    assert _is_exact_cover(parts, len(LABELS))
    assert min(len(p) for p in parts) >= 10


def _skew(alpha: float, seed: int) -> float:
    """Mean over clients of total-variation distance between client and global label distributions."""
    counts = label_counts(LABELS, dirichlet(LABELS, 5, alpha, seed=seed), 10).astype(float)
    p = counts / counts.sum(1, keepdims=True)
    return float(0.5 * np.abs(p - 0.1).sum(1).mean())


def test_dirichlet_small_alpha_skews_labels_large_alpha_does_not() -> None:
    small = np.mean([_skew(0.1, s) for s in range(5)])
    large = np.mean([_skew(100.0, s) for s in range(5)])
    assert small > 0.5 and large < 0.1, (small, large)


def test_dirichlet_seeded() -> None:
    a, b = dirichlet(LABELS, 4, 0.3, seed=7), dirichlet(LABELS, 4, 0.3, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, y) for x, y in zip(a, dirichlet(LABELS, 4, 0.3, seed=8)))


def test_parse_and_dispatch() -> None:
    assert parse_partition("iid") == ("iid", None)
    assert parse_partition("dirichlet:0.3") == ("dirichlet", 0.3)
    assert len(partition(LABELS, 3, "dirichlet:0.5", seed=0)) == 3
    for bad in ("dirichlet", "dirichlet:-1", "dirichlet:x", "zipf:2", "iid:3"):
        with pytest.raises(ConfigError):
            parse_partition(bad)
    with pytest.raises(ConfigError, match="clients-from"):
        partition(LABELS, 3, "domain")
    with pytest.raises(ConfigError):
        iid(2, 3)


def test_holdout_is_stratified_disjoint_and_keeps_rare_classes_in_training() -> None:
    y = np.concatenate([np.repeat(np.arange(3), 20), [3, 3]])  # class 3 has only two examples
    tr, va, te = holdout(y, val=0.15, test=0.3, seed=0)
    assert _is_exact_cover([tr, va, te], len(y))
    assert np.array_equal(np.bincount(y[te], minlength=4), [6, 6, 6, 0])
    assert np.array_equal(np.bincount(y[va], minlength=4), [3, 3, 3, 0])
    assert (y[tr] == 3).sum() == 2
