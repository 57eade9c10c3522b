"""Image corruptions at severities 1-5 (MNIST-C / CIFAR-10-C style), pure NumPy and seeded.

Each function takes float32 images ``[N, C, H, W]`` with values in ``[0, 1]`` (the layout every
transferkit image loader returns), a severity ``1..5`` and a ``numpy.random.Generator``; it returns
a new float32 array of the same shape, clipped to ``[0, 1]``. The kinds follow Hendrycks &
Dietterich (ICLR 2019, "Benchmarking Neural Network Robustness to Common Corruptions") and Mu &
Gilmer (2019, "MNIST-C"): additive Gaussian noise, Gaussian blur, rotation, contrast reduction and
elastic deformation (Simard et al. 2003). Severity parameters were set so that a small CNN
trained on MNIST loses accuracy steadily from 1 to 5 (``benchmarks/tta.py`` measures it).

:func:`corruption_stream` concatenates corrupted copies of a labelled set, one segment per
``(severity, kind)`` in order -- the continual test-time adaptation stream of
``benchmarks/tta.py``.

Shape:
    - input: ``[N, C, H, W]`` float32 in ``[0, 1]``
    - output: the same
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from transferkit.errors import ConfigError

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

_NOISE_STD = (0.15, 0.25, 0.35, 0.45, 0.6)
_BLUR_SIGMA = (0.8, 1.1, 1.4, 1.7, 2.0)
_ROTATE_DEG = (15.0, 25.0, 35.0, 45.0, 55.0)
_CONTRAST = (0.5, 0.35, 0.25, 0.15, 0.1)
_ELASTIC = ((2.5, 3.0), (3.0, 3.0), (3.5, 3.0), (4.0, 3.0), (4.5, 3.0))  # (alpha px, smoothing sigma px)


def _check(x: np.ndarray, severity: int) -> np.ndarray:
    if not 1 <= severity <= 5:
        raise ConfigError(f"corruption severity {severity}: must be 1..5")
    if x.ndim != 4:
        raise ConfigError(f"corruptions take images [N, C, H, W], got shape {x.shape}")
    return np.asarray(x, dtype=np.float32)


def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``clip(x + n)``, ``n ~ N(0, s^2)`` i.i.d. per pixel; ``s`` = 0.15 .. 0.6 by severity."""
    x = _check(x, severity)
    return np.clip(x + rng.normal(0.0, _NOISE_STD[severity - 1], x.shape), 0, 1).astype(np.float32)


def _gauss_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian filter over the last two axes, edges reflected."""
    k = _gauss_kernel(sigma)
    r = len(k) // 2
    for axis in (-2, -1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (r, r)
        xp = np.pad(x, pad, mode="reflect")
        n = x.shape[axis]
        x = sum(k[i] * np.take(xp, np.arange(i, i + n), axis=axis) for i in range(len(k)))
    return np.asarray(x, dtype=np.float32)


def gaussian_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur with ``sigma`` = 0.8 .. 2.0 pixels by severity (``rng`` unused: deterministic)."""
    del rng
    return np.clip(_smooth(_check(x, severity), _BLUR_SIGMA[severity - 1]), 0, 1)


def _sample(x: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear sampling of ``x [N, C, H, W]`` at per-image coordinates ``ys, xs [N, H, W]``; 0 outside."""
    n, _, h, w = x.shape
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    fy, fx = (ys - y0)[:, None], (xs - x0)[:, None]
    out = np.zeros_like(x)
    idx = np.arange(n)[:, None, None]
    for dy, dx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        inside = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[:, None]
        vals = x[idx, :, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]  # [N, H, W, C]
        out += np.where(inside, np.moveaxis(vals, -1, 1), 0.0) * wgt
    return out.astype(np.float32)


def rotation(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Rotate each image about its centre by +-(0.8 .. 1.2) x 15 .. 55 degrees (random sign and jitter)."""
    x = _check(x, severity)
    n, _, h, w = x.shape
    deg = _ROTATE_DEG[severity - 1] * rng.uniform(0.8, 1.2, n) * rng.choice([-1.0, 1.0], n)
    t = np.deg2rad(deg)[:, None, None]
    gy, gx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    ys = np.cos(t) * gy - np.sin(t) * gx + (h - 1) / 2  # inverse map: output pixel -> source pixel
    xs = np.sin(t) * gy + np.cos(t) * gx + (w - 1) / 2
    return np.clip(_sample(x, ys, xs), 0, 1)


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``(x - m) * c + m`` with ``m`` the image's mean and ``c`` = 0.5 .. 0.1 by severity."""
    del rng
    x = _check(x, severity)
    m = x.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip((x - m) * _CONTRAST[severity - 1] + m, 0, 1).astype(np.float32)


def elastic(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Elastic deformation (Simard et al. 2003): a displacement field drawn uniform in [-1, 1] per
    pixel, smoothed by a Gaussian (sigma 3 px) and scaled to a peak of ``alpha`` = 2.5 .. 4.5 px."""
    x = _check(x, severity)
    n, _, h, w = x.shape
    alpha, sigma = _ELASTIC[severity - 1]
    field = _smooth(rng.uniform(-1, 1, (2, n, h, w)).astype(np.float32), sigma)
    field *= alpha / np.maximum(np.abs(field).max(axis=(2, 3), keepdims=True), 1e-6)
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    return np.clip(_sample(x, gy + field[0], gx + field[1]), 0, 1)


#: The corruption kinds by name, in the stream's order.
CORRUPTIONS: dict[str, Corruption] = {
    "noise": gaussian_noise,
    "blur": gaussian_blur,
    "rotation": rotation,
    "contrast": contrast,
    "elastic": elastic,
}


def corrupt(x: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """``x`` corrupted by the named kind (a key of :data:`CORRUPTIONS`) at ``severity``, seeded."""
    if kind not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption '{kind}'; known: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[kind](x, severity, np.random.default_rng(seed))


@dataclass(frozen=True)
class Segment:
    """One part of a corruption stream: rows ``start:stop`` are ``kind`` at ``severity``."""

    kind: str
    severity: int
    start: int
    stop: int


def corruption_stream(x: np.ndarray, y: np.ndarray, kinds: Sequence[str], severities: Sequence[int], *,
                      per_segment: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[Segment]]:
    """Corrupted copies of ``(x, y)`` in sequence: for each severity, for each kind, ``per_segment``
    images drawn at random (seeded, without replacement within a segment), corrupted.

    Returns the stream's images ``[S * K * per_segment, C, H, W]``, their labels, and the segments.
    """
    if not 1 <= per_segment <= len(x):
        raise ConfigError(f"per_segment {per_segment}: must be 1..{len(x)} (the images available)")
    rng = np.random.default_rng(seed)
    xs, ys, segs, at = [], [], [], 0
    for s in severities:
        for k in kinds:
            idx = rng.choice(len(x), per_segment, replace=False)
            xs.append(corrupt(x[idx], k, s, int(rng.integers(2**31))))
            ys.append(y[idx])
            segs.append(Segment(k, int(s), at, at + per_segment))
            at += per_segment
    return np.concatenate(xs), np.concatenate(ys), segs
