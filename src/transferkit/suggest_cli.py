"""The ``suggest-labels`` and ``apply-labels`` sub-commands (a :mod:`transferkit.cli` plug-in).

``suggest-labels`` picks the ``--budget`` unlabelled examples worth labelling first, on the frozen
features of ``--source`` (:mod:`transferkit.suggest`), and writes them as a CSV with the columns
``input`` (a file path for image / ``.wav`` folders, the text for text data, the 0-based row index
for ``.npz`` files, tables and built-in data sets), ``why`` and an empty ``label`` for a person
to fill in. With ``--classes`` (the class names, a text source) the picks are spread over the classes
the label-name prompts predict (:func:`transferkit.suggest.class_aware`).

Reading the labelled CSV back: for text it is directly a text data set
(``transfer --data to_label.csv --text-column input``). For every kind of data,
``apply-labels to_label.csv --out labelled`` writes the labelled examples in the format ``transfer
--data`` reads for that kind: a class-per-folder copy of the files (images, ``.wav``), a
``text,label`` CSV (text), the table's own rows plus a ``label`` column (``.csv`` / ``.jsonl``
tables), or an ``.npz`` with ``x`` and ``y`` (``.npz``, IDX and built-in data). Rows whose
``label`` is left empty are skipped (and counted).
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data import DATASETS, ArrayDataset, ReadOptions, load_dataset
from transferkit.errors import ConfigError, DataError

COMMANDS = ("suggest-labels", "apply-labels")
#: Columns of the CSV ``suggest-labels`` writes.
COLUMNS = ("input", "why", "label")


def add_parsers(sub: Any) -> None:
    from transferkit.suggest import CLASS_METHODS, DEFAULT_CLASS_METHOD, DEFAULT_METHOD, METHODS

    sg = sub.add_parser("suggest-labels", help="pick the unlabelled examples worth labelling first (a CSV to fill in)")
    sg.add_argument("--source", required=True, help="pretrained backbone name or run directory (its features)")
    sg.add_argument("--data", required=True,
                    help="unlabelled inputs: an image or .wav folder (flat or per class), .jsonl / .csv text, "
                         ".npz, a table or a built-in name (labels there are ignored)")
    sg.add_argument("--budget", type=int, required=True, help="how many examples to label")
    sg.add_argument("--out", required=True, help="CSV to write (columns input, why, label)")
    sg.add_argument("--classes", default=None, metavar="NAME,NAME,...",
                    help="the class names, when known (text sources): picks are spread over the classes their "
                         "label-name prompts predict")
    methods = [*(m for m in METHODS if m != "random"), *CLASS_METHODS, "random"]
    sg.add_argument("--method", default=None, choices=methods,
                    help=f"selection method (default: {DEFAULT_METHOD}, or {DEFAULT_CLASS_METHOD} with --classes; "
                         "measured in docs/SUGGEST.md)")
    sg.add_argument("--seed", type=int, default=0, help="seed of the clustering")
    sg.add_argument("--model-opt", action="append", metavar="KEY=VALUE", help="backbone option, repeatable")
    sg.add_argument("--text-column", default=None, metavar="NAME", help="text column of a .csv / .jsonl file")
    sg.add_argument("--skip-bad-files", action="store_true", help="skip unreadable files of a folder (listed)")
    sg.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    ap = sub.add_parser("apply-labels", help="turn a filled-in suggest-labels CSV into data transfer --data reads")
    ap.add_argument("csv", help="the CSV suggest-labels wrote, with its label column filled in")
    ap.add_argument("--out", required=True,
                    help="where to write: a folder (images, .wav), or a .csv (text, tables) / .npz (arrays) file")
    ap.add_argument("--data", default=None,
                    help="the data the CSV was suggested from (needed when its inputs are row indices)")
    ap.add_argument("--text-column", default=None, metavar="NAME", help="text column of the original file")
    ap.add_argument("--overwrite", action="store_true", help="replace an --out file if it exists (a folder never is)")


def check_out(out: Path, overwrite: bool, suffixes: tuple[str, ...] = (".csv",)) -> None:
    """A one-line error for an ``--out`` with another suffix, in a missing folder, or there without ``--overwrite``."""
    if suffixes and out.suffix.lower() not in suffixes:
        raise ConfigError(f"--out {out}: must end in {' or '.join(suffixes)}")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: no such folder {out.parent}")
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out}: already exists (pass --overwrite to replace it)")


def load_unlabelled(source: str, data: str, model_kwargs: dict[str, str] | None = None,
                    text_column: str | None = None, skip_bad_files: bool = False) -> tuple[Any, ArrayDataset]:
    """The source model and ``data`` as loaded for it but not yet converted (raw text, paths in ``meta``)."""
    from transferkit.runs import load_source

    model, _ = load_source(source, model_kwargs or None)
    shape = model.spec.input_shape if model.spec.modality == "image" else None
    raw = load_dataset(data, shape=shape, labels_required=False, text_column=text_column,
                       read=ReadOptions(skip_bad_files))
    return model, raw


def source_features(model: Any, raw: ArrayDataset) -> np.ndarray:
    """The frozen ``model``'s features of ``raw`` (prepared for it). Shape ``[N, D]``."""
    import torch

    from transferkit.data import prepare
    from transferkit.engine.features import extract_features
    from transferkit.engine.precision import resolve_placement

    ds = prepare(raw, model.spec)
    x = torch.from_numpy(np.ascontiguousarray(ds.x))
    return extract_features(model, x, resolve_placement(model, "fp32", "off")).numpy()


def input_names(raw: ArrayDataset) -> list[str]:
    """What names each example in the CSV: its file path, its text, or its 0-based row index."""
    files = raw.meta.get("files")
    if isinstance(files, list) and len(files) == len(raw):
        return [str(f) for f in files]
    if raw.modality == "text":
        return [str(t) for t in raw.x]
    return [str(i) for i in range(len(raw))]


def write_suggestions(out: Path, names: list[str], index: np.ndarray, why: list[str]) -> None:
    """The CSV a person fills in: ``input, why, label`` (label empty), one row per pick in pick order."""
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for i, reason in zip(index.tolist(), why, strict=True):
            w.writerow([names[i], reason, ""])
    tmp.replace(out)


def parse_classes(classes: str | None) -> list[str] | None:
    """``--classes a,b,c`` as a list of at least two distinct, non-empty names (a one-line error otherwise)."""
    if classes is None:
        return None
    names = [c.strip() for c in classes.split(",")]
    if len(names) < 2 or not all(names):
        raise ConfigError(f"--classes {classes!r}: give at least two non-empty class names, comma-separated "
                          "(e.g. --classes negative,positive)")
    twice = sorted({n for n in names if [m.casefold() for m in names].count(n.casefold()) > 1})
    if twice:
        raise ConfigError(f"--classes {classes!r}: {', '.join(twice)} given more than once")
    return names


#: Where each built-in data set's loader lives -> the kind of its inputs (a module not listed: unknown).
_BUILTIN_KINDS = {"transferkit.data.builtin": "image", "transferkit.data.audio": "audio",
                  "transferkit.data.text": "text"}


def non_text_data(data: str) -> str | None:
    """What ``--data`` is when it cannot hold text, known from its name alone (nothing is loaded): a built-in
    image or audio data set, a folder (images or ``.wav`` files), an ``.npz`` or an IDX file. ``None`` when it
    may hold text (``.csv`` / ``.jsonl`` / ``.txt``, a text built-in), or is none of those (its loader says why)."""
    from transferkit.data.files import is_idx

    name = data.partition(":")[0]
    if name in DATASETS:
        kind = _BUILTIN_KINDS.get(getattr(DATASETS.get(name), "__module__", ""))
        return f"a built-in {kind} data set" if kind not in (None, "text") else None
    path = Path(data).expanduser()
    if path.is_dir():
        return "a folder (of images or .wav files)"
    if path.is_file() and path.suffix.lower() == ".npz":
        return "an .npz file (arrays)"
    if path.is_file() and is_idx(path):
        return "an IDX file (images)"
    return None


def resolve_method(method: str | None, classes: list[str] | None) -> str:
    """The method to run: ``--method``, else the measured default for with / without ``--classes``."""
    from transferkit.suggest import CLASS_METHODS, DEFAULT_CLASS_METHOD, DEFAULT_METHOD

    if method is None:
        return DEFAULT_CLASS_METHOD if classes else DEFAULT_METHOD
    if classes and method not in CLASS_METHODS:
        raise ConfigError(f"--method {method} does not use --classes; drop --classes, or use one of "
                          f"{', '.join(CLASS_METHODS)}")
    if not classes and method in CLASS_METHODS:
        raise ConfigError(f"--method {method}: needs the class names (--classes NAME,NAME,...)")
    return method


def suggest_labels(args: argparse.Namespace) -> int:
    from transferkit.cli import kv_flags
    from transferkit.suggest import check_budget, prompt_scores, select

    out = Path(args.out).expanduser()
    if args.budget < 1:
        raise ConfigError(f"--budget {args.budget}: must be at least 1")
    classes = parse_classes(args.classes)
    method = resolve_method(args.method, classes)
    if classes and (kind := non_text_data(args.data)):
        raise ConfigError(f"--classes: --data {args.data} is {kind}, not text; class names are prompted only for "
                          "text data through a text source (drop --classes)")
    check_out(out, args.overwrite)
    if args.data.partition(":")[0] not in DATASETS and not Path(args.data).expanduser().exists():
        load_dataset(args.data, labels_required=False)  # its one-line error, before the source loads
    model, raw = load_unlabelled(args.source, args.data, kv_flags(args.model_opt, "--model-opt"),
                                 args.text_column, args.skip_bad_files)
    check_budget(len(raw), args.budget)
    if classes and model.spec.modality != "text":
        raise ConfigError(f"--classes: {args.source} takes {model.spec.modality} inputs; class names are prompted "
                          "only through a text source (drop --classes)")
    if classes and raw.modality != "text":  # e.g. a table without a text column
        raise ConfigError(f"--classes: --data {args.data} holds {raw.modality} data, not text; class names are "
                          "prompted only for text data (drop --classes, or name the text column: --text-column)")
    feats = source_features(model, raw)
    scores = prompt_scores(feats, class_prompts(model, classes)) if classes else None
    sel = select(feats, args.budget, method, args.seed, scores, classes)
    write_suggestions(out, input_names(raw), sel.index, sel.why)
    print(f"wrote {out}: {args.budget} of {len(raw)} examples of {args.data} to label ({method} on "
          f"{args.source} features); fill in the label column, then: {next_step(raw, out)}")
    return 0


def class_prompts(model: Any, classes: list[str]) -> np.ndarray:
    """The prompt-ensembled embeddings of the class names (zero-shot's templates). Shape ``[K, D]``."""
    from transferkit.zeroshot import DEFAULT_TEMPLATES, class_embeddings

    return class_embeddings(model, classes, DEFAULT_TEMPLATES).numpy()


def next_step(raw: ArrayDataset, out: Path) -> str:
    """The command that makes the filled-in CSV training data, for this kind of data."""
    if raw.modality == "text":
        return f"transferkit transfer --data {out} --text-column input ..."
    dest = "labelled/" if isinstance(raw.meta.get("files"), list) else out.with_name("labelled" + (
        ".csv" if raw.modality == "tabular" else ".npz")).name
    extra = f" --data {raw.name}" if input_names(raw)[0] == "0" else ""
    return f"transferkit apply-labels {out}{extra} --out {dest}, then transferkit transfer --data {dest} ..."


def read_labelled(path: Path) -> tuple[list[str], list[str], int]:
    """The ``input`` and ``label`` cells of the rows whose label is filled in, and how many were left empty."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read CSV ({err})") from None
    if not rows or "input" not in rows[0] or "label" not in rows[0]:
        raise DataError(f"{path}: not a suggest-labels CSV (needs the columns input and label, and rows)")
    kept = [r for r in rows if (r.get("label") or "").strip()]
    if not kept:
        raise DataError(f"{path}: no label filled in (the label column is empty in all {len(rows)} rows)")
    return [r["input"] for r in kept], [r["label"].strip() for r in kept], len(rows) - len(kept)


def row_indices(inputs: list[str], n: int, where: Path) -> np.ndarray:
    """The ``input`` cells as 0-based row indices into ``n`` rows (one-line error naming the bad cell)."""
    out = []
    for cell in inputs:
        if not cell.strip().isdigit() or int(cell) >= n:
            raise DataError(f"{where}: input {cell!r} is not a row index of the data (0..{n - 1})")
        out.append(int(cell))
    return np.array(out, dtype=np.int64)


def copy_into_folders(paths: list[str], labels: list[str], out: Path) -> None:
    """Each file copied to ``out/<label>/`` (a class-per-folder data set); names kept, clashes numbered."""
    for p, label in zip(paths, labels, strict=True):
        src = Path(p)
        if not src.is_file():
            raise DataError(f"input {p}: no such file")
        if "/" in label or label in (".", "..") or label.startswith("."):
            raise DataError(f"label {label!r} of {p}: not usable as a folder name")
        dest = out / label / src.name
        n = 1
        while dest.exists():
            dest = out / label / f"{src.stem}-{n}{src.suffix}"
            n += 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def write_table_rows(data: Path, idx: np.ndarray, labels: list[str], out: Path) -> None:
    """The chosen rows of a ``.csv`` / ``.jsonl`` table as a CSV: its columns (but a label column) + ``label``."""
    from transferkit.data.tabular import find_column, read_csv_rows, read_jsonl_rows

    header, rows = read_jsonl_rows(data) if data.suffix.lower() == ".jsonl" else read_csv_rows(data)
    li = find_column(header, "label")
    keep = [i for i in range(len(header)) if i != li]
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([header[i] for i in keep] + ["label"])
        for i, label in zip(idx.tolist(), labels, strict=True):
            w.writerow([rows[i][1][j] for j in keep] + [label])


def apply_labels(args: argparse.Namespace) -> int:
    table, out = Path(args.csv).expanduser(), Path(args.out).expanduser()
    inputs, labels, empty = read_labelled(table)
    if args.data is None and all(c.strip().isdigit() for c in inputs):
        raise ConfigError(f"{table}: its inputs are row indices; pass --data with the data they index")
    raw = None if args.data is None else load_dataset(args.data, labels_required=False, text_column=args.text_column)
    files = isinstance(raw.meta.get("files"), list) if raw is not None else Path(inputs[0]).is_file()
    if files:
        if out.exists():  # never removed: a folder may hold a person's files
            raise ConfigError(f"--out {out}: already exists; name a new folder for the class sub-folders")
        check_out(out, False, ())
        copy_into_folders(inputs, labels, out)
        what = f"folder {out} (one sub-folder per class)"
    elif raw is None or raw.modality == "text":
        check_out(out, args.overwrite)
        with out.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([("text", "label"), *zip(inputs, labels, strict=True)])
        what = f"text CSV {out}"
    elif raw.modality == "tabular" and Path(args.data).suffix.lower() in (".csv", ".jsonl"):
        check_out(out, args.overwrite)
        write_table_rows(Path(args.data).expanduser(), row_indices(inputs, len(raw), table), labels, out)
        what = f"table {out}"
    else:
        check_out(out, args.overwrite, (".npz",))
        idx = row_indices(inputs, len(raw), table)
        arrays: dict[str, Any] = {"x": raw.x[idx], "y": np.array(labels)}
        if raw.modality == "image":
            arrays["x_range"] = np.array([0.0, 1.0])  # loaded images are 0..1
        np.savez_compressed(out, **arrays)
        what = f"arrays {out} (x, y)"
    skipped = f"; {empty} rows with an empty label skipped" if empty else ""
    print(f"wrote {len(labels)} labelled examples ({len(set(labels))} classes) as {what}{skipped}")
    return 0


def run(args: argparse.Namespace) -> int | None:
    if args.command not in COMMANDS:
        return None
    return suggest_labels(args) if args.command == "suggest-labels" else apply_labels(args)


__all__ = ["add_parsers", "run"]
