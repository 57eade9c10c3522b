"""Predict classes for new inputs with a saved run's model."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.data import ArrayDataset, conform
from transferkit.data.files import IMAGE_SUFFIXES, _decode, load_npz
from transferkit.engine.precision import predict_logits, resolve_placement
from transferkit.errors import DataError
from transferkit.runs import load_run


def load_inputs(path: str | Path, shape: tuple[int, ...]) -> tuple[ArrayDataset, list[str]]:
    """Unlabelled inputs from an image file, a folder of images (searched recursively) or an
    ``.npz`` with ``x``, converted to ``shape``; returns the data and a name per sample."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.suffix.lower() == ".npz":
        ds = conform(load_npz(p, labels_required=False), shape)
        return ds, [f"{p.name}[{i}]" for i in range(len(ds))]
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{p}: no images found (expected {', '.join(IMAGE_SUFFIXES)} files or an .npz)")
    planes = [conform(ArrayDataset(_decode(f)[0][None], None, [], str(f)), shape).x[0] for f in files]
    return ArrayDataset(np.stack(planes), None, [], str(p)), [str(f) for f in files]


def predict(run: str | Path, inputs: str | Path) -> list[dict[str, Any]]:
    """Top class and its probability for each input, using the run's model."""
    loaded = load_run(run)
    ds, names = load_inputs(inputs, loaded.spec.input_shape)
    model = loaded.model
    place = resolve_placement(model, "auto", "auto")
    model.to(place.device)
    probs = predict_logits(model, torch.from_numpy(ds.x), place).softmax(1)
    conf, idx = probs.max(1)
    classes = loaded.spec.class_names
    return [{"input": n, "class": classes[int(i)], "probability": float(c)} for n, i, c in zip(names, idx, conf)]


def predict_to_csv(run: str | Path, inputs: str | Path, out: str | Path | None = None) -> str:
    """Predictions as CSV text (``input,class,probability``); also written to ``out`` if given."""
    rows = predict(run, inputs)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["input", "class", "probability"], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "probability": f"{r['probability']:.4f}"})
    if out is not None:
        from transferkit.io import atomic_write_bytes

        atomic_write_bytes(Path(out), buf.getvalue().encode())
    return buf.getvalue()
