"""What every transferability score shares: the :class:`Score` record and eager input checks.

A score is a pure function ``(x, labels) -> float`` where ``x`` is either target-data features
``[N, D]`` from a frozen backbone or the source model's class probabilities ``[N, C_s]`` on the
target data. :class:`Score` records which one it needs, so a ranking run can feed each score the
right array from a single forward pass per candidate model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from transferkit.errors import ConfigError, DataError
from transferkit.options import build

Needs = Literal["features", "probs"]


@dataclass
class NoScoreOptions:
    """This score takes no parameters."""


@dataclass(frozen=True)
class Score:
    """A registered transferability score.

    Attributes:
        fn: the pure function ``fn(x, labels, **options) -> float``.
        needs: ``"features"`` (backbone features ``[N, D]``) or ``"probs"`` (source-class
            probabilities ``[N, C_s]``).
        higher_is_better: whether a larger value predicts better transfer.
        paper: the reference, for listings and reports.
        Options: the score's parameters (keyword arguments of ``fn``), a dataclass of
            :func:`~transferkit.options.opt` fields.
    """

    fn: Callable[..., float]
    needs: Needs
    higher_is_better: bool = True
    paper: str = ""
    Options: type = NoScoreOptions

    def __post_init__(self) -> None:
        if self.needs not in ("features", "probs"):
            raise ValueError(f"Score.needs must be 'features' or 'probs', got {self.needs!r}")

    def __call__(self, x: np.ndarray, labels: np.ndarray, options: Any = None, **kwargs: Any) -> float:
        """The score of ``x`` for ``labels`` with ``options`` (an ``Options`` instance or a dict of typed values or
        CLI strings; or keyword arguments): a bad value is a one-line error naming the option."""
        o = build(self.Options, kwargs if options is None else options, "score")
        return float(self.fn(x, labels, **{f.name: getattr(o, f.name) for f in fields(o)}))


def check_labels(labels: Any, n: int | None = None, *, min_classes: int = 2) -> np.ndarray:
    """Integer labels ``[N]`` re-indexed to ``0..C-1`` (classes kept in sorted order).

    Raises:
        DataError: not 1-D, not integers, length differs from ``n``, or fewer than ``min_classes``.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"labels must be 1-D [N], got shape {y.shape}")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"labels must be integers, got dtype {y.dtype}")
    if n is not None and len(y) != n:
        raise DataError(f"{n} input rows but {len(y)} labels")
    classes, inverse = np.unique(y, return_inverse=True)
    if len(classes) < min_classes:
        raise DataError(f"need at least {min_classes} target classes, got {len(classes)} ({classes.tolist()})")
    return inverse.astype(np.int64).reshape(-1)


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.any(axis=1))[0])


def check_features(features: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate features ``[N, D]`` and labels ``[N]``; return float64 features and 0-based labels.

    Raises:
        DataError: wrong rank, fewer than 2 rows, NaN/inf values, or a label problem.
    """
    f = np.asarray(features)
    if f.ndim != 2:
        raise DataError(f"features must be 2-D [N, D], got shape {f.shape}")
    if len(f) < 2 or f.shape[1] < 1:
        raise DataError(f"features need at least 2 rows and 1 column, got shape {f.shape}")
    if not np.issubdtype(f.dtype, np.number) or np.iscomplexobj(f):
        raise DataError(f"features must be real numbers, got dtype {f.dtype}")
    f = f.astype(np.float64, copy=False)
    bad = ~np.isfinite(f)
    if bad.any():
        raise DataError(f"features contain NaN or inf (first in row {_first_row(bad)})")
    return f, check_labels(labels, len(f))


def check_probs(probs: Any, labels: Any, *, atol: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Validate source-class probabilities ``[N, C_s]`` (rows in [0, 1] summing to 1 within ``atol``).

    Rows are renormalised to sum exactly to 1 (low-precision softmax outputs drift slightly).

    Raises:
        DataError: wrong rank, NaN/inf, negative entries, or a row whose sum is off by more than ``atol``.
    """
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] < 1:
        raise DataError(f"source probabilities must be 2-D [N, C_s], got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.number) or np.iscomplexobj(p):
        raise DataError(f"source probabilities must be real numbers, got dtype {p.dtype}")
    p = p.astype(np.float64, copy=False)
    bad = ~np.isfinite(p)
    if bad.any():
        raise DataError(f"source probabilities contain NaN or inf (first in row {_first_row(bad)})")
    if (p < 0).any():
        raise DataError(f"source probabilities must be non-negative (row {_first_row(p < 0)})")
    sums = p.sum(axis=1)
    off = np.abs(sums - 1.0) > atol
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise DataError(f"source probabilities must sum to 1 per row; row {i} sums to {sums[i]:.4g} "
                        "(pass softmax outputs, not logits)")
    return p / sums[:, None], check_labels(labels, len(p))


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum``, else a :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def one_hot(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """``[N]`` integer labels to a float64 one-hot matrix ``[N, C]``."""
    c = int(labels.max()) + 1 if num_classes is None else num_classes
    out = np.zeros((len(labels), c))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def pca_reduce(x: np.ndarray, dims: int) -> np.ndarray:
    """Project centred ``x`` on its top ``dims`` principal axes (only centre it when ``D <= dims``).

    Exact SVD, so the result is deterministic; each axis is signed so that its largest-magnitude
    loading is positive (the result does not depend on the SVD routine's sign choice, nor on the
    order of the rows).

    Shape:
        - x: ``[N, D]``
        - returns: ``[N, min(D, dims, N)]``
    """
    xc = x - x.mean(axis=0)
    if x.shape[1] <= dims:
        return xc
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    vt = vt[:dims]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    return xc @ (vt * signs[:, None]).T
