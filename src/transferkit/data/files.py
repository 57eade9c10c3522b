"""Loaders for user data: image folders, ``.npz``, CSV and MNIST-style IDX files.

Each loader returns an :class:`ArrayDataset` named by the path and raises a one-line
:class:`DataError` that names the path (or the exact file) and the problem. :func:`load_path`
picks the loader from what the path is.

Labels: integer labels become the sorted distinct values, named ``str(value)`` (so a subset with
labels {3, 5} has two classes "3" and "5"); string labels become their sorted distinct values.
"""

from __future__ import annotations

import gzip
import math
import zipfile
from pathlib import Path

import numpy as np

from transferkit.data.base import ArrayDataset, ReadOptions
from transferkit.data.images import is_image_file, note_other_files, read_images
from transferkit.data.labels import labels_to_classes
from transferkit.data.transforms import range_note, resolve_range, scale_to_unit
from transferkit.errors import DataError, one_line_reason

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_image_folder(path: str | Path, *, shape: tuple[int, ...] | None = None,
                      labels_required: bool = True, read: ReadOptions = ReadOptions()) -> ArrayDataset:
    """Images in one sub-folder per class (class names = sorted sub-folder names).

    Every format Pillow decodes is read (:func:`~transferkit.data.images.image_suffixes`: PNG,
    JPEG, BMP, GIF, WebP, TIFF ...); other files are listed in one note, hidden entries ignored.
    Channels are 1 when every image is greyscale (grey modes, or a palette of greys), else 3;
    the size is the most common one. ``shape=(C, H, W)`` overrides both. Values are scaled to
    ``[0, 1]``. A folder holding MNIST IDX files instead of class folders is read by
    :func:`load_idx_folder`. With ``labels_required=False`` a flat folder of images (no class
    sub-folders) loads unlabelled (``y=None``, no class names). An unreadable image stops the load
    with a one-line error, unless ``read.skip_bad_files`` (then it is left out and listed).

    Files are decoded one at a time into the result (each under a size cap, see
    :func:`~transferkit.data.images.decode_image`); past the data memory budget
    (``$TRANSFERKIT_DATA_MEMORY``, see :mod:`transferkit.data.storage`) the result is a
    memory-mapped array on disk, so a folder that does not fit in RAM still loads.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    if find_idx_images(root):
        return load_idx_folder(root, read)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        loose = [p for p in root.iterdir() if p.is_file() and is_image_file(p)]
        if loose and not labels_required:
            subdirs = [root]
        else:
            problem = "images must be in one sub-folder per class" if loose else "empty folder"
            raise DataError(f"{root}: {problem}")
    files: list[Path] = []
    labels: list[int] = []
    for label, sub in enumerate(subdirs):
        found = sorted(p for p in sub.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_file(p))
        if not found:
            raise DataError(f"{sub}: empty class folder (no image files that Pillow decodes)")
        files += found
        labels += [label] * len(found)
    note_other_files(root, subdirs)
    x, kept = read_images(files, shape, where=root, skip_bad_files=read.skip_bad_files)
    meta: dict[str, object] = {"files": [str(files[i]) for i in kept]}
    if subdirs == [root]:  # a flat folder: unlabelled
        return ArrayDataset(x=x, y=None, class_names=[], name=str(root), modality="image", meta=meta)
    y = np.array([labels[i] for i in kept], dtype=np.int64)
    for c in sorted(set(range(len(subdirs))) - set(y.tolist())):
        raise DataError(f"{subdirs[c]}: no readable images left in this class folder (all were skipped)")
    return ArrayDataset(x=x, y=y, class_names=[p.name for p in subdirs], name=str(root), modality="image", meta=meta)


# --------------------------------------------------------------------------- npz


def _as_nchw(x: np.ndarray, where: str) -> np.ndarray:
    """``[N,H,W]``, ``[N,C,H,W]`` or channels-last ``[N,H,W,C]`` (C in 1, 3) as ``[N,C,H,W]``."""
    if x.ndim == 3:
        return x[:, None]
    first, last = x.shape[1] in (1, 3), x.shape[3] in (1, 3)
    if first:
        return x
    if last:
        return x.transpose(0, 3, 1, 2)
    raise DataError(f"{where}: images {tuple(x.shape)} need 1 or 3 channels, first or last")


def _images(x: np.ndarray, where: str, read: ReadOptions,
            declared: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, object]]:
    """Raw ``[N, C, H, W]`` images scaled to float32 0..1 by their range (noted), and the meta recording it."""
    vr = resolve_range(x, where, declared=declared, run_range=read.input_range)
    note = range_note(vr, x, where, read.input_range)
    meta: dict[str, object] = {"input_range": [vr.low, vr.high], "input_range_how": vr.how}
    if note:
        meta["notes"] = [note]
    return np.ascontiguousarray(scale_to_unit(x, vr, where)), meta


def load_npz(path: str | Path, *, labels_required: bool = True, read: ReadOptions = ReadOptions()) -> ArrayDataset:
    """A ``.npz`` archive with arrays ``x`` and ``y`` and optionally ``class_names`` and ``x_range``.

    ``x`` is ``[N, H, W]`` (grey), ``[N, C, H, W]``, ``[N, H, W, C]`` (C in 1, 3; detected) or
    ``[N, D]`` (tabular rows, kept as they are). Images are scaled to 0..1 from ``x_range`` =
    ``[low, high]`` when the archive has it, else from the range :func:`resolve_range` detects
    (uint8: 0..255; whole numbers up to 16: 0..16, e.g. sklearn's digits; ...), which is logged
    as a note and recorded in ``meta["input_range"]``.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{p}: cannot read .npz archive ({one_line_reason(err)})") from None
    for key in ("x", "y") if labels_required else ("x",):
        if key not in arrays:
            raise DataError(f"{p}: no array '{key}' (arrays: {', '.join(sorted(arrays)) or 'none'})")
    x = arrays["x"]
    names = [str(n) for n in arrays["class_names"].ravel()] if "class_names" in arrays else None
    y, classes = labels_to_classes(arrays["y"], str(p), names) if "y" in arrays else (None, names or [])
    if x.ndim == 2:
        if x.dtype.kind not in "iufb":
            raise DataError(f"{p}: array 'x' must be numeric, got dtype {x.dtype}")
        return ArrayDataset(x=x.astype(np.float32), y=y, class_names=classes, name=str(p), modality="tabular")
    if x.ndim not in (3, 4):
        raise DataError(f"{p}: array 'x' has shape {tuple(x.shape)}; expected [N,H,W], [N,C,H,W], [N,H,W,C] or [N,D]")
    x, meta = _images(_as_nchw(x, str(p)), str(p), read, arrays.get("x_range"))
    return ArrayDataset(x=x, y=y, class_names=classes, name=str(p), modality="image", meta=meta)


# --------------------------------------------------------------------------- csv


def load_csv(path: str | Path, *, label_column: str | None = None, labels_required: bool = True) -> ArrayDataset:
    """A CSV table with a header row, a label column and feature columns (see :mod:`transferkit.data.tabular`).

    With ``labels_required=False`` a file without the label column loads unlabelled (``y=None``).

    The label column is ``label_column`` or the one named ``label`` (any case). Feature columns
    are numeric or categorical, missing cells allowed; when every cell is a number, the count
    per row is a perfect square of at least 64 (8x8) and no value is negative, rows are grey
    square images (divided by 255 when the maximum exceeds 1); otherwise a raw table.
    """
    from transferkit.data.tabular import load_table

    return load_table(path, label_column=label_column, labels_required=labels_required)


# --------------------------------------------------------------------------- IDX


def is_idx(path: Path) -> bool:
    """Whether a file name looks like an MNIST IDX file (``*-idx3-ubyte``, ``*.idx1-ubyte.gz``...)."""
    name = path.name.lower().removesuffix(".gz")
    return "idx" in name and name.endswith("ubyte")


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped): magic ``0 0 dtype ndim``, big-endian int32 dims, data."""
    p = Path(path)
    try:
        data = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"{p}: cannot read IDX file ({one_line_reason(err)})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise DataError(f"{p}: not an IDX file (bad magic number)")
    ndim, dtype = data[3], np.dtype(IDX_DTYPES[data[2]])
    if ndim < 1 or len(data) < 4 + 4 * ndim:
        raise DataError(f"{p}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(dims) * dtype.itemsize
    body = len(data) - 4 - 4 * ndim
    if body < expected:
        raise DataError(f"{p}: truncated IDX file ({body} of {expected} data bytes for shape {dims})")
    return np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=4 + 4 * ndim).reshape(dims)


def _labels_path(images: Path) -> Path:
    base = images.name.removesuffix(".gz")
    name = base.replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1")
    if name == base:
        raise DataError(f"{images}: cannot derive the labels file name (expected '*-images-idx3-ubyte')")
    for candidate in (name, name + ".gz"):
        if (images.parent / candidate).is_file():
            return images.parent / candidate
    raise DataError(f"{images}: no labels file '{name}' (or '{name}.gz') beside it")


def load_idx(path: str | Path, read: ReadOptions = ReadOptions()) -> ArrayDataset:
    """An MNIST-style IDX images file plus the labels file beside it.

    ``x-images-idx3-ubyte[.gz]`` pairs with ``x-labels-idx1-ubyte[.gz]`` (``images.idx3`` with
    ``labels.idx1``). Passing the labels file finds the images file the same way.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    low = p.name.lower()
    if "labels-idx1" in low or "labels.idx1" in low:
        base = p.name.removesuffix(".gz")
        img = base.replace("labels-idx1", "images-idx3").replace("labels.idx1", "images.idx3")
        found = [p.parent / n for n in (img, img + ".gz") if (p.parent / n).is_file()]
        if not found:
            raise DataError(f"{p}: this is a labels file and no images file '{img}' is beside it")
        p = found[0]
    images, lpath = read_idx(p), _labels_path(p)
    labels = read_idx(lpath)
    if images.ndim not in (3, 4):
        raise DataError(f"{p}: IDX images must have 3 dimensions [N, H, W], got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{lpath}: {labels.shape} labels do not match {len(images)} images in {p.name}")
    x, meta = _images(_as_nchw(images, str(p)), str(p), read)
    y, classes = labels_to_classes(labels, str(lpath))
    return ArrayDataset(x=x, y=y, class_names=classes, name=str(p), modality="image", meta=meta)


def find_idx_images(folder: Path) -> list[Path]:
    """IDX images files in ``folder`` (sorted by name)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and is_idx(p) and ("images-idx3" in p.name.lower() or "images.idx3" in p.name.lower())
    )


def load_idx_folder(path: str | Path, read: ReadOptions = ReadOptions()) -> ArrayDataset:
    """A folder of IDX files: its only images file, or the one whose name contains ``train``."""
    root = Path(path)
    found = find_idx_images(root)
    if len(found) > 1:
        found = [p for p in found if "train" in p.name.lower()] or found
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise DataError(f"{root}: expected one IDX images file (or one named '*train*'), found: {names}")
    return load_idx(found[0], read)


# --------------------------------------------------------------------------- dispatch


def load_path(
    path: str | Path, *, shape: tuple[int, ...] | None = None, label_column: str | None = None,
    labels_required: bool = True, text_column: str | None = None, read: ReadOptions = ReadOptions(),
) -> ArrayDataset:
    """Load a folder, ``.npz``, ``.csv``, ``.jsonl``, ``.txt`` (unlabelled text, one per line) or IDX file,
    choosing the loader by what ``path`` is.

    ``label_column`` / ``text_column`` name the label and text columns of a CSV or JSONL file;
    ``read`` says whether unreadable files of a folder are skipped and the range a run's images were read in."""
    p = Path(path).expanduser()
    if p.is_dir():
        from transferkit.data.wav import is_wav_folder, load_wav_folder

        if is_wav_folder(p):  # .wav files (flat or one sub-folder per class): 16 kHz waveforms
            return load_wav_folder(p, labels_required=labels_required, skip_bad_files=read.skip_bad_files)
        return load_image_folder(p, shape=shape, labels_required=labels_required, read=read)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return load_npz(p, labels_required=labels_required, read=read)
    if suffix in (".csv", ".jsonl"):  # text (a 'text' column / field, or --text-column) or a table
        from transferkit.data.text import load_text_table

        return load_text_table(p, label_column=label_column, text_column=text_column, labels_required=labels_required)
    if suffix == ".txt":  # one unlabelled text per line
        from transferkit.data.text import load_text_lines

        return load_text_lines(p, labels_required=labels_required)
    if is_idx(p):
        return load_idx(p, read)
    raise DataError(f"{p}: unsupported file type (expected a folder, .npz, .csv, .jsonl, .txt or an MNIST IDX file)")
