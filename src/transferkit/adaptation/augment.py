"""Source-batch augmentation for glyph-like images (digits, characters): shape and stroke style.

Printed fonts vs handwriting, or crisp vs blurry scans, differ mostly in *stroke style*: slant,
size, thickness, sharpness. Training on randomly re-styled source batches makes the classifier
less sensitive to that shift before any alignment loss sees the target (a standard ingredient of
the digit UDA recipes, e.g. French et al., ICLR 2018, sec. 3.4). Handwriting also differs from
print by the *wobble* of the stroke, which no affine map produces: an elastic distortion (a
smooth random displacement field; Simard et al., ICDAR 2003, sec. 2) models it. The parameters
are fixed a priori (Simard's alpha 34 px and sigma 4 px on 28x28 digits), not tuned per domain
pair; target inputs are only augmented for consistency losses.

Every op is a pure function of a batch and the global torch RNG (which the training loop seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from transferkit.data.augment import affine_matrices as shared_affine


@dataclass(frozen=True)
class GlyphAugment:
    """Ranges of the random re-styling; one draw per example.

    ``rotate`` degrees, ``scale`` relative size (+-), ``shear`` (tan of the angle), ``shift``
    fraction of the image side, ``p_thick`` / ``p_thin`` probabilities of a 3x3 dilation / erosion
    of the strokes, ``p_blur`` probability of a Gaussian blur with sigma in ``blur``, ``p_lowres``
    probability of a round trip through a coarser grid of side in ``lowres`` (scan resolution),
    ``p_elastic`` probability of an elastic distortion of strength ``elastic_alpha`` (pixels per
    unit of the smoothed field) and smoothness ``elastic_sigma`` (pixels); see :func:`elastic_field`.
    """

    rotate: float = 15.0
    scale: float = 0.15
    shear: float = 0.25
    shift: float = 0.08
    p_thick: float = 0.25
    p_thin: float = 0.15
    p_blur: float = 0.3
    blur: tuple[float, float] = (0.5, 1.2)
    p_lowres: float = 0.2
    lowres: tuple[int, int] = (8, 16)
    p_elastic: float = 0.5
    elastic_alpha: float = 34.0
    elastic_sigma: float = 4.0


def affine_matrices(n: int, aug: GlyphAugment, device: torch.device | None = None) -> torch.Tensor:
    """Random 2x3 affine matrices (rotation, anisotropic-free scale, x-shear, shift) in the
    normalised ``[-1, 1]`` coordinates of :func:`torch.nn.functional.affine_grid`.

    ``A = R(theta) @ [[s, sh], [0, s]]``, translation ``2 * shift * U(-1, 1)``
    (:func:`transferkit.data.augment.affine_matrices`), drawn from the global torch RNG.

    Shape: -> ``[n, 2, 3]``.
    """
    u = torch.rand(n, 5, device=device) * 2 - 1
    return shared_affine(u[:, 0] * math.radians(aug.rotate), 1 + u[:, 1] * aug.scale, u[:, 2] * aug.shear,
                         2 * aug.shift * u[:, 3:5])


def elastic_field(n: int, h: int, w: int, alpha: float, sigma: float, device: torch.device | None = None
                  ) -> torch.Tensor:
    """Random smooth displacement fields (Simard et al., ICDAR 2003, sec. 2), in the normalised
    ``[-1, 1]`` coordinates of :func:`torch.nn.functional.grid_sample`.

    ``d = alpha * G_sigma * U(-1, 1)`` per pixel and axis (``G_sigma`` a Gaussian blur of ``sigma``
    pixels, radius ``ceil(2 sigma)``), in pixels; then ``x`` scaled by ``2 / w`` and ``y`` by ``2 / h``.

    Shape: -> ``[n, h, w, 2]`` (last axis: x, y offsets, as ``grid_sample`` grids).
    """
    u = torch.rand(n * 2, 1, h, w, device=device) * 2 - 1
    d = blur(u, torch.full((n * 2,), float(sigma), device=device), radius=max(1, math.ceil(2 * sigma)))
    d = (alpha * d).view(n, 2, h, w).permute(0, 2, 3, 1)
    return d * torch.tensor([2.0 / w, 2.0 / h], device=device)


def gaussian_kernel1d(sigma: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Normalised 1-D Gaussian kernels, one per sigma. Shape: ``[n]`` -> ``[n, 2 * radius + 1]``."""
    r = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    k = torch.exp(-(r[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    return k / k.sum(dim=1, keepdim=True)


def blur(x: torch.Tensor, sigma: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Separable Gaussian blur with a per-example ``sigma`` (replicate padding).

    Shape: ``x [N, C, H, W]``, ``sigma [N]`` -> ``[N, C, H, W]``.
    """
    n, c, h, w = x.shape
    k = gaussian_kernel1d(sigma.to(x.dtype), radius).repeat_interleave(c, dim=0)  # [N*C, K]
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def stroke_width(x: torch.Tensor, mode: torch.Tensor) -> torch.Tensor:
    """Per example: ``mode`` 1 = thicker strokes (3x3 grey dilation), -1 = thinner (erosion), 0 = as is.

    Assumes ink brighter than the background (as the built-in digit data sets are).

    Shape: ``x [N, C, H, W]``, ``mode [N]`` -> ``[N, C, H, W]``.
    """
    dil = F.max_pool2d(x, 3, stride=1, padding=1)
    ero = -F.max_pool2d(-x, 3, stride=1, padding=1)
    m = mode.view(-1, 1, 1, 1).to(x.dtype)
    return torch.where(m > 0, dil, torch.where(m < 0, ero, x))


def low_resolution(x: torch.Tensor, sides: torch.Tensor) -> torch.Tensor:
    """Per example: area-downsample to ``side x side`` and bilinearly upsample back (0 = as is).

    Shape: ``x [N, C, H, W]``, ``sides [N]`` (ints) -> ``[N, C, H, W]``.
    """
    out = x.clone()
    h, w = x.shape[-2:]
    for side in sides.unique().tolist():
        if side <= 0:
            continue
        idx = (sides == side).nonzero().flatten()
        small = F.interpolate(x[idx], size=(int(side), int(side)), mode="area")
        out[idx] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out


def augment_glyphs(x: torch.Tensor, aug: GlyphAugment | None = None) -> torch.Tensor:
    """Randomly re-style a batch of glyph images: stroke width, affine warp with an elastic
    distortion (one resampling), blur, then resolution.

    Uses the global torch RNG (seeded by the training loop). Values stay in the input's range.

    Shape: ``[N, C, H, W]`` -> ``[N, C, H, W]``.
    """
    aug = aug or GlyphAugment()
    n = x.shape[0]
    dt = x.dtype
    xf = x.float()
    r = torch.rand(n, device=x.device)
    mode = torch.where(r < aug.p_thick, 1, torch.where(r < aug.p_thick + aug.p_thin, -1, 0))
    xf = stroke_width(xf, mode)
    grid = F.affine_grid(affine_matrices(n, aug, x.device), list(xf.shape), align_corners=False)
    if aug.p_elastic > 0:
        h, w = xf.shape[-2:]
        use_e = (torch.rand(n, device=x.device) < aug.p_elastic).view(-1, 1, 1, 1).to(grid.dtype)
        grid = grid + use_e * elastic_field(n, h, w, aug.elastic_alpha, aug.elastic_sigma, x.device)
    xf = F.grid_sample(xf, grid, mode="bilinear", padding_mode="border", align_corners=False)
    lo, hi = aug.blur
    sig = lo + (hi - lo) * torch.rand(n, device=x.device)
    blurred = blur(xf, sig)
    use = (torch.rand(n, device=x.device) < aug.p_blur).view(-1, 1, 1, 1)
    xf = torch.where(use, blurred, xf)
    if aug.p_lowres > 0:
        lo_s, hi_s = aug.lowres
        sides = torch.randint(lo_s, hi_s + 1, (n,), device=x.device)
        sides = torch.where(torch.rand(n, device=x.device) < aug.p_lowres, sides, torch.zeros_like(sides))
        xf = low_resolution(xf, sides)
    return xf.to(dt).contiguous(memory_format=torch.channels_last) if x.is_contiguous(
        memory_format=torch.channels_last) and not x.is_contiguous() else xf.to(dt)
