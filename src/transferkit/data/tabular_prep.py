"""Preprocessing of tabular rows, fitted on a training split and saved with the model.

:class:`TabularPreprocess` is plain data (JSON in the run's ``model.json``, under ``preprocess``;
never a pickle). ``pretrain`` fits it on the training split only (:func:`fit_splits`); every later
command (evaluate, predict, transfer, rank, adapt) applies the saved one through the ``tabular``
preparer (:func:`prepare_tabular`), so a model always sees its inputs scaled as in training.

Per column, from the training rows:

- numeric: ``(x - mean) / std`` (``std`` 0 counts as 1). Missing cells get the training median;
  when the training rows had missing cells in the column, a 0/1 "was missing" feature follows it.
  Imputation rather than an error: real tables have gaps, refusing them sends the user to another
  tool, and the indicator keeps the fact of missingness for the model (scikit-learn's
  ``SimpleImputer(strategy="median", add_indicator=True)``).
- categorical: one-hot over the training categories (the ``MAX_CATEGORIES`` most frequent), plus
  one "other" feature that is 1 for any category the training rows did not have (or beyond the
  cap), so unseen categories never fail. A missing cell is the category ``(missing)`` when the
  training rows had it, else "other".

Columns are matched by name: a table whose columns differ from the training columns is a
one-line error naming the missing and extra ones.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from transferkit.data.base import ArrayDataset, Splits
from transferkit.data.tabular import columns_text, is_missing, number
from transferkit.errors import DataError

if TYPE_CHECKING:
    from transferkit.models.base import ModelSpec

MAX_CATEGORIES = 50
#: ``pretrain``'s default epochs on a table (8 elsewhere): small tables give a few steps per epoch
TABULAR_EPOCHS = 100
MISSING_CATEGORY = "(missing)"


@dataclass
class Column:
    """How one raw column becomes features: ``numeric`` (1 or 2 features) or ``categorical`` (one-hot + other)."""

    name: str
    kind: Literal["numeric", "categorical"]
    mean: float = 0.0
    std: float = 1.0
    fill: float = 0.0
    indicator: bool = False
    categories: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return 1 + int(self.indicator) if self.kind == "numeric" else len(self.categories) + 1

    def feature_names(self) -> list[str]:
        if self.kind == "numeric":
            return [self.name] + ([f"{self.name}=missing"] if self.indicator else [])
        return [f"{self.name}={c}" for c in self.categories] + [f"{self.name}=other"]


def _numbers(values: np.ndarray, column: str, where: str, lines: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """``(float64 values with NaN where missing, missing mask)`` of one raw column."""
    if values.dtype.kind == "f":
        return values.astype(np.float64), np.zeros(len(values), dtype=bool)
    missing = np.array([is_missing(str(v)) for v in values], dtype=bool)
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if not missing[i]:
            got = number(str(v))
            if got is None:
                at = f"line {lines[i]}, " if lines is not None else ""
                raise DataError(f"{where}: {at}column '{column}': '{v}' is not a number (the column is numeric in the "
                                "model's training data)")
            out[i] = got
    return out, missing


def _strings(values: np.ndarray) -> list[str]:
    if values.dtype.kind == "f":
        return [format(float(v), "g") for v in values]
    return [MISSING_CATEGORY if is_missing(str(v)) else str(v) for v in values]


def fit_column(name: str, values: np.ndarray, where: str, kind: str | None = None) -> Column:
    """Fit one column's preprocessing on its training cells (raw strings or floats); ``kind`` is the
    column's kind as the loader typed it from the whole file (else decided from these cells)."""
    if kind is None:
        present = [str(v) for v in values if not is_missing(str(v))] if values.dtype.kind != "f" else []
        numbers = sum(number(v) is not None for v in present)
        kind = "numeric" if values.dtype.kind == "f" or (present and 2 * numbers >= len(present)) else "categorical"
    if kind == "numeric":
        x, missing = _numbers(values, name, where, None)
        seen = x[~missing]
        if len(seen) == 0:
            return Column(name, "numeric", indicator=True)
        std = float(seen.std())
        return Column(name, "numeric", mean=float(seen.mean()), std=std if std > 1e-12 else 1.0,
                      fill=float(np.median(seen)), indicator=bool(missing.any()))
    counts = Counter(_strings(values))
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES]
    return Column(name, "categorical", categories=sorted(c for c, _ in top))


@dataclass
class TabularPreprocess:
    """Column-wise preprocessing of a table (see the module docstring); ``to_json`` / ``from_json`` round-trip."""

    columns: list[Column]
    label_column: str | None = None
    fitted_on: str = ""

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def feature_names(self) -> list[str]:
        return [n for c in self.columns for n in c.feature_names()]

    @classmethod
    def fit(cls, ds: ArrayDataset) -> TabularPreprocess:
        """Fit on every row of ``ds`` (pass the training split only)."""
        names = column_names(ds)
        kinds = ds.meta.get("kinds")
        kinds = kinds if isinstance(kinds, list) and len(kinds) == len(names) else [None] * len(names)
        cols = [fit_column(n, ds.x[:, j], ds.name, k) for j, (n, k) in enumerate(zip(names, kinds, strict=True))]
        label = ds.meta.get("label_column")
        return cls(cols, str(label) if label is not None else None, f"{ds.name} ({len(ds)} rows)")

    def transform(self, ds: ArrayDataset) -> np.ndarray:
        """float32 ``[N, width]`` features of ``ds``'s rows; its columns must be the fitted ones."""
        index = self.check_columns(ds)
        lines = ds.meta.get("lines")
        lines = lines if isinstance(lines, list) and len(lines) == len(ds) else None
        out = np.empty((len(ds), self.width), dtype=np.float32)
        at = 0
        for col in self.columns:
            values = ds.x[:, index[col.name]]
            if col.kind == "numeric":
                x, missing = _numbers(values, col.name, ds.name, lines)
                out[:, at] = (np.where(missing, col.fill, x) - col.mean) / col.std
                if col.indicator:
                    out[:, at + 1] = missing
            else:
                pos = {c: i for i, c in enumerate(col.categories)}
                hot = np.array([pos.get(s, len(col.categories)) for s in _strings(values)])
                out[:, at : at + col.width] = np.eye(col.width, dtype=np.float32)[hot]
            at += col.width
        return out

    def check_columns(self, ds: ArrayDataset) -> dict[str, int]:
        """Column name -> index in ``ds``; a one-line error when the columns differ from the fitted ones."""
        have = column_names(ds)
        want = [c.name for c in self.columns]
        missing = [n for n in want if n not in have]
        extra = [n for n in have if n not in want]
        if missing or extra:
            parts = ([f"missing {columns_text(missing)}"] if missing else []) + (
                [f"extra {columns_text(extra)}"] if extra else [])
            raise DataError(f"{ds.name}: its columns differ from the {len(want)} the model was trained on: "
                            + "; ".join(parts))
        return {n: have.index(n) for n in want}

    def to_json(self) -> dict[str, Any]:
        return {"kind": "tabular", **asdict(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TabularPreprocess:
        cols = [Column(**c) for c in d["columns"]]
        return cls(cols, d.get("label_column"), str(d.get("fitted_on", "")))


def column_names(ds: ArrayDataset) -> list[str]:
    """The feature column names of a raw table (``x0``, ``x1`` ... for arrays without names)."""
    names = ds.meta.get("columns")
    if isinstance(names, list) and len(names) == ds.x.shape[1]:
        return [str(n) for n in names]
    return [f"x{j}" for j in range(ds.x.shape[1])]


def apply(prep: TabularPreprocess, ds: ArrayDataset) -> ArrayDataset:
    """``ds``'s rows as model inputs (``meta["preprocessed"]`` marks the result)."""
    x = prep.transform(ds)
    return replace(ds, x=x, meta={"preprocessed": True, "columns": prep.feature_names()})


def fit_splits(sp: Splits) -> tuple[Splits, dict[str, Any] | None]:
    """Tabular splits preprocessed by a :class:`TabularPreprocess` fitted on ``sp.train`` only, and
    its JSON; any other modality unchanged, with ``None``."""
    if sp.train.modality != "tabular" or sp.train.meta.get("preprocessed"):
        return sp, None
    prep = TabularPreprocess.fit(sp.train)
    return Splits(apply(prep, sp.train), apply(prep, sp.val), apply(prep, sp.test)), prep.to_json()


def prepare_tabular(ds: ArrayDataset, spec: ModelSpec) -> ArrayDataset:
    """Raw table rows -> the inputs of the tabular model ``spec`` (its saved preprocessing applied)."""
    if ds.modality != "tabular":
        raise DataError(f"{ds.name}: {ds.modality} data cannot feed the tabular model {spec.name} "
                        f"(it takes a table of {columns_text(_spec_columns(spec))})")
    if not ds.meta.get("preprocessed") and spec.preprocess:
        ds = apply(TabularPreprocess.from_json(spec.preprocess), ds)
    if ds.x.dtype == object:
        raise DataError(f"{ds.name}: non-numeric cells, but the model {spec.name} has no saved preprocessing for them")
    width = int(np.prod(spec.input_shape))
    if ds.x.shape[1:] != (width,):
        raise DataError(f"{ds.name}: {int(np.prod(ds.x.shape[1:]))} features, the model {spec.name} takes {width}")
    return ds


def _spec_columns(spec: ModelSpec) -> list[str]:
    if spec.preprocess:
        return [str(c["name"]) for c in spec.preprocess["columns"]]
    return [f"{int(np.prod(spec.input_shape))} numbers"]


__all__ = ["MAX_CATEGORIES", "TABULAR_EPOCHS", "Column", "TabularPreprocess", "apply", "column_names", "fit_splits",
           "prepare_tabular"]
