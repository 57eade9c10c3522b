"""split, kshot and align_classes on real digits."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.data import ArrayDataset, align_classes, kshot, split
from transferkit.errors import ConfigError, DataError


def test_split_is_stratified_disjoint_and_seeded(mnist: ArrayDataset) -> None:
    s = split(mnist, val=0.1, test=0.2, seed=1)
    parts = [s.train, s.val, s.test]
    assert sum(len(p) for p in parts) == len(mnist)
    for p, frac in zip(parts, (0.7, 0.1, 0.2), strict=True):
        assert np.bincount(p.require_labels(), minlength=10).tolist() == [round(500 * frac)] * 10
    # disjoint: compare the images themselves
    keys = [{row.tobytes() for row in p.x.reshape(len(p), -1)} for p in parts]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    again = split(mnist, val=0.1, test=0.2, seed=1)
    np.testing.assert_array_equal(again.test.x, s.test.x)
    assert not np.array_equal(split(mnist, val=0.1, test=0.2, seed=2).test.x, s.test.x)
    assert s.test.name == "mnist5k:test"


def test_split_rejects_bad_fractions(mnist_small: ArrayDataset) -> None:
    with pytest.raises(ConfigError):
        split(mnist_small, val=0.6, test=0.5)


def test_kshot(mnist: ArrayDataset) -> None:
    few = kshot(mnist, 5, seed=0)
    assert np.bincount(few.require_labels()).tolist() == [5] * 10
    np.testing.assert_array_equal(few.x, kshot(mnist, 5, seed=0).x)
    assert not np.array_equal(few.x, kshot(mnist, 5, seed=1).x)
    with pytest.raises(ConfigError, match="shots=501"):
        kshot(mnist, 501)
    with pytest.raises(ConfigError):
        kshot(mnist, 0)


def test_align_classes(mnist_small: ArrayDataset) -> None:
    sub = mnist_small.subset(np.flatnonzero(mnist_small.require_labels() >= 8))
    two = ArrayDataset(sub.x, sub.require_labels() - 8, ["8", "9"], "two")
    aligned = align_classes(two, [str(i) for i in range(10)])
    np.testing.assert_array_equal(aligned.y, sub.y)
    with pytest.raises(DataError, match="'9'"):
        align_classes(two, ["0", "8"])
