"""User data formats: real digit slices written to disk and read back, and every bad input."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.data import ArrayDataset, load_dataset
from transferkit.data.files import load_csv, load_idx, load_npz
from transferkit.errors import DataError

TOL = 1 / 255 + 1e-6


def _u8(x: np.ndarray) -> np.ndarray:
    return np.round(x * 255).astype(np.uint8)


def _write_folder(ds: ArrayDataset, root: Path, mode: str = "L", suffix: str = ".png") -> Path:
    assert ds.y is not None
    for i, (img, label) in enumerate(zip(ds.x, ds.y, strict=True)):
        folder = root / ds.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_u8(img[0])).convert(mode).save(folder / f"{i:04d}{suffix}")
    return root


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def _assert_same(got: ArrayDataset, want: ArrayDataset) -> None:
    assert got.x.shape == want.x.shape and got.class_names == want.class_names
    np.testing.assert_array_equal(got.y, want.y)
    assert np.abs(got.x - want.x).max() <= TOL


# --------------------------------------------------------------------------- round trips


def test_image_folder_round_trip(tmp_path: Path, mnist_small: ArrayDataset) -> None:
    root = _write_folder(mnist_small, tmp_path / "digits")
    (root / "3" / "notes.txt").write_text("ignored")
    got = load_dataset(str(root))
    _assert_same(got, mnist_small)
    assert got.name == str(root) and got.modality == "image"


def test_image_folder_mixed_modes_and_sizes(tmp_path: Path, digits_small: ArrayDataset) -> None:
    root = _write_folder(digits_small, tmp_path / "rgb", mode="RGB", suffix=".bmp")
    Image.fromarray(_u8(digits_small.x[0, 0])).resize((14, 14)).save(root / "0" / "small.gif")
    got = load_dataset(str(root))
    assert got.x.shape == (31, 3, 28, 28)  # any RGB image -> 3 channels; most common size wins
    np.testing.assert_allclose(got.x[:, 0], got.x[:, 2])
    forced = load_dataset(str(root), shape=(1, 16, 16))
    assert forced.x.shape == (31, 1, 16, 16) and forced.x.min() >= 0 and forced.x.max() <= 1


def test_npz_round_trips(tmp_path: Path, mnist_small: ArrayDataset) -> None:
    x, y = mnist_small.x, mnist_small.require_labels()
    variants = {
        "nhw_uint8": _u8(x[:, 0]),
        "nchw_float": x,
        "nhwc_255": (x.transpose(0, 2, 3, 1) * 255).astype(np.float64),
    }
    for name, arr in variants.items():
        np.savez(tmp_path / f"{name}.npz", x=arr, y=y)
        _assert_same(load_dataset(str(tmp_path / f"{name}.npz")), mnist_small)
    words = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    np.savez(tmp_path / "str.npz", x=x, y=words[y])
    got = load_npz(tmp_path / "str.npz")
    assert got.class_names == sorted(words.tolist())
    assert [got.class_names[i] for i in got.require_labels()] == words[y].tolist()
    np.savez(tmp_path / "named.npz", x=x, y=y, class_names=words)
    assert load_npz(tmp_path / "named.npz").class_names == words.tolist()
    np.savez(tmp_path / "tab.npz", x=x.reshape(30, -1)[:, :50], y=y)
    tab = load_dataset(str(tmp_path / "tab.npz"))
    assert tab.modality == "tabular" and tab.x.shape == (30, 50)


def test_csv_round_trips(tmp_path: Path, mnist_small: ArrayDataset) -> None:
    assert mnist_small.y is not None
    pixels = _u8(mnist_small.x.reshape(30, -1))
    header = ",".join([f"p{i}" for i in range(784)] + ["Label"])
    lines = [header] + [",".join(map(str, row)) + f",{lab}" for row, lab in zip(pixels, mnist_small.y, strict=True)]
    (tmp_path / "mnist.csv").write_text("\n".join(lines) + "\n")
    _assert_same(load_dataset(str(tmp_path / "mnist.csv")), mnist_small)

    rows = ["kind,width,height", "cat,1.5,2", "dog,3,4.25", "cat,0,1"]
    (tmp_path / "tab.csv").write_text("\n".join(rows))
    tab = load_csv(tmp_path / "tab.csv", label_column="kind")
    assert tab.modality == "tabular" and tab.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(tab.y, [0, 1, 0])
    np.testing.assert_allclose(tab.x, np.array([[1.5, 2], [3, 4.25], [0, 1]]))


@pytest.mark.parametrize("sep", ["-", "."])
def test_idx_round_trip(tmp_path: Path, mnist_small: ArrayDataset, sep: str) -> None:
    images = tmp_path / f"train-images{sep}idx3-ubyte.gz"
    _write_idx(images, _u8(mnist_small.x[:, 0]))
    _write_idx(tmp_path / f"train-labels{sep}idx1-ubyte.gz", mnist_small.require_labels())
    _write_idx(tmp_path / f"t10k-images{sep}idx3-ubyte", _u8(mnist_small.x[:5, 0]))
    _assert_same(load_dataset(str(images)), mnist_small)
    _assert_same(load_dataset(str(tmp_path)), mnist_small)  # folder: the train file wins


# --------------------------------------------------------------------------- bad inputs


def _raises(spec: str | Path, *needles: str) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(str(spec))
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg
    return msg


def test_corrupt_image_names_the_file(tmp_path: Path, mnist_small: ArrayDataset) -> None:
    root = _write_folder(mnist_small, tmp_path / "imgs")
    good = (root / "4" / "0012.png").read_bytes()
    (root / "4" / "0012.png").write_bytes(good[: len(good) // 2])
    _raises(root, str(root / "4" / "0012.png"))
    (root / "4" / "0012.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    _raises(root, str(root / "4" / "0012.png"))


def test_empty_folders(tmp_path: Path, mnist_small: ArrayDataset) -> None:
    (tmp_path / "empty").mkdir()
    _raises(tmp_path / "empty", str(tmp_path / "empty"), "empty folder")
    root = _write_folder(mnist_small, tmp_path / "imgs")
    (root / "extra").mkdir()
    _raises(root, str(root / "extra"), "empty class folder")
    (tmp_path / "flat").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "flat" / "a.png")
    _raises(tmp_path / "flat", "sub-folder per class")


def test_idx_errors(tmp_path: Path, mnist_small: ArrayDataset) -> None:
    images = tmp_path / "x-images-idx3-ubyte"
    _write_idx(images, _u8(mnist_small.x[:, 0]))
    _raises(images, str(images), "labels")  # no labels file beside it
    _write_idx(tmp_path / "x-labels-idx1-ubyte", mnist_small.require_labels())
    images.write_bytes(images.read_bytes()[:-100])
    _raises(images, str(images), "truncated")
    gz = tmp_path / "y-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(40))[:-6])
    _raises(gz, str(gz))
    (tmp_path / "z-images-idx3-ubyte").write_bytes(b"PK\x03\x04junk")
    _raises(tmp_path / "z-images-idx3-ubyte", "magic")


def test_csv_errors(tmp_path: Path) -> None:
    bad = tmp_path / "nolabel.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    msg = _raises(bad)
    assert msg == f"{bad}: no label column 'label' (columns: a, b, c)"
    cell = tmp_path / "cell.csv"
    cell.write_text("label,a,b\n0,1,2\n1,3,oops\n")
    _raises(cell, str(cell), "line 3", "'b'", "oops")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("label,a,b\n0,1\n")
    _raises(ragged, str(ragged), "line 2")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _raises(empty, str(empty), "empty")
    with pytest.raises(DataError, match="no label column 'kind'"):
        load_csv(cell, label_column="kind")


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "noy.npz", x=np.zeros((3, 4, 4)))
    _raises(tmp_path / "noy.npz", str(tmp_path / "noy.npz"), "'y'")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    _raises(tmp_path / "junk.npz", str(tmp_path / "junk.npz"))
    np.savez(tmp_path / "rgba.npz", x=np.zeros((3, 4, 4, 4)), y=np.zeros(3, dtype=int))
    _raises(tmp_path / "rgba.npz", "channels")
    np.savez(tmp_path / "neg.npz", x=-np.ones((3, 4, 4)), y=np.zeros(3, dtype=int))
    _raises(tmp_path / "neg.npz", "0..1")


def test_missing_and_unknown(tmp_path: Path) -> None:
    _raises(tmp_path / "nope.npz", str(tmp_path / "nope.npz"), "no such file")
    _raises("mnist5", "'mnist5'", "did you mean 'mnist5k'", "no such file")
    (tmp_path / "data.bin").write_text("x")
    _raises(tmp_path / "data.bin", str(tmp_path / "data.bin"), "unsupported")
    (tmp_path / "data.txt").write_text("x")  # unlabelled text: refused where labels are required
    _raises(tmp_path / "data.txt", str(tmp_path / "data.txt"), "texts without labels")
    with pytest.raises(DataError, match="no such file"):
        load_idx(tmp_path / "a-images-idx3-ubyte")
