"""Image files: which suffixes are read, decoding under a size cap, and class folders of images.

Every format Pillow decodes is read (PNG, JPEG, BMP, GIF, WebP, TIFF, ...; see
:func:`image_suffixes`); other files in a data folder are listed in one note. Decoding is
bounded: an image over :func:`max_image_pixels` pixels is refused with a one-line error (set
``$TRANSFERKIT_MAX_IMAGE_PIXELS`` to change the limit), a JPEG is decoded at a reduced scale when
it is larger than the size wanted (Pillow's draft mode), and any image is shrunk by whole-number
box averaging while still 8-bit before it becomes float32, so a large image never exists as floats
at full size.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from transferkit.data.base import SKIP_HINT, report_skipped
from transferkit.data.storage import allocate
from transferkit.data.transforms import check_shape, resize_plane, to_channels
from transferkit.errors import ConfigError, DataError, one_line_reason

T = TypeVar("T")

#: Pixels (width x height, after JPEG draft scaling) above which an image is refused.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
#: Pillow formats that open but do not decode pixels here (stubs, Ghostscript, MPEG headers, IPTC).
_NOT_DECODED = frozenset({"BUFR", "GRIB", "HDF5", "WMF", "EPS", "MPEG", "IPTC"})
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def max_image_pixels() -> int:
    """The pixel limit: ``$TRANSFERKIT_MAX_IMAGE_PIXELS`` or :data:`DEFAULT_MAX_IMAGE_PIXELS`."""
    env = os.environ.get("TRANSFERKIT_MAX_IMAGE_PIXELS")
    if not env:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(env.replace("_", ""))
    except ValueError:
        raise ConfigError(f"TRANSFERKIT_MAX_IMAGE_PIXELS={env!r} is not a whole number of pixels") from None
    if value < 1:
        raise ConfigError(f"TRANSFERKIT_MAX_IMAGE_PIXELS={env!r} must be at least 1")
    return value


@functools.cache
def image_suffixes() -> tuple[str, ...]:
    """Lower-case file suffixes of the image formats Pillow decodes (``.png``, ``.webp``, ``.tif`` ...)."""
    ext = Image.registered_extensions()
    return tuple(sorted(e for e, fmt in ext.items() if fmt in Image.OPEN and fmt not in _NOT_DECODED))


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in image_suffixes()


def _check_pixels(path: Path, img: Image.Image) -> None:
    limit = max_image_pixels()
    if img.width * img.height > limit:
        raise DataError(f"{path}: image is {img.width}x{img.height} ({img.width * img.height:,} pixels), over the "
                        f"{limit:,}-pixel limit (downscale it, or raise TRANSFERKIT_MAX_IMAGE_PIXELS)")


def _palette_is_grey(img: Image.Image) -> bool:
    """Whether every colour a loaded palette image uses is a grey."""
    palette = img.getpalette() or []
    used = img.getcolors(256) or []
    rgb = [palette[3 * i : 3 * i + 3] for _, i in used if isinstance(i, int)]  # a palette image's colours are indices
    return all(len(c) == 3 and c[0] == c[1] == c[2] for c in rgb)


def _open(path: Path, size: tuple[int, int] | None) -> Image.Image:
    """Open and decode ``path`` (a JPEG at the smallest scale still >= ``size``), refusing it past the limit."""
    with warnings.catch_warnings():  # our own limit, below Pillow's, replaces its warning
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(path)
    try:
        if size is not None and img.format == "JPEG":
            img.draft(None, (size[1], size[0]))
        _check_pixels(path, img)
        img.load()
    except BaseException:
        img.close()
        raise
    return img


def _shrink(img: Image.Image, grey: bool, size: tuple[int, int] | None) -> Image.Image:
    """``img`` in a mode Pillow can reduce, box-averaged by a whole factor that keeps >= 2x ``size``."""
    if img.mode == "P":
        img = img.convert("L" if grey else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode.startswith("I;16"):
        img = img.convert("I")
    if size is not None:
        factor = min(img.height // size[0], img.width // size[1]) // 2
        if factor >= 2:
            img = img.reduce(factor)
    return img


def _to_float(img: Image.Image, grey: bool) -> np.ndarray:
    """A decoded image as float32 ``[H, W, C]`` in ``[0, 1]``."""
    if img.mode in ("I", "F"):  # 16/32-bit grey: 0..255 or 0..65535 by its maximum; float TIFFs already in 0..1 kept
        raw = np.asarray(img, dtype=np.float32)[..., None]
        if img.mode == "F" and raw.size and raw.min() >= 0 and raw.max() <= 1:
            return raw
        return raw / (65535.0 if raw.max() > 255 else 255.0)
    if grey:
        return np.asarray(img.convert("L"), dtype=np.float32)[..., None] / 255.0
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def decode_image(path: str | Path, size: tuple[int, int] | None = None) -> tuple[np.ndarray, bool]:
    """One image file as float32 ``[C, H, W]`` in ``[0, 1]`` plus whether it is greyscale.

    With ``size = (H, W)`` the image is reduced toward it before it becomes float (JPEG draft
    mode, then whole-factor box averaging down to no less than twice ``size``); the caller resizes
    the rest of the way. Images over :func:`max_image_pixels` pixels raise a one-line DataError.
    """
    p = Path(path)
    try:
        with _open(p, size) as img:
            grey = img.mode in GREY_MODES or (img.mode == "P" and _palette_is_grey(img))
            arr = _to_float(_shrink(img, grey, size), grey)
    except DataError:
        raise
    except _READ_ERRORS as err:
        raise DataError(f"{p}: cannot read image ({one_line_reason(err)})") from None
    return np.clip(arr, 0.0, 1.0).transpose(2, 0, 1), grey


def probe_image(path: str | Path) -> tuple[bool, tuple[int, int]]:
    """Whether an image file is greyscale and its ``(H, W)``, from its header where possible."""
    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                _check_pixels(p, img)
                if img.mode != "P":  # a palette needs its used colours checked: decode it (8-bit)
                    return img.mode in GREY_MODES, (img.height, img.width)
                img.load()
                return _palette_is_grey(img), (img.height, img.width)
    except DataError:
        raise
    except _READ_ERRORS as err:
        raise DataError(f"{p}: cannot read image ({one_line_reason(err)})") from None


def other_files(root: Path, folders: Sequence[Path]) -> list[Path]:
    """Non-hidden files in ``folders`` (and loose in ``root``) that are not images Pillow decodes."""
    out = []
    for folder in dict.fromkeys([root, *folders]):
        out += [f for f in sorted(folder.iterdir())
                if f.is_file() and not f.name.startswith(".") and not is_image_file(f)]
    return out


def note_other_files(root: Path, folders: Sequence[Path]) -> str | None:
    """Log one note listing the files of a data folder that are not read (how many, which, why)."""
    skipped = other_files(root, folders)
    if not skipped:
        return None
    return report_skipped(root, [(f, "") for f in skipped], "file",
                          "that Pillow does not decode as an image (read: .png, .jpg, .bmp, .gif, .webp, .tif, ...)")


def _attempt(fn: Callable[[Path], T], file: Path, bad: list[tuple[Path, str]], skip: bool, hint: bool) -> T | None:
    """``fn(file)``; a DataError is re-raised (with the skip hint) or, when skipping, recorded in ``bad``."""
    try:
        return fn(file)
    except DataError as err:
        if not skip:
            raise DataError(f"{err}; {SKIP_HINT}" if hint else str(err)) from None
        bad.append((file, str(err).removeprefix(f"{file}: ")))
        return None


def _layout(files: Sequence[Path], bad: list[tuple[Path, str]], skip: bool,
            hint: bool) -> tuple[int, tuple[int, int], list[int]]:
    """Channels (1 when every image is grey, else 3), the most common ``(H, W)`` and the files that probe."""
    probes = {i: got for i, f in enumerate(files) if (got := _attempt(probe_image, f, bad, skip, hint)) is not None}
    if not probes:
        return 1, (1, 1), []
    channels = 1 if all(g for g, _ in probes.values()) else 3
    return channels, Counter(s for _, s in probes.values()).most_common(1)[0][0], list(probes)


def read_images(files: Sequence[Path], shape: tuple[int, ...] | None, *, where: Path, skip_bad_files: bool = False,
                hint: bool = True) -> tuple[np.ndarray, list[int]]:
    """Decode ``files`` into float32 ``[N, C, H, W]`` in ``[0, 1]``; returns it and the indices of the files read.

    ``shape = (C, H, W)`` fixes channels and size; without it they come from the files' headers
    (1 channel when all are grey; the most common size). Images are resized bicubically. The
    result is memory-mapped past the data memory budget. An unreadable file raises a one-line
    DataError (ending with the ``--skip-bad-files`` hint when ``hint``) or, with ``skip_bad_files``,
    is left out and listed in one note for the whole folder ``where``.
    """
    bad: list[tuple[Path, str]] = []
    if shape is None:
        channels, size, ok = _layout(files, bad, skip_bad_files, hint)
    else:
        channels, h, w = check_shape(shape)
        size, ok = (h, w), list(range(len(files)))
    x = allocate((max(len(ok), 1), channels, size[0], size[1]))
    kept: list[int] = []
    for i in ok:
        got = _attempt(lambda f: decode_image(f, size), files[i], bad, skip_bad_files, hint)
        if got is None:
            continue
        arr = to_channels(got[0][None], channels, name=str(where))[0]
        for c in range(channels):
            x[len(kept), c] = np.clip(resize_plane(arr[c], size, resample=Image.Resampling.BICUBIC), 0.0, 1.0)
        kept.append(i)
    if bad:
        report_skipped(where, bad, "unreadable file", "(--skip-bad-files)")
    if not kept:
        raise DataError(f"{where}: none of its {len(files)} image files could be read")
    return (x if len(kept) == len(x) else x[: len(kept)]), kept


__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "GREY_MODES", "decode_image", "image_suffixes", "is_image_file",
           "max_image_pixels", "note_other_files", "probe_image", "read_images"]
