"""The in-memory dataset every loader returns, how user files are read, seeded splits and k-shot sampling."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.storage import all_finite, take_rows
from transferkit.errors import ConfigError, DataError

log = logging.getLogger("transferkit")

#: The hint that ends the error of an unreadable file inside a data folder.
SKIP_HINT = "pass --skip-bad-files to skip unreadable files and list them"


@dataclass(frozen=True)
class ReadOptions:
    """How user data files are read (one value passed down from a command to the loaders).

    Attributes:
        skip_bad_files: in a folder of images or ``.wav`` files, skip the files that cannot be
            read (listed on stderr: how many, and the first few) instead of stopping at the first.
        input_range: ``(low, high)`` of the raw values a run was trained on, when they were read
            from an ``.npz``/IDX whose range was declared or detected (see
            :func:`~transferkit.data.transforms.resolve_range`): an ``.npz`` read later for the same
            run is scaled by it, so training, evaluation and prediction agree.
    """

    skip_bad_files: bool = False
    input_range: tuple[float, float] | None = None

    @classmethod
    def for_run(cls, config: Mapping[str, Any], skip_bad_files: bool = False) -> ReadOptions:
        """How to read data for a saved run: in the input range its ``config.json`` recorded, if any."""
        rng = config.get("input_range")
        return cls(skip_bad_files, (float(rng[0]), float(rng[1])) if rng else None)


def recorded_range(ds: ArrayDataset) -> list[float] | None:
    """The input range a run trained on ``ds`` must record (``config.json: input_range``): one that was
    declared by the file or detected from its values, else ``None`` (self-evident: uint8, 0..1, decoded images)."""
    rng = ds.meta.get("input_range")
    if ds.meta.get("input_range_how") in ("declared", "detected", "run") and isinstance(rng, (list, tuple)):
        return [float(rng[0]), float(rng[1])]
    return None


def report_skipped(where: str | Path, skipped: Sequence[tuple[Path, str]], noun: str, why: str, *,
                   show: int = 3) -> str:
    """Log (warning, on stderr from the CLI) and return one line listing the files skipped in ``where``:
    ``skipped N <noun>(s) <why>: name (reason); ...``.

    ``skipped`` holds ``(file, reason)``; the first ``show`` are named with their reason.
    """
    root = Path(where)
    def name(f: Path) -> str:
        return str(f.relative_to(root)) if f.is_relative_to(root) else str(f)

    shown = "; ".join(f"{name(f)} ({r})" if r else name(f) for f, r in skipped[:show])
    more = f"; ... and {len(skipped) - show} more" if len(skipped) > show else ""
    n = len(skipped)
    line = f"note: {root}: skipped {n} {noun}{'' if n == 1 else 's'} {why}: {shown}{more}"
    log.warning("%s", line)
    return line


@dataclass
class ArrayDataset:
    """Inputs as one array plus integer labels.

    Attributes:
        x: inputs. Images are float32 ``[N, C, H, W]`` with values in ``[0, 1]``; tabular rows
            float32 ``[N, D]``; raw text a string array ``[N]`` (a text model's preparer turns it
            into int64 token ids); audio float32 waveforms ``[N, T]``.
        y: int64 labels ``[N]`` in ``0..len(class_names)-1``, or ``None`` when unlabelled.
        class_names: the name of each class index.
        name: where the data came from (a built-in name or a path), for messages and run records.
        modality: ``"image"``, ``"tabular"``, ``"text"`` or ``"audio"``.
    """

    x: np.ndarray
    y: np.ndarray | None
    class_names: list[str]
    name: str
    modality: str = "image"
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.ndim < 2 and self.modality != "text":
            raise DataError(f"{self.name}: inputs must have a sample axis, got shape {self.x.shape}")
        if len(self.x) == 0:
            raise DataError(f"{self.name}: dataset is empty")
        if self.y is not None:
            if len(self.y) != len(self.x):
                raise DataError(f"{self.name}: {len(self.x)} inputs but {len(self.y)} labels")
            if len(self.y) and (self.y.min() < 0 or self.y.max() >= len(self.class_names)):
                raise DataError(
                    f"{self.name}: label {int(self.y.max())} out of range for "
                    f"{len(self.class_names)} classes"
                )
        if not all_finite(self.x):
            raise DataError(f"{self.name}: inputs contain NaN or inf values")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, idx: np.ndarray, suffix: str = "") -> ArrayDataset:
        y = None if self.y is None else self.y[idx]
        return replace(self, x=take_rows(self.x, idx), y=y, name=self.name + suffix)

    def require_labels(self) -> np.ndarray:
        if self.y is None:
            raise DataError(f"{self.name}: this step needs labels but the data has none")
        return self.y


@dataclass(frozen=True)
class Splits:
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset


def split(ds: ArrayDataset, *, val: float = 0.15, test: float = 0.3, seed: int = 0) -> Splits:
    """Seeded stratified train/val/test split (each class split in the same proportions).

    The same ``(dataset, seed, fractions)`` always gives the same split, so a source run's test
    split can be rebuilt later to measure forgetting.
    """
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ConfigError(f"split fractions val={val}, test={test} must be in (0, 1) and sum below 1")
    y = ds.require_labels()
    require_classes(ds)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in range(ds.num_classes):
        idx = np.flatnonzero(y == c)
        if len(idx) == 0:
            raise DataError(f"{ds.name}: class '{ds.class_names[c]}' has no examples")
        idx = rng.permutation(idx)
        n_test = max(1, round(len(idx) * test)) if len(idx) >= 3 else 0
        n_val = max(1, round(len(idx) * val)) if len(idx) >= 3 else 0
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_val])
        parts[0].append(idx[n_test + n_val :])
    tr, va, te = (np.sort(np.concatenate(p)) for p in parts)
    if len(va) == 0 or len(te) == 0:
        raise DataError(f"{ds.name}: too few examples per class to split (need at least 3)")
    return Splits(ds.subset(tr, ":train"), ds.subset(va, ":val"), ds.subset(te, ":test"))


def require_classes(ds: ArrayDataset) -> None:
    """Refuse labelled data with fewer than two classes: any classifier scores 100% on it."""
    if ds.num_classes < 2:
        only = f"only one class ('{ds.class_names[0]}')" if ds.class_names else "no classes"
        raise DataError(f"{ds.name}: {only}; training and testing a classifier need at least 2 classes "
                        "(one sub-folder or label value per class)")


def kshot(ds: ArrayDataset, k: int, *, seed: int = 0) -> ArrayDataset:
    """Sample ``k`` labelled examples per class (seeded). Raises if a class has fewer than ``k``."""
    return ds.subset(kshot_indices(ds, k, seed=seed), f":{k}shot")


def kshot_rest(ds: ArrayDataset, k: int, *, seed: int = 0) -> ArrayDataset:
    """The examples of ``ds`` that :func:`kshot` with the same ``k`` and ``seed`` does not draw, without
    their labels (the unlabelled remainder of a few-shot draw)."""
    rest = np.setdiff1d(np.arange(len(ds)), kshot_indices(ds, k, seed=seed))
    sub = ds.subset(rest, f":rest{k}shot")
    return replace(sub, y=None)


def kshot_indices(ds: ArrayDataset, k: int, *, seed: int = 0) -> np.ndarray:
    """The sorted indices :func:`kshot` draws."""
    if k < 1:
        raise ConfigError(f"shots must be at least 1, got {k}")
    y = ds.require_labels()
    rng = np.random.default_rng(seed + 7919)
    picked = []
    for c in range(ds.num_classes):
        idx = np.flatnonzero(y == c)
        if len(idx) < k:
            raise ConfigError(
                f"shots={k} is larger than class '{ds.class_names[c]}' of {ds.name} ({len(idx)} examples)"
            )
        picked.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(picked))


def align_classes(ds: ArrayDataset, class_names: list[str]) -> ArrayDataset:
    """Re-index ``ds``'s labels to ``class_names`` (a model's classes), matching by name.

    Raises a :class:`DataError` naming the first class of ``ds`` the model does not know.
    """
    if ds.class_names == class_names:
        return ds
    index = {n: i for i, n in enumerate(class_names)}
    missing = [n for n in ds.class_names if n not in index]
    if missing:
        raise DataError(
            f"{ds.name}: class '{missing[0]}' is not one of the model's {len(class_names)} classes "
            f"({', '.join(class_names[:10])}{'...' if len(class_names) > 10 else ''})"
        )
    y = None
    if ds.y is not None:
        lut = np.array([index[n] for n in ds.class_names], dtype=np.int64)
        y = lut[ds.y]
    return replace(ds, y=y, class_names=list(class_names))
