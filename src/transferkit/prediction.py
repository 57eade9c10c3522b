"""Predict classes for new inputs (images, text, audio: by the model's modality) with a saved run's model."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.data import ArrayDataset, ReadOptions, conform, prepare
from transferkit.data.files import load_npz, load_path
from transferkit.data.images import is_image_file, read_images
from transferkit.engine.precision import predict_logits, resolve_placement
from transferkit.errors import ConfigError, DataError
from transferkit.models.base import ModelSpec
from transferkit.runs import load_run


def load_inputs(path: str | Path, spec: ModelSpec | tuple[int, ...], *, label_column: str | None = None,
                text_column: str | None = None, read: ReadOptions = ReadOptions()) -> tuple[ArrayDataset, list[str]]:
    """Unlabelled inputs for a model, converted to its input format; returns the data and a name per sample.

    By the model's modality: images from an image file, a folder of images (searched
    recursively) or an ``.npz`` with ``x``; text from a ``.txt`` file (one input per non-empty
    line), a ``.csv`` with a ``text`` column (or ``text_column``) or a ``.jsonl`` with a ``text``
    field; tables from a ``.csv`` / ``.jsonl`` with the training columns (a label column, the
    training one or ``label_column``, is ignored) or an ``.npz`` with ``x``; audio from a ``.wav``
    file or a folder of ``.wav`` files. A tuple ``spec`` is an image/tabular input shape. ``read``:
    skip unreadable files of a folder (listed on stderr); the input range of the run's ``.npz`` images.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    modality = spec.modality if isinstance(spec, ModelSpec) else "image"
    if modality == "text":
        return _text_inputs(p, spec, text_column)  # type: ignore[arg-type]
    if modality == "tabular" and isinstance(spec, ModelSpec):
        return _table_inputs(p, spec, label_column)
    if modality == "audio":
        return _audio_inputs(p, spec, read.skip_bad_files)  # type: ignore[arg-type]
    shape = tuple(spec.input_shape) if isinstance(spec, ModelSpec) else spec
    if p.suffix.lower() == ".npz":
        ds = conform(load_npz(p, labels_required=False, read=read), shape)
        return ds, [f"{p.name}[{i}]" for i in range(len(ds))]
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f))
    if not files:
        raise DataError(f"{p}: no images found (expected image files Pillow decodes: .png, .jpg, .webp, .tif ...; "
                        "or an .npz)")
    x, kept = read_images(files, shape, where=p, skip_bad_files=read.skip_bad_files, hint=p.is_dir())
    return ArrayDataset(x, None, [], str(p)), [str(files[i]) for i in kept]


def _table_inputs(p: Path, spec: ModelSpec, label_column: str | None) -> tuple[ArrayDataset, list[str]]:
    if not p.is_file() or p.suffix.lower() not in (".csv", ".jsonl", ".npz"):
        raise DataError(f"{p}: a tabular model takes a .csv or .jsonl table (or an .npz with 'x')")
    if label_column is None and spec.preprocess:
        label_column = spec.preprocess.get("label_column")
    if p.suffix.lower() == ".npz":
        ds = load_npz(p, labels_required=False)
    else:
        from transferkit.data.tabular import load_table

        ds = load_table(p, label_column=label_column, labels_required=False, allow_images=False)
    unit = {".csv": "row", ".jsonl": "line"}.get(p.suffix.lower())
    names = [f"{p.name}:{unit} {i + 1}" if unit else f"{p.name}[{i}]" for i in range(len(ds))]
    return prepare(ds, spec), names


def _text_inputs(p: Path, spec: ModelSpec, text_column: str | None = None) -> tuple[ArrayDataset, list[str]]:
    suffix = p.suffix.lower()
    if p.is_file() and suffix == ".txt":
        try:
            lines = [(i + 1, t.strip()) for i, t in enumerate(p.read_text(encoding="utf-8").splitlines()) if t.strip()]
        except UnicodeDecodeError as err:
            raise DataError(f"{p}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        if not lines:
            raise DataError(f"{p}: no text (every line is empty)")
        ds = ArrayDataset(np.array([t for _, t in lines], dtype=object), None, [], str(p), modality="text")
        return prepare(ds, spec), [f"{p.name}:{n}" for n, _ in lines]
    if p.is_file() and suffix in (".csv", ".jsonl"):
        ds = load_path(p, labels_required=False, text_column=text_column)
        if ds.modality != "text":
            raise DataError(f"{p}: no '{text_column or 'text'}' column, so no text inputs for the text model {spec.name}")
        rows = "row" if suffix == ".csv" else "line"
        return prepare(ds, spec), [f"{p.name}:{rows} {i + 1}" for i in range(len(ds))]
    raise DataError(f"{p}: a text model takes a .txt (one input per line), .csv with a 'text' column or .jsonl file")


def _audio_inputs(p: Path, spec: ModelSpec, skip_bad_files: bool = False) -> tuple[ArrayDataset, list[str]]:
    from transferkit.data.audio import SAMPLE_RATE, is_wav_folder, load_wav_folder, read_wav, resample

    if p.is_file() and p.suffix.lower() == ".wav":
        samples, rate = read_wav(p)
        ds = ArrayDataset(resample(samples, rate, SAMPLE_RATE)[None].astype(np.float32), None, [], str(p),
                          modality="audio", meta={"sample_rate": SAMPLE_RATE})
        return prepare(ds, spec), [str(p)]
    if p.is_dir() and is_wav_folder(p):
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".") and f.suffix.lower() == ".wav")
        if not files:
            raise DataError(f"{p}: predict takes a flat folder of .wav files (no class sub-folders)")
        ds = load_wav_folder(p, labels_required=False, skip_bad_files=skip_bad_files)
        return prepare(ds, spec), [str(f) for f in ds.meta["files"]]  # type: ignore[attr-defined]
    raise DataError(f"{p}: an audio model takes a .wav file or a folder of .wav files")


def predict(run: str | Path, inputs: str | Path, top_k: int = 1, *, label_column: str | None = None,
            text_column: str | None = None, skip_bad_files: bool = False) -> list[dict[str, Any]]:
    """The ``top_k`` most probable classes for each input, using the run's model.

    Each row has ``input``, ``class`` and ``probability`` (the top class), then ``class_2``,
    ``probability_2`` ... ``class_K``, ``probability_K`` in decreasing probability.

    Raises:
        ConfigError: ``top_k`` is below 1 or above the run's number of classes.
    """
    loaded = load_run(run)
    classes = loaded.spec.class_names
    if not 1 <= top_k <= len(classes):
        raise ConfigError(f"--top-k {top_k}: must be between 1 and the run's {len(classes)} classes")
    text_column = text_column or (loaded.config.get("columns") or {}).get("text")  # as the run was trained
    ds, names = load_inputs(inputs, loaded.spec, label_column=label_column, text_column=text_column,
                            read=ReadOptions.for_run(loaded.config, skip_bad_files))
    model = loaded.model
    place = resolve_placement(model, "auto", "auto")
    model.to(place.device)
    x = ds.x if isinstance(ds.x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(ds.x))
    probs = predict_logits(model, x, place).float().softmax(1)
    conf, idx = probs.topk(top_k, dim=1)
    return [_row(name, [classes[int(i)] for i in ii], cc.tolist()) for name, ii, cc in zip(names, idx, conf)]


def topk_columns(top_k: int) -> list[str]:
    """CSV columns of :func:`predict`'s rows: ``input, class, probability, class_2, probability_2, ...``."""
    cols = ["input", "class", "probability"]
    for r in range(2, top_k + 1):
        cols += [f"class_{r}", f"probability_{r}"]
    return cols


def _row(name: str, classes: list[str], probs: list[float]) -> dict[str, Any]:
    row: dict[str, Any] = {"input": name}
    for r, (c, p) in enumerate(zip(classes, probs), start=1):
        suffix = "" if r == 1 else f"_{r}"
        row[f"class{suffix}"] = c
        row[f"probability{suffix}"] = float(p)
    return row


def predict_to_csv(run: str | Path, inputs: str | Path, out: str | Path | None = None, top_k: int = 1, *,
                   label_column: str | None = None, text_column: str | None = None,
                   skip_bad_files: bool = False) -> str:
    """Predictions as CSV text (see :func:`topk_columns`); also written to ``out`` if given."""
    rows = predict(run, inputs, top_k, label_column=label_column, text_column=text_column,
                   skip_bad_files=skip_bad_files)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=topk_columns(top_k), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: f"{v:.4f}" if k.startswith("probability") else v for k, v in r.items()})
    if out is not None:
        from transferkit.io import atomic_write_bytes

        atomic_write_bytes(Path(out), buf.getvalue().encode())
    return buf.getvalue()
