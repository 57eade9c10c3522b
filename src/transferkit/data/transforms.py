"""Shape conversions for image datasets: channel count (grey <-> RGB) and spatial size.

All helpers work on NumPy float32 arrays in ``[0, 1]`` laid out ``[N, C, H, W]`` and resize with
Pillow (mode ``"F"``, so no 8-bit rounding; Pillow's filters widen their support when shrinking,
which anti-aliases downscaling).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image

from transferkit.data.base import ArrayDataset
from transferkit.errors import ConfigError, DataError

#: ITU-R BT.601 luma weights, the ones Pillow uses for ``convert("L")``.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


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


def scale_images(x: np.ndarray, where: str) -> np.ndarray:
    """Images as float32 in ``[0, 1]``: uint8 data, or any data above 1, is divided by 255."""
    if x.dtype.kind not in "iuf" and x.dtype != np.bool_:
        raise DataError(f"{where}: image values must be numeric, got dtype {x.dtype}")
    out = x.astype(np.float32)
    if out.size and not np.isfinite(out).all():
        raise DataError(f"{where}: image values contain NaN or inf")
    if x.dtype == np.uint8 or (out.size and out.max() > 1.0):
        out /= 255.0
    if out.size and (out.min() < 0.0 or out.max() > 1.0):
        raise DataError(
            f"{where}: image values must lie in 0..1 or 0..255, found {float(x.min()):g}..{float(x.max()):g}"
        )
    return out


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
