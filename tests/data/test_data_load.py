"""load_dataset with a shape request, and conform's channel/size conversion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from transferkit.data import ArrayDataset, conform, load_dataset
from transferkit.errors import ConfigError, DataError


def test_grey_to_rgb_and_back(mnist_small: ArrayDataset) -> None:
    rgb = conform(mnist_small, (3, 28, 28))
    assert rgb.x.shape == (30, 3, 28, 28)
    np.testing.assert_array_equal(rgb.x[:, 0], mnist_small.x[:, 0])
    np.testing.assert_array_equal(rgb.x[:, 2], mnist_small.x[:, 0])
    back = conform(rgb, (1, 28, 28))
    np.testing.assert_allclose(back.x, mnist_small.x, atol=1e-6)
    assert conform(mnist_small, (1, 28, 28)) is mnist_small


def test_rgb_to_grey_is_pillow_luminance() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, 5, 6, 3), dtype=np.uint8)
    ds = ArrayDataset(pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255, np.array([0, 1]), ["a", "b"], "rgb")
    want = np.stack([np.asarray(Image.fromarray(p).convert("L"), dtype=np.float32) / 255 for p in pixels])
    assert np.abs(conform(ds, (1, 5, 6)).x[:, 0] - want).max() <= 1 / 255 + 1e-6


def test_resize_keeps_range_and_ink(mnist_small: ArrayDataset) -> None:
    for size in (14, 32, 64):
        out = conform(mnist_small, (1, size, size))
        assert out.x.shape == (30, 1, size, size) and out.x.dtype == np.float32
        assert out.x.min() >= 0 and out.x.max() <= 1
        np.testing.assert_allclose(out.x.mean(axis=(1, 2, 3)), mnist_small.x.mean(axis=(1, 2, 3)), rtol=0.1)


def test_load_dataset_with_shape() -> None:
    ds = load_dataset("fontdigits", shape=(3, 32, 32), seed=0)
    assert ds.x.shape == (1000, 3, 32, 32) and ds.name == "fontdigits"


def test_tabular_and_bad_shapes(mnist_small: ArrayDataset) -> None:
    tab = ArrayDataset(
        mnist_small.x.reshape(30, -1), mnist_small.y, mnist_small.class_names, "t.npz", modality="tabular"
    )
    assert conform(tab, (1, 28, 28)).x.shape == (30, 1, 28, 28)
    with pytest.raises(DataError, match="t.npz.*784 features"):
        conform(tab, (1, 32, 32))
    with pytest.raises(ConfigError):
        conform(mnist_small, (2, 28, 28))
