"""Unlabelled target inputs: .npz with only x, a flat image folder, a CSV without a label column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.data import load_dataset
from transferkit.errors import DataError


def test_npz_with_only_x(tmp_path: Path) -> None:
    f = tmp_path / "t.npz"
    np.savez(f, x=np.random.default_rng(0).integers(0, 255, size=(6, 8, 8)).astype(np.uint8))
    with pytest.raises(DataError, match="no array 'y'"):
        load_dataset(str(f))
    ds = load_dataset(str(f), shape=(1, 28, 28), labels_required=False)
    assert ds.y is None and ds.x.shape == (6, 1, 28, 28)


def test_flat_image_folder(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(np.full((10, 10), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    with pytest.raises(DataError, match="one sub-folder per class"):
        load_dataset(str(tmp_path))
    ds = load_dataset(str(tmp_path), shape=(1, 28, 28), labels_required=False)
    assert ds.y is None and ds.x.shape == (3, 1, 28, 28) and ds.class_names == []


def test_csv_without_label_column(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    rows = ["a,b,c"] + [f"{i},{i + 1},{i + 2}" for i in range(4)]
    f.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match="no label column 'label'"):
        load_dataset(str(f))
    ds = load_dataset(str(f), labels_required=False)
    assert ds.y is None and ds.x.shape == (4, 3)


def test_builtin_target_loads_labelled_as_before() -> None:
    assert load_dataset("digits8", labels_required=False).y is not None  # adapt() drops them unread
