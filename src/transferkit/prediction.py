"""Predict classes for new inputs (images, text, audio: by the model's modality) with a saved run's model."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.data import ArrayDataset, ReadOptions, align_classes, conform, load_dataset, prepare, split
from transferkit.data.files import load_npz, load_path
from transferkit.data.images import is_image_file, read_images
from transferkit.engine.precision import Placement, predict_logits, resolve_placement
from transferkit.errors import ConfigError, DataError, TransferkitError
from transferkit.models.base import ModelSpec
from transferkit.runs import LoadedRun, load_run

log = logging.getLogger("transferkit")


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
        ds = load_path(p, labels_required=False)
        lines = ds.meta["lines"]
        assert isinstance(lines, list)
        return prepare(ds, spec), [f"{p.name}:{n}" for n in lines]
    if p.is_file() and suffix in (".csv", ".jsonl"):
        ds = load_path(p, labels_required=False, text_column=text_column)
        if ds.modality != "text":
            raise DataError(f"{p}: no '{text_column or 'text'}' column, so no text inputs for the text model "
                            f"{spec.name}")
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
        files = sorted(f for f in p.iterdir()
                       if f.is_file() and not f.name.startswith(".") and f.suffix.lower() == ".wav")
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
    return _top_rows(names, predict_logits(model, x, place).float(), classes, top_k)


def _labelled_inputs(p: Path, spec: ModelSpec, label_column: str | None, text_column: str | None,
                     read: ReadOptions) -> tuple[ArrayDataset, list[str]] | None:
    """``--labels-if-any``: the inputs with their labels, read by the training loaders (an image or
    ``.wav`` folder with one sub-folder per class, an ``.npz`` with ``y``, a table or text ``.csv`` /
    ``.jsonl`` with a label column), labels re-indexed to the run's classes; None when unlabelled."""
    if not (p.is_dir() or p.suffix.lower() in (".npz", ".csv", ".jsonl")):
        return None
    ds = load_dataset(str(p), model=spec, labels_required=False, label_column=label_column,
                      text_column=text_column, read=read)
    if ds.y is None:
        return None
    ds = align_classes(ds, list(spec.class_names))
    files = ds.meta.get("files")
    names = [str(f) for f in files] if isinstance(files, list) else [f"{p.name}[{i}]" for i in range(len(ds))]
    return ds, names


def clean_inputs(config: dict[str, Any], spec: ModelSpec, n: int) -> tuple[torch.Tensor | None, str]:
    """Up to ``n`` in-distribution inputs for EATA's Fisher: the run's validation split (rebuilt from
    ``config.json``'s data and split), shuffled (seed 0); ``None`` and the reason when that data
    cannot be loaded here (then the stream's first inputs are used)."""
    data, sp = config.get("data"), config.get("split")
    if not isinstance(data, str) or not isinstance(sp, dict):
        return None, "the run records no data split"
    try:
        ds = load_dataset(data, model=spec, seed=int(config.get("seed", 0)), read=ReadOptions.for_run(config))
        val = split(ds, val=sp["val"], test=sp["test"], seed=sp["seed"]).val
    except (TransferkitError, OSError, KeyError) as err:
        return None, f"the run's data '{data}' did not load here ({str(err)[:120]})"
    idx = np.random.default_rng(0).permutation(len(val))[:n]
    note = f"{len(idx)} inputs of the run's validation split ({data})"
    return torch.from_numpy(np.ascontiguousarray(val.x[idx])), note


@dataclass
class StreamResult:
    """:func:`predict_stream`'s output: the prediction rows, one log row per batch, and a summary."""

    rows: list[dict[str, Any]]
    batches: list[dict[str, Any]]
    summary: dict[str, Any]


def predict_stream(run: str | Path, inputs: str | Path, adapt: str | None = None, *, top_k: int = 1,
                   batch_size: int = 128, labels_if_any: bool = False, options: Any = None,
                   label_column: str | None = None, text_column: str | None = None,
                   skip_bad_files: bool = False) -> StreamResult:
    """Predict ``inputs`` in batches of ``batch_size`` in the order given, adapting the model online
    with the test-time method ``adapt`` (``bn``, ``tent``, ``eata``: :mod:`transferkit.testtime`;
    ``None``: no adaptation). Each batch's log row has ``batch, n, entropy`` (mean, nats),
    ``selected`` (samples in the loss: eata's filtered count, tent all, bn none), ``reset`` (1: back
    to the source weights after this batch) and, with ``labels_if_any`` and labelled inputs,
    ``accuracy``. EATA's Fisher uses the run's validation split when its data loads, else the first
    ``fisher_samples`` stream inputs (the summary's ``fisher_data`` says which); one estimated on the
    validation split is kept in the run folder (:data:`FISHER_CACHE`) and reused while the run's
    weights and config, the EATA options, the batch size and the placement stay the same."""
    from transferkit.testtime import TTA_METHODS, entropy

    if adapt is not None:
        TTA_METHODS.get(adapt)  # unknown name: one line, before anything loads
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    t0 = time.perf_counter()
    loaded = load_run(run)
    if not 1 <= top_k <= len(loaded.spec.class_names):
        raise ConfigError(f"--top-k {top_k}: must be between 1 and the run's {len(loaded.spec.class_names)} classes")
    text_column = text_column or (loaded.config.get("columns") or {}).get("text")
    read = ReadOptions.for_run(loaded.config, skip_bad_files)
    got = _labelled_inputs(Path(inputs), loaded.spec, label_column, text_column, read) if labels_if_any else None
    ds, names = got or load_inputs(inputs, loaded.spec, label_column=label_column, text_column=text_column, read=read)
    place = resolve_placement(loaded.model, "auto", "auto")
    loaded.model.to(place.device)
    x = ds.x if isinstance(ds.x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(ds.x))
    summary: dict[str, Any] = {"method": adapt or "none", "batch_size": batch_size, "n": len(x),
                               "labels": ds.name if got else None}
    if adapt is None:
        logits = predict_logits(loaded.model, x, place, batch_size)
        records = [{"batch": b, "n": len(chunk), "entropy": float(entropy(chunk).mean()), "selected": None, "reset": 0}
                   for b, chunk in enumerate(logits.split(batch_size))]
    else:
        logits, records = _adapt(adapt, loaded, x, place, batch_size, options, summary)
    rows = _top_rows(names, logits, loaded.spec.class_names, top_k)
    pred = np.array([loaded.spec.class_names.index(r["class"]) for r in rows]) if got else None  # as the rows say
    _finish_summary(summary, records, pred, ds.y if got else None, batch_size, time.perf_counter() - t0)
    return StreamResult(rows, records, summary)


FISHER_CACHE = "tta_fisher.safetensors"


def _adapt(adapt: str, loaded: LoadedRun, x: torch.Tensor, place: Placement, batch_size: int, options: Any,
           summary: dict[str, Any]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The stream through ``adapt``; EATA's Fisher from the run's cache, else estimated (and cached)."""
    from transferkit.testtime import EataAdapter, adapt_stream, make_adapter

    adapter = make_adapter(adapt, loaded.model, place, len(loaded.spec.class_names), options)
    fisher_x, key, store = None, "", False
    if isinstance(adapter, EataAdapter):
        key = fisher_key(loaded, [adapter.options.fisher_samples, adapter.frozen_norms], batch_size, place)
        cached = _cached_fisher(loaded.path / FISHER_CACHE, key, adapter)
        if cached is not None:
            summary["fisher_data"] = f"{cached} (from {FISHER_CACHE} in the run folder)"
        else:
            fisher_x, summary["fisher_data"] = clean_inputs(loaded.config, loaded.spec, adapter.options.fisher_samples)
            store = fisher_x is not None
            if fisher_x is None:
                summary["fisher_data"] += f"; used the stream's first {min(len(x), adapter.options.fisher_samples)}"
    logits, steps = adapt_stream(adapter, x, batch_size, fisher_x)
    if store and isinstance(adapter, EataAdapter) and adapter.fisher is not None:
        _store_fisher(loaded, key, summary["fisher_data"], adapter.fisher)
    summary["options"] = asdict(adapter.options)
    if "frozen_norms" in summary["options"]:  # as resolved for this model (None: the default rule)
        summary["options"]["frozen_norms"] = adapter.frozen_norms
    return logits, [{**asdict(r), "reset": int(r.reset)} for r in steps]


def fisher_key(loaded: LoadedRun, options: list[int], batch_size: int, place: Placement) -> str:
    """What EATA's Fisher depends on: the run's weights (file size, inode, mtime, ctime: as git's index tells a
    rewritten file; hashing the bytes took ~10 ms a call) and config, the options it depends on (Fisher samples,
    frozen normalisation layers), batch size and placement."""
    st = (loaded.path / "model.safetensors").stat()
    h = hashlib.sha256(json.dumps([st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]).encode())
    h.update((loaded.path / "config.json").read_bytes())
    h.update(json.dumps([options, batch_size, place.describe(), torch.__version__, 3]).encode())
    return h.hexdigest()


def _cached_fisher(path: Path, key: str, adapter: Any) -> str | None:
    """Load the cached Fisher into ``adapter`` when ``path`` holds one for ``key``; returns its note."""
    if not path.is_file():
        return None
    from safetensors import SafetensorError, safe_open

    try:  # a torn or foreign cache file is recomputed, never fatal
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            if meta.get("key") != key:
                return None
            fisher = [f.get_tensor(f"fisher.{i}") for i in range(len(adapter.params))]
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError):
        return None
    if [t.shape for t in fisher] != [p.shape for p in adapter.params]:
        return None
    adapter.fisher = [t.to(p.device) for t, p in zip(fisher, adapter.params, strict=True)]
    return meta.get("note", "cached")


def _store_fisher(loaded: LoadedRun, key: str, note: str, fisher: list[torch.Tensor]) -> None:
    """The Fisher into the run folder under the run's lock, in its manifest (``--overwrite`` removes it); a
    read-only, locked or incomplete run: skipped."""
    from transferkit.io import save_tensors
    from transferkit.runs import RunDir

    try:
        with RunDir(loaded.path).locked() as run:  # the run's lock, as evaluate adds its metrics
            run.adopt(FISHER_CACHE)
            save_tensors(loaded.path / FISHER_CACHE, {f"fisher.{i}": t for i, t in enumerate(fisher)},
                         metadata={"key": key, "note": note})
    except (OSError, TransferkitError) as err:
        log.info("EATA's Fisher estimate not cached in %s (%s)", loaded.path, err)


def _finish_summary(summary: dict[str, Any], records: list[dict[str, Any]], pred: np.ndarray | None,
                    y: np.ndarray | None, batch_size: int, seconds: float) -> None:
    """Per-batch accuracy (labels given) and the stream's totals, in place."""
    if y is not None and pred is not None:
        hit = (pred == y).astype(np.float64)
        for b, rec in enumerate(records):
            rec["accuracy"] = float(hit[b * batch_size : (b + 1) * batch_size].mean())
        summary["accuracy"] = float(hit.mean())
    n = max(summary["n"], 1)
    summary.update(batches=len(records), resets=sum(r["reset"] for r in records),
                   mean_entropy=sum(r["entropy"] * r["n"] for r in records) / n,
                   seconds=seconds, samples_per_second=summary["n"] / max(seconds, 1e-9))


def summary_line(summary: dict[str, Any]) -> str:
    """One line for the terminal about a streamed prediction."""
    line = (f"predict --adapt {summary['method']}: {summary['n']} inputs in {summary['batches']} batches of "
            f"{summary['batch_size']}, {summary['resets']} resets, mean entropy {summary['mean_entropy']:.3f}")
    if "accuracy" in summary:
        line += f", accuracy {100 * summary['accuracy']:.2f}% (labels of {summary['labels']})"
    return line + f", {summary['samples_per_second']:.0f} inputs/s"


def topk_columns(top_k: int) -> list[str]:
    """CSV columns of :func:`predict`'s rows: ``input, class, probability, class_2, probability_2, ...``."""
    cols = ["input", "class", "probability"]
    for r in range(2, top_k + 1):
        cols += [f"class_{r}", f"probability_{r}"]
    return cols


def _top_rows(names: list[str], logits: torch.Tensor, classes: list[str], top_k: int) -> list[dict[str, Any]]:
    conf, idx = logits.softmax(1).topk(top_k, dim=1)
    return [_row(name, [classes[int(i)] for i in ii], cc.tolist())
            for name, ii, cc in zip(names, idx, conf, strict=True)]


def _row(name: str, classes: list[str], probs: list[float]) -> dict[str, Any]:
    row: dict[str, Any] = {"input": name}
    for r, (c, p) in enumerate(zip(classes, probs, strict=True), start=1):
        suffix = "" if r == 1 else f"_{r}"
        row[f"class{suffix}"] = c
        row[f"probability{suffix}"] = float(p)
    return row


def predict_to_csv(run: str | Path, inputs: str | Path, out: str | Path | None = None, top_k: int = 1, *,
                   label_column: str | None = None, text_column: str | None = None,
                   skip_bad_files: bool = False, adapt: str | None = None, batch_size: int = 128,
                   labels_if_any: bool = False, overwrite: bool = False, options: Any = None) -> str:
    """Predictions as CSV text (see :func:`topk_columns`); also written to ``out`` if given.

    With ``adapt`` (a test-time method) or ``labels_if_any``, the stream runs through
    :func:`predict_stream`: a summary line is logged, and with ``out`` the per-batch log is written
    beside it as ``OUT_STEM.batches.csv`` and ``OUT_STEM.batches.json`` (summary + rows); an existing
    one that predict did not write is refused unless ``overwrite``. ``options``: the ``adapt`` method's
    options (:mod:`transferkit.testtime`; default: its defaults)."""
    streamed = adapt is not None or labels_if_any
    if streamed and out is not None:
        from transferkit.io import check_output_file

        csv_log, json_log = batch_log_paths(out)
        check_output_file(csv_log, overwrite, lambda head: head.startswith(b"batch,n,"), "transferkit predict")
        check_output_file(json_log, overwrite, lambda head: head.startswith(b'{\n  "summary"'), "transferkit predict")
    if streamed:
        res = predict_stream(run, inputs, adapt, top_k=top_k, batch_size=batch_size, labels_if_any=labels_if_any,
                             options=options, label_column=label_column, text_column=text_column,
                             skip_bad_files=skip_bad_files)
        rows = res.rows
        log.info(summary_line(res.summary))
    else:
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
        if streamed:
            write_batch_log(batch_log_paths(out), res)
    return buf.getvalue()


def batch_log_paths(out: str | Path) -> tuple[Path, Path]:
    """Where the per-batch log of ``predict --out OUT`` goes: ``OUT_STEM.batches.csv`` / ``.json``."""
    p = Path(out)
    return p.with_name(p.stem + ".batches.csv"), p.with_name(p.stem + ".batches.json")


def write_batch_log(paths: tuple[Path, Path], res: StreamResult) -> None:
    """The per-batch log as CSV and as JSON (``{"summary": ..., "batches": [...]}``)."""
    from transferkit.io import atomic_write_bytes

    cols = ["batch", "n", "entropy", "selected", "reset"] + (["accuracy"] if "accuracy" in res.summary else [])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in res.batches:
        w.writerow({k: ("" if v is None else f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_bytes(paths[0], buf.getvalue().encode())
    doc = json.dumps({"summary": res.summary, "batches": res.batches}, indent=2) + "\n"
    atomic_write_bytes(paths[1], doc.encode())
