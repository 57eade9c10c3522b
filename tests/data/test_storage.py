"""Datasets larger than the memory budget live in memory-mapped files; loading streams from disk."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import transferkit
from transferkit.data import load_dataset, split
from transferkit.data.files import load_image_folder
from transferkit.data.storage import all_finite, allocate, is_mapped, parse_bytes, take_rows
from transferkit.errors import ConfigError


def _write_folder(root: Path, per_class: int, size: int) -> Path:
    """Real digits8 images as PNG files at ``size`` px, one sub-folder per class."""
    ds = load_dataset("digits8")
    assert ds.y is not None
    for c in range(ds.num_classes):
        (root / ds.class_names[c]).mkdir(parents=True)
        for j, i in enumerate(np.flatnonzero(ds.y == c)[:per_class]):
            img = Image.fromarray((ds.x[i, 0] * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
            img.save(root / ds.class_names[c] / f"{j}.png")
    return root


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("1024", 1024), ("2K", 2048), ("1.5M", 3 << 19), ("4GiB", 4 << 30)])
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text, "x") == value


@pytest.mark.parametrize("text", ["lots", "-1", "1Q"])
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="TRANSFERKIT_DATA_MEMORY"):
        parse_bytes(text, "TRANSFERKIT_DATA_MEMORY")


def test_allocate_spills_past_the_budget_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path))
    small = allocate((4, 4), budget=1 << 20)
    big = allocate((64, 64), budget=1024)
    assert not is_mapped(small) and is_mapped(big)
    big[:] = 1.5
    assert float(big.sum()) == 1.5 * 64 * 64
    assert list((tmp_path / "data").iterdir()) == []  # unlinked once mapped: nothing to clean up after a kill


def test_take_rows_keeps_large_subsets_of_mapped_arrays_on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    x = allocate((100, 3), budget=0)
    x[:] = np.arange(300, dtype=np.float32).reshape(100, 3)
    idx = np.array([5, 0, 99])
    assert not is_mapped(take_rows(x, idx))  # a subset within the budget comes into RAM
    monkeypatch.setenv("TRANSFERKIT_DATA_MEMORY", "8")
    out = take_rows(x, idx, chunk=2)
    assert is_mapped(out) and np.array_equal(out, np.asarray(x)[idx])
    assert not is_mapped(take_rows(np.asarray(x).copy(), idx))


def test_all_finite_in_chunks() -> None:
    x = np.zeros((10, 2), dtype=np.float32)
    assert all_finite(x, chunk_bytes=24)
    x[9, 1] = np.nan
    assert not all_finite(x, chunk_bytes=24)
    assert all_finite(np.array(["a", "b"]))


def test_folder_past_the_budget_streams_into_a_memory_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _write_folder(tmp_path / "imgs", per_class=6, size=40)
    in_ram = load_image_folder(root, shape=(1, 28, 28))
    monkeypatch.setenv("TRANSFERKIT_DATA_MEMORY", "1K")
    mapped = load_image_folder(root, shape=(1, 28, 28))
    assert not is_mapped(in_ram.x) and is_mapped(mapped.x)
    assert np.array_equal(np.asarray(mapped.x), in_ram.x) and np.array_equal(mapped.y, in_ram.y)
    parts = split(mapped, seed=0)
    assert all(is_mapped(p.x) for p in (parts.train, parts.val, parts.test))


def test_streamed_loading_holds_about_one_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Peak Python-heap memory while loading stays far below the decoded folder's size."""
    root = _write_folder(tmp_path / "imgs", per_class=20, size=96)
    monkeypatch.setenv("TRANSFERKIT_DATA_MEMORY", "1K")
    total = 200 * 3 * 96 * 96 * 4  # what holding every decoded image as float32 RGB would take
    tracemalloc.start()
    try:
        ds = load_image_folder(root, shape=(3, 96, 96))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ds) == 200 and is_mapped(ds.x)
    assert peak < total / 20, f"peak {peak} bytes for a {total}-byte folder"


def test_transfer_trains_from_a_streamed_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source_run: Path) -> None:
    root = _write_folder(tmp_path / "imgs", per_class=8, size=28)
    monkeypatch.setenv("TRANSFERKIT_DATA_MEMORY", "1K")
    res = transferkit.transfer(source_run, str(root), strategy="linear_probe", epochs=2)
    assert 0.0 <= res.metrics["target"]["accuracy"] <= 1.0 and res.metrics["n_train"] > 0
