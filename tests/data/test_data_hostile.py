"""Garbage in must not give a confident answer out: value ranges, huge images, odd formats, bad files."""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from transferkit.data import ArrayDataset, ReadOptions, load_dataset, split
from transferkit.data.files import load_npz
from transferkit.data.images import decode_image, read_images
from transferkit.errors import DataError


def _digits_npz(path: Path, **extra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()  # UCI optdigits: float64 values 0..16
    np.savez(path, x=d.images, y=d.target, **extra)
    return d.images, d.target


def _write_png(path: Path, width: int, height: int) -> None:
    """A grey PNG streamed row by row (never held in memory): a few hundred KB for any size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp, parts = zlib.compressobj(9), []
    row = b"\x00" + bytes(width)
    for _ in range(height):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def _folder(root: Path, ds: ArrayDataset, suffix: str = ".png") -> Path:
    assert ds.y is not None
    for i, (img, label) in enumerate(zip(ds.x, ds.y, strict=True)):
        folder = root / ds.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(img[0] * 255).astype(np.uint8)).save(folder / f"{i:03d}{suffix}")
    return root


# --------------------------------------------------------------------------- one class


def test_one_class_data_is_refused_naming_the_class(tmp_path: Path, mnist_small: ArrayDataset) -> None:
    one = mnist_small.subset(np.flatnonzero(mnist_small.y == 3))
    root = _folder(tmp_path / "only3", one)
    ds = load_dataset(str(root))
    with pytest.raises(DataError, match=r"only3: only one class \('3'\).*at least 2 classes") as info:
        split(ds)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- value ranges


def test_npz_of_digits_0_to_16_is_scaled_by_16_and_noted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw, _ = _digits_npz(tmp_path / "d8.npz")
    with caplog.at_level(logging.INFO, logger="transferkit"):
        ds = load_npz(tmp_path / "d8.npz")
    np.testing.assert_allclose(ds.x[:, 0], raw / 16.0, atol=1e-6)
    assert ds.meta["input_range"] == [0.0, 16.0] and ds.meta["input_range_how"] == "detected"
    assert any("whole numbers 0..16 read as the range 0..16" in r.getMessage() for r in caplog.records)


def test_npz_declared_range_wins_and_is_checked(tmp_path: Path) -> None:
    raw, _ = _digits_npz(tmp_path / "d.npz", x_range=np.array([0, 32]))
    np.testing.assert_allclose(load_npz(tmp_path / "d.npz").x[:, 0], raw / 32.0, atol=1e-6)
    _digits_npz(tmp_path / "small.npz", x_range=np.array([0, 8]))
    with pytest.raises(DataError, match=r"0\.\.16 lie outside the range 0\.\.8 \(declared\)"):
        load_npz(tmp_path / "small.npz")
    _digits_npz(tmp_path / "bad.npz", x_range=np.array([3]))
    with pytest.raises(DataError, match="'x_range' must be two numbers"):
        load_npz(tmp_path / "bad.npz")


def test_a_few_faint_images_are_read_in_the_runs_range(tmp_path: Path) -> None:
    raw, _ = _digits_npz(tmp_path / "d8.npz")
    faint = np.minimum(raw[:4], 12.0)  # a predict file whose maximum is 12, not 16
    np.savez(tmp_path / "few.npz", x=faint)
    alone = load_npz(tmp_path / "few.npz", labels_required=False)
    assert alone.meta["input_range"] == [0.0, 16.0]  # the file's own rule agrees here ...
    config = {"input_range": [0.0, 16.0]}
    np.savez(tmp_path / "binary.npz", x=(raw[:4] > 8).astype(np.int64))  # ... and the run's range decides here
    got = load_npz(tmp_path / "binary.npz", labels_required=False, read=ReadOptions.for_run(config))
    np.testing.assert_allclose(got.x[:, 0], (raw[:4] > 8) / 16.0)
    assert got.meta["input_range_how"] == "run"


def test_model_trained_on_digits_npz_learns_and_predicts_many_classes(tmp_path: Path) -> None:
    import transferkit
    from transferkit.prediction import predict

    _digits_npz(tmp_path / "d8.npz")
    res = transferkit.pretrain(str(tmp_path / "d8.npz"), "small_cnn", tmp_path / "run", model_kwargs={"width": 16,
                               "hidden": 64}, epochs=3, precision="fp32", progress="off")
    acc = res.metrics["source"]["accuracy"]
    assert acc > 0.5, acc  # chance is 0.1; read as 0..255 the same run scores ~0.12
    assert json.loads((tmp_path / "run" / "config.json").read_text())["input_range"] == [0.0, 16.0]
    raw, y = _digits_npz(tmp_path / "again.npz")
    np.savez(tmp_path / "few.npz", x=raw[:40])
    rows = predict(tmp_path / "run", tmp_path / "few.npz")
    assert len({r["class"] for r in rows}) >= 5
    assert np.mean([r["class"] == str(t) for r, t in zip(rows, y[:40])]) > 0.5


# --------------------------------------------------------------------------- huge images

_PEAK = """
import resource, sys
from pathlib import Path
from transferkit.data.images import read_images
from transferkit.errors import DataError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    out = read_images([Path(sys.argv[1])], (1, 28, 28), where=Path(sys.argv[1]).parent)[0].shape
except DataError as e:
    out = "error: " + str(e)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024, file=sys.stderr)
print((after - before) // 1024)
print(out)
"""


def _peak_mb(path: Path) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    grown, out = done.stdout.strip().splitlines()
    return int(grown), out


def test_a_13000_pixel_square_png_is_refused_in_one_line_without_decoding(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    _write_png(big, 13000, 13000)
    assert big.stat().st_size < 2 << 20
    grown, out = _peak_mb(big)
    assert out.startswith("error: ") and "13000x13000 (169,000,000 pixels), over the 50,000,000-pixel limit" in out
    assert grown < 50, f"decoding grew the process by {grown} MB"


def test_a_large_png_under_the_limit_is_shrunk_before_it_becomes_float(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    _write_png(big, 6000, 6000)  # 36 MB as 8-bit; 144 MB per float32 copy
    grown, out = _peak_mb(big)
    assert out == "(1, 1, 28, 28)"
    assert grown < 90, f"decoding grew the process by {grown} MB"


def test_jpeg_draft_mode_reads_a_jpeg_over_the_limit_at_a_small_size(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERKIT_MAX_IMAGE_PIXELS", "1000000")
    photo = tmp_path / "c" / "photo.jpg"
    photo.parent.mkdir()
    Image.radial_gradient("L").resize((2000, 2000)).save(photo, quality=90)
    assert decode_image(photo, (28, 28))[0].shape[1] <= 2000 // 8 * 2
    with pytest.raises(DataError, match="2000x2000 .* over the 1,000,000-pixel limit"):
        decode_image(photo)  # no size wanted: no draft, so over the limit


# --------------------------------------------------------------------------- formats and bad files


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_webp_and_tiff_are_read_and_other_files_listed(tmp_path: Path, mnist_small: ArrayDataset,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    root = _folder(tmp_path / "mixed", mnist_small)
    Image.fromarray(np.round(mnist_small.x[0, 0] * 255).astype(np.uint8)).save(root / "0" / "extra.webp", lossless=True)
    Image.fromarray(np.round(mnist_small.x[1, 0] * 255).astype(np.uint8)).save(root / "0" / "extra.tif")
    (root / "1" / "notes.txt").write_text("not an image")
    (root / "2" / "logo.svg").write_text("<svg/>")
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        ds = load_dataset(str(root))
    assert len(ds) == len(mnist_small) + 2
    webp = [f.endswith("extra.webp") for f in ds.meta["files"]].index(True)
    np.testing.assert_allclose(ds.x[webp, 0], mnist_small.x[0, 0], atol=1 / 255 + 1e-6)  # WebP decodes as RGB
    notes = [r.getMessage() for r in caplog.records if "Pillow does not decode as an image" in r.getMessage()]
    assert len(notes) == 1 and "skipped 2 files" in notes[0] and "1/notes.txt" in notes[0] and "2/logo.svg" in notes[0]


def test_a_corrupt_image_stops_the_load_with_a_hint_or_is_skipped(tmp_path: Path, mnist_small: ArrayDataset,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    root = _folder(tmp_path / "digits", mnist_small)
    (root / "4" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    first = sorted((root / "7").iterdir())[0]
    first.write_bytes(first.read_bytes()[:60])  # truncated: the header reads, the pixels do not
    with pytest.raises(DataError, match=r"broken\.png: cannot read image .*; pass --skip-bad-files") as info:
        load_dataset(str(root))
    assert "\n" not in str(info.value)
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        ds = load_dataset(str(root), read=ReadOptions(skip_bad_files=True), shape=(1, 28, 28))
    assert len(ds) == len(mnist_small) - 1 and ds.class_names == mnist_small.class_names
    line = next(r.getMessage() for r in caplog.records if "unreadable" in r.getMessage())
    assert "skipped 2 unreadable files" in line and "4/broken.png" in line and f"7/{first.name}" in line


def test_read_images_skips_and_reports_indices(tmp_path: Path, mnist_small: ArrayDataset) -> None:
    files = sorted(_folder(tmp_path / "d", mnist_small.subset(np.arange(3))).rglob("*.png"))
    files.insert(1, tmp_path / "missing.png")
    x, kept = read_images(files, (1, 28, 28), where=tmp_path, skip_bad_files=True)
    assert kept == [0, 2, 3] and x.shape == (3, 1, 28, 28)


def _wav(path: Path, seconds: float = 0.1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.sin(2 * np.pi * 440 * t) * 20000).astype("<i2").tobytes())


def test_wav_folder_skips_bad_files_when_asked(tmp_path: Path) -> None:
    for c in ("a", "b"):
        for i in range(2):
            _wav(tmp_path / "w" / c / f"{i}.wav")
    (tmp_path / "w" / "b" / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(DataError, match=r"bad\.wav: cannot read WAV file .*; pass --skip-bad-files"):
        load_dataset(str(tmp_path / "w"))
    ds = load_dataset(str(tmp_path / "w"), read=ReadOptions(skip_bad_files=True))
    assert len(ds) == 4 and ds.class_names == ["a", "b"]
    assert not any(Path(f).name == "bad.wav" for f in ds.meta["files"])


def test_cli_predict_stops_at_a_corrupt_image_or_skips_and_lists_it(tmp_path: Path, source_run: Path,
                                                                    mnist_small: ArrayDataset) -> None:
    import os

    root = _folder(tmp_path / "new", mnist_small.subset(np.arange(4)))
    (root / "0" / "bad.png").write_bytes(b"not a png")
    cmd = [sys.executable, "-m", "transferkit.cli", "predict", str(source_run), str(root)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFERKIT_PROGRESS": "0"}
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "bad.png: cannot read image" in bad.stderr
    assert "--skip-bad-files" in bad.stderr
    ok = subprocess.run([*cmd, "--skip-bad-files"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 1 + 4
    assert "skipped 1 unreadable file (--skip-bad-files): 0/bad.png" in ok.stderr


def test_a_float_tiff_in_0_to_1_is_kept_and_a_16_bit_png_is_scaled(tmp_path: Path, mnist_small: ArrayDataset) -> None:
    img = mnist_small.x[0, 0]
    Image.fromarray(img.astype(np.float32)).save(tmp_path / "f.tif")  # mode F
    np.testing.assert_allclose(decode_image(tmp_path / "f.tif")[0][0], img, atol=1e-6)
    Image.fromarray(np.round(img * 65535).astype(np.uint16)).save(tmp_path / "d.png")
    np.testing.assert_allclose(decode_image(tmp_path / "d.png")[0][0], img, atol=1e-4)
