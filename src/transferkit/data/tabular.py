"""Tabular data: CSV and JSON Lines tables with numeric and categorical columns.

A table loads *raw*: ``x`` is float32 ``[N, D]`` when every cell is a number, else an object array
of the stripped cell strings; ``meta["columns"]`` names the ``D`` feature columns (the label
column is split off into ``y``). The preprocessing that turns raw rows into model inputs is
fitted on a training split and saved with the model (:mod:`transferkit.data.tabular_prep`).

Rules the loader applies to the whole file (a schema, no statistics):

- missing cells are empty or one of ``NA``, ``N/A``, ``NaN``, ``null``, ``None``, ``?`` (any case);
  in JSON Lines also ``null`` and a field a record lacks;
- a column is numeric when at least half of its non-missing cells are numbers; a non-number in
  such a column is a typo and a one-line error names the file, line, column and cell;
- any other column is categorical, unless its values are mostly distinct phrases: that is free
  text, and the error says to read the file as text with ``--text-column``;
- a missing label, a column without a name, or a name used twice is a one-line error.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.base import ArrayDataset
from transferkit.data.jsonl import jsonl_values
from transferkit.data.labels import labels_to_classes
from transferkit.data.transforms import scale_images
from transferkit.errors import DataError, one_line_reason

#: Cells read as missing (compared lower-cased, after stripping spaces).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def number(cell: str) -> float | None:
    """``cell`` as a finite float, or ``None`` when it is not a number."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def columns_text(header: list[str], limit: int = 12) -> str:
    """``a, b, c`` (the first ``limit`` names, then the count) for error messages."""
    shown = ", ".join(header[:limit])
    return shown + (f", ... ({len(header)} columns)" if len(header) > limit else "")


def find_column(header: list[str], wanted: str) -> int | None:
    """Index of the column named ``wanted`` (exact first, then ignoring case), or ``None``."""
    for same in (lambda h: h == wanted, lambda h: h.lower() == wanted.lower()):
        hits = [i for i, h in enumerate(header) if same(h)]
        if hits:
            return hits[0]
    return None


def check_header(path: Path, header: list[str]) -> list[str]:
    """The stripped column names; an unnamed or repeated column is a one-line error."""
    names = [h.strip() for h in header]
    for i, name in enumerate(names):
        if not name:
            raise DataError(f"{path}: column {i + 1} of the header has no name "
                            "(a saved index column? name it or drop it)")
        if name in names[:i]:
            raise DataError(f"{path}: column '{name}' appears twice in the header")
    return names


def read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """``(header, [(line number, stripped cells)])`` of a CSV file; blank lines are skipped."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [(n, [c.strip() for c in r]) for n, r in enumerate(csv.reader(fh), start=1)
                    if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read CSV ({one_line_reason(err)})") from None
    if not rows:
        raise DataError(f"{path}: empty file")
    header = check_header(path, rows[0][1])
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{path}: line {line} has {len(row)} cells, the header has {len(header)}")
    return header, rows[1:]


def read_jsonl_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A JSON Lines table as CSV-like rows: the header is every field in order of first appearance;
    a field a record lacks, or ``null``, is a missing cell."""
    records: list[tuple[int, dict[str, Any]]] = []
    for n, obj in jsonl_values(path):
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {n} is not a JSON object")
        records.append((n, {str(k).strip(): v for k, v in obj.items()}))
    if not records:
        raise DataError(f"{path}: empty file")
    header = check_header(path, list(dict.fromkeys(k for _, r in records for k in r)))
    return header, [(n, ["" if r.get(k) is None else str(r[k]).strip() for k in header]) for n, r in records]


def _label_index(path: Path, header: list[str], label_column: str | None, labels_required: bool) -> int | None:
    wanted = label_column if label_column is not None else "label"
    li = find_column(header, wanted)
    if li is None and labels_required:
        raise DataError(f"{path}: no label column '{wanted}' (columns: {columns_text(header, 60)})")
    return li


def load_table(path: str | Path, *, label_column: str | None = None, labels_required: bool = True,
               allow_images: bool = True) -> ArrayDataset:
    """A CSV (``.csv``) or JSON Lines (``.jsonl``) table as a raw tabular :class:`ArrayDataset`.

    The label column is ``label_column`` or the one named ``label`` (any case); with
    ``labels_required=False`` a table without it loads unlabelled (``y=None``). With
    ``allow_images``, a table of at least 64 non-negative numbers per row whose count is a
    perfect square (8x8, 28x28 ...) and no missing cell loads as grey square images.
    """
    p = Path(path)
    header, rows = read_jsonl_rows(p) if p.suffix.lower() == ".jsonl" else read_csv_rows(p)
    if not rows:
        raise DataError(f"{p}: no data rows after the header")
    li = _label_index(p, header, label_column, labels_required)
    feature_cols = [i for i in range(len(header)) if i != li]
    if not feature_cols:
        raise DataError(f"{p}: no feature columns besides '{header[li or 0]}'")
    names = [header[i] for i in feature_cols]
    cells = np.array([[row[i] for i in feature_cols] for _, row in rows], dtype=object)
    lines = [n for n, _ in rows]
    x, kinds = typed_cells(p, names, cells, lines)
    y: np.ndarray | None = None
    classes: list[str] = []
    if li is not None:
        y, classes = _labels(p, header[li], [row[li] for _, row in rows], lines)
    meta: dict[str, Any] = {"columns": names, "kinds": kinds, "label_column": None if li is None else header[li],
                            "lines": lines}
    side = math.isqrt(x.shape[1])
    if allow_images and x.dtype == np.float32 and side * side == x.shape[1] and side >= 8 and x.min() >= 0:
        images = scale_images(x.reshape(-1, 1, side, side), str(p))
        return ArrayDataset(x=images, y=y, class_names=classes, name=str(p), modality="image")
    return ArrayDataset(x=x, y=y, class_names=classes, name=str(p), modality="tabular", meta=meta)


def _labels(path: Path, column: str, raw: list[str], lines: list[int]) -> tuple[np.ndarray, list[str]]:
    for line, cell in zip(lines, raw, strict=True):
        if is_missing(cell):
            raise DataError(f"{path}: line {line}: the label column '{column}' is empty or missing ('{cell}')")
    labels = np.array(raw)
    try:
        values: np.ndarray = labels.astype(np.int64)
    except ValueError:
        values = labels
    return labels_to_classes(values, str(path))


def typed_cells(path: Path, names: list[str], cells: np.ndarray, lines: list[int]) -> tuple[np.ndarray, list[str]]:
    """float32 ``[N, D]`` when every cell is a number, else the cells (missing ones as ``""``), and
    each column's kind (``numeric`` or ``categorical``).

    Checks each column: a numeric column (at least half its non-missing cells are numbers) must
    hold only numbers; a categorical one must not be free text.
    """
    try:
        x = cells.astype(np.float64)
    except ValueError:
        x = None
    if x is not None and np.isfinite(x).all():
        return x.astype(np.float32), ["numeric"] * len(names)
    out = cells.copy()
    kinds = []
    for j, name in enumerate(names):
        col = [str(c) for c in cells[:, j]]
        present = [(i, c) for i, c in enumerate(col) if not is_missing(c)]
        numeric = [number(c) is not None for _, c in present]
        kinds.append("numeric" if present and 2 * sum(numeric) >= len(present) else "categorical")
        if kinds[-1] == "numeric":
            bad = next(((i, c) for (i, c), ok in zip(present, numeric, strict=True) if not ok), None)
            if bad is not None:
                raise DataError(f"{path}: line {lines[bad[0]]}, column '{name}': '{bad[1]}' is not a number (the "
                                "column's other cells are; leave a missing value empty or write NA)")
        else:
            check_not_text(path, name, [c for _, c in present])
        out[:, j] = ["" if is_missing(c) else c for c in col]
    return out, kinds


def check_not_text(path: Path, name: str, values: list[str]) -> None:
    """A one-line error when a categorical column holds free text (mostly distinct phrases)."""
    if not values:
        return
    distinct = len(set(values)) / len(values)
    words = sum(len(v.split()) for v in values) / len(values)
    if distinct >= 0.5 and words >= 2:
        raise DataError(f"{path}: column '{name}' holds text but the text column must be named 'text' "
                        f"(pass --text-column {name} to read it as text)")


__all__ = ["MISSING", "check_not_text", "columns_text", "find_column", "is_missing", "load_table", "number",
           "read_csv_rows", "read_jsonl_rows", "typed_cells"]
