"""Shape conversions for image datasets: channel count (grey <-> RGB) and spatial size.

All helpers work on NumPy float32 arrays in ``[0, 1]`` laid out ``[N, C, H, W]`` and resize with
Pillow (mode ``"F"``, so no 8-bit rounding; Pillow's filters widen their support when shrinking,
which anti-aliases downscaling).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from PIL import Image

from transferkit.data.base import ArrayDataset
from transferkit.errors import ConfigError, DataError

log = logging.getLogger("transferkit")

#: ITU-R BT.601 luma weights, the ones Pillow uses for ``convert("L")``.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

#: Whole-number image values above 1 with no declared range are read as ``0..c``, ``c`` the first of
#: these that holds their maximum: 0..16 (UCI optdigits / sklearn ``load_digits``), 8-bit, 16-bit.
RANGE_CEILINGS = (16, 255, 65535)

RangeSource = Literal["declared", "dtype", "unit", "run", "detected"]


@dataclass(frozen=True)
class ValueRange:
    """The raw ``low..high`` that maps to ``0..1``, and where it came from.

    ``how``: ``declared`` (the file's ``x_range``), ``dtype`` (uint8 or bool), ``unit`` (fractions
    already in 0..1), ``run`` (the range the run was trained on, see
    :class:`~transferkit.data.base.ReadOptions`) or ``detected`` (from the values, by
    :data:`RANGE_CEILINGS`).
    """

    low: float
    high: float
    how: RangeSource

    @property
    def recorded(self) -> bool:
        """Whether a run trained on such data must store the range to read later files alike."""
        return self.how in ("declared", "detected", "run")


def to_channels(x: np.ndarray, channels: int, *, name: str = "images") -> np.ndarray:
    """Convert ``[N, C, H, W]`` images to ``channels`` (1 or 3) channels.

    Grey to RGB repeats the single channel; RGB to grey takes the BT.601 luminance
    ``0.299 R + 0.587 G + 0.114 B``.

    ``name`` (a path or dataset name) prefixes the error message.

    Shape:
        x: ``[N, C, H, W]`` with ``C`` in (1, 3); returns ``[N, channels, H, W]`` float32.
    """
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return np.repeat(x, 3, axis=1)
    if c == 3 and channels == 1:
        grey: np.ndarray = np.einsum("nchw,c->nhw", x, LUMA)[:, None]
        return grey.astype(np.float32)
    raise DataError(f"{name}: cannot convert {c}-channel images to {channels} channels (use 1 or 3)")


KNOWN = "0..1, 0..16, 0..255, 0..65535"
DECLARE_HINT = "add an array 'x_range' = [low, high] to the .npz to declare the range"


def _declared(declared: np.ndarray, where: str) -> ValueRange:
    v = np.asarray(declared, dtype=np.float64).ravel() if np.asarray(declared).dtype.kind in "iuf" else None
    if v is None or v.size != 2 or not np.isfinite(v).all() or v[1] <= v[0]:
        raise DataError(f"{where}: 'x_range' must be two numbers [low, high] with low < high, got {declared.tolist()}")
    return ValueRange(float(v[0]), float(v[1]), "declared")


def resolve_range(x: np.ndarray, where: str, *, declared: np.ndarray | None = None,
                  run_range: tuple[float, float] | None = None) -> ValueRange:
    """The raw value range of images ``x`` (any shape), to be mapped to ``0..1``.

    In order: the range ``declared`` by the file; uint8 (0..255) and bool (0..1) by their dtype;
    ``run_range`` (the range a run was trained on) when ``x`` holds whole numbers inside it, so a
    few images whose maximum happens to be lower are read as the training data were; fractions
    already in 0..1 (and 0/1 masks); whole numbers as ``0..c`` with ``c`` the first of :data:`RANGE_CEILINGS` at or
    above their maximum (a rule of the file's own values: the same file always scales the same way);
    other non-negative numbers up to 255 as 0..255. Anything else raises a one-line DataError.
    """
    if x.dtype.kind not in "iuf" and x.dtype != np.bool_:
        raise DataError(f"{where}: image values must be numeric, got dtype {x.dtype}")
    if declared is not None:
        return _declared(declared, where)
    if x.dtype == np.uint8:
        return ValueRange(0.0, 255.0, "dtype")
    if x.dtype == np.bool_ or x.size == 0:
        return ValueRange(0.0, 1.0, "dtype")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{where}: image values contain NaN or inf")
    lo, hi = float(x.min()), float(x.max())
    whole = x.dtype.kind in "iu" or bool(np.all(x == np.round(x)))
    if run_range is not None and whole and run_range[0] <= lo and hi <= run_range[1]:
        return ValueRange(float(run_range[0]), float(run_range[1]), "run")
    if lo < 0:
        raise DataError(f"{where}: image values {lo:g}..{hi:g} include negative numbers, so they fit no known range "
                        f"({KNOWN}); {DECLARE_HINT}")
    if hi <= 1.0:
        return ValueRange(0.0, 1.0, "unit")
    ceiling = next((c for c in RANGE_CEILINGS if hi <= c), None) if whole else (255 if hi <= 255 else None)
    if ceiling is None:
        raise DataError(f"{where}: image values {lo:g}..{hi:g} fit no known range ({KNOWN}); {DECLARE_HINT}")
    return ValueRange(0.0, float(ceiling), "detected")


def range_note(vr: ValueRange, x: np.ndarray, where: str, run_range: tuple[float, float] | None = None) -> str | None:
    """One line saying what range was assumed for ``x`` (logged), or ``None`` when it was self-evident."""
    span = f"{vr.low:g}..{vr.high:g}"
    found = f"{float(x.min()):g}..{float(x.max()):g}" if x.size else "none"
    if vr.how == "run":
        line = f"note: {where}: values {found} scaled from {span}, the range the run was trained on"
    elif vr.how == "detected":
        kind = "whole numbers" if x.dtype.kind in "iu" or bool(np.all(x == np.round(x))) else "values"
        line = f"note: {where}: {kind} {found} read as the range {span} (scaled to 0..1); {DECLARE_HINT}"
        if run_range is not None and tuple(run_range) != (vr.low, vr.high):
            line += f"; the run was trained on {run_range[0]:g}..{run_range[1]:g}"
    else:
        return None
    log.info("%s", line)
    return line


def scale_to_unit(x: np.ndarray, vr: ValueRange, where: str) -> np.ndarray:
    """``x`` as float32 mapped from ``vr.low..vr.high`` to ``0..1``; values outside raise a DataError."""
    out = x.astype(np.float32)
    if out.size and not np.isfinite(out).all():
        raise DataError(f"{where}: image values contain NaN or inf")
    out -= np.float32(vr.low)
    out /= np.float32(vr.high - vr.low)
    if out.size and (out.min() < -1e-6 or out.max() > 1.0 + 1e-6):
        raise DataError(f"{where}: image values {float(x.min()):g}..{float(x.max()):g} lie outside the range "
                        f"{vr.low:g}..{vr.high:g} ({vr.how})")
    return np.clip(out, 0.0, 1.0, out=out)


def scale_images(x: np.ndarray, where: str) -> np.ndarray:
    """Images as float32 in ``[0, 1]``, scaled from their detected range (:func:`resolve_range`; noted)."""
    vr = resolve_range(x, where)
    range_note(vr, x, where)
    return scale_to_unit(x, vr, where)


def resize_plane(
    plane: np.ndarray, size: tuple[int, int], *, resample: Image.Resampling = Image.Resampling.BILINEAR
) -> np.ndarray:
    """Resize one 2-D float plane to ``size = (H, W)`` with Pillow; returns float32 ``[H, W]``."""
    h, w = size
    if plane.shape == (h, w):
        return plane.astype(np.float32, copy=False)
    img = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    return np.asarray(img.resize((w, h), resample=resample), dtype=np.float32)


def resize_images(
    x: np.ndarray, size: tuple[int, int], *, resample: Image.Resampling = Image.Resampling.BILINEAR
) -> np.ndarray:
    """Resize ``[N, C, H, W]`` images to ``size = (H, W)``; values are clipped back to ``[0, 1]``."""
    if x.shape[2:] == tuple(size):
        return x
    out = np.empty((x.shape[0], x.shape[1], size[0], size[1]), dtype=np.float32)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[i, c] = resize_plane(x[i, c], size, resample=resample)
    return np.clip(out, 0.0, 1.0, out=out)


def check_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Validate a ``(C, H, W)`` request (C in 1, 3) and return it as plain ints."""
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape) < 1:
        raise ConfigError(f"shape must be (C, H, W) with C in (1, 3) and H, W >= 1, got {tuple(shape)}")
    return int(shape[0]), int(shape[1]), int(shape[2])


def conform(ds: ArrayDataset, shape: tuple[int, ...]) -> ArrayDataset:
    """Return ``ds`` converted to images of ``shape = (C, H, W)``.

    Image data get their channels converted (:func:`to_channels`) and are resized bilinearly
    (:func:`resize_images`). Tabular rows ``[N, D]`` are reshaped only when ``D == C * H * W``;
    any other size raises a :class:`DataError`. A dataset that already has the shape is returned
    unchanged (not copied).
    """
    c, h, w = check_shape(shape)
    if ds.x.shape[1:] == (c, h, w):
        return ds
    if ds.modality == "tabular" or ds.x.ndim == 2:
        d = int(np.prod(ds.x.shape[1:]))
        if d != c * h * w:
            raise DataError(f"{ds.name}: tabular data has {d} features, which cannot be shaped as images {(c, h, w)}")
        x = ds.x.reshape(len(ds.x), c, h, w).astype(np.float32, copy=False)
        return replace(ds, x=x, modality="image", meta={**ds.meta, "reshaped_from": ds.x.shape[1:]})
    if ds.x.ndim != 4:
        raise DataError(f"{ds.name}: expected images [N, C, H, W], got shape {ds.x.shape}")
    x = resize_images(to_channels(ds.x, c, name=ds.name), (h, w))
    return replace(ds, x=x, meta={**ds.meta, "conformed_from": tuple(ds.x.shape[1:])})
