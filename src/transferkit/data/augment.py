"""Light, label-preserving image augmentation applied on the fly to training batches.

The policy is the standard light one of fastai's ``aug_transforms`` and timm's training
transforms, cut down to what keeps every label: a small random affine map (rotation within
``rotate`` degrees, translation within ``translate`` of the side, scale in ``scale``) for every
image, and for photos also a random resized crop (Szegedy et al., CVPR 2015, sec. 6: a crop of
``crop`` of the area and an aspect ratio in ``ratio``, resized back) and a horizontal flip with
probability 1/2. Glyphs (digits, characters, documents) are never flipped or cropped: a mirrored
"2" is not a "2", and a crop can cut the stroke that tells a "7" from a "1".

Everything is one batched resampling (:func:`torch.nn.functional.grid_sample` on a composed
2x3 matrix per image), torch only, with the random numbers drawn from an explicit
:class:`torch.Generator` on the CPU, so a batch's augmentation is a pure function of the batch
and the generator's state: the training loop saves that state in its checkpoints and a resumed
run draws the same numbers. The affine matrices are shared with the stronger glyph re-styling of
domain adaptation (:mod:`transferkit.adaptation.augment`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from transferkit.errors import ConfigError

ImageKind = Literal["glyph", "photo"]


def affine_matrices(angle: torch.Tensor, scale: torch.Tensor, shear: torch.Tensor, shift: torch.Tensor
                    ) -> torch.Tensor:
    """2x3 affine matrices in the normalised ``[-1, 1]`` coordinates of :func:`F.affine_grid`.

    ``A = R(angle) @ [[s, sh], [0, s]]`` (``angle`` in radians, ``s`` the scale, ``sh`` the tan of an
    x-shear), translation ``shift``. ``affine_grid`` maps output to input coordinates, so ``s > 1``
    samples a larger region (the content shrinks).

    Shape: ``angle, scale, shear [n]``, ``shift [n, 2]`` -> ``[n, 2, 3]``.
    """
    c, si = torch.cos(angle), torch.sin(angle)
    s, sh = scale, shear
    a = torch.stack([torch.stack([c * s, c * sh - si * s], 1), torch.stack([si * s, si * sh + c * s], 1)], 1)
    return torch.cat([a, shift.unsqueeze(2)], dim=2)


def warp(x: torch.Tensor, theta: torch.Tensor, padding: str = "border") -> torch.Tensor:
    """Resample ``x`` through ``theta`` (bilinear; ``padding`` as :func:`F.grid_sample`), computed in
    float32 and returned in ``x``'s dtype and memory format.

    Shape: ``x [N, C, H, W]``, ``theta [N, 2, 3]`` -> ``[N, C, H, W]``.
    """
    xf = x.float()
    grid = F.affine_grid(theta.to(device=x.device, dtype=xf.dtype), list(xf.shape), align_corners=False)
    y = F.grid_sample(xf, grid, mode="bilinear", padding_mode=padding, align_corners=False).to(x.dtype)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = y.contiguous(memory_format=torch.channels_last)
    return y


@dataclass(frozen=True)
class LightAugment:
    """A light label-preserving policy (see the module docstring).

    ``rotate`` degrees (+-), ``translate`` fraction of the side (+-; 0.08 is ~2 px on 28x28),
    ``scale`` range of the relative size; ``crop`` range of the kept area fraction of a random
    resized crop, or None for no crop; ``ratio`` range of its aspect ratio (log-uniform);
    ``flip`` a horizontal flip with probability 1/2.
    """

    rotate: float = 10.0
    translate: float = 0.08
    scale: tuple[float, float] = (0.9, 1.1)
    crop: tuple[float, float] | None = None
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.rotate <= 180 and 0 <= self.translate < 1 and 0 < self.scale[0] <= self.scale[1]):
            raise ConfigError(f"augmentation: rotate={self.rotate}, translate={self.translate}, scale={self.scale} "
                              "out of range")
        if self.crop is not None and not 0 < self.crop[0] <= self.crop[1] <= 1:
            raise ConfigError(f"augmentation: crop={self.crop} must be an area range within (0, 1]")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """:func:`augment_batch` with this policy (the signature of the training loop's ``Phase.augment``)."""
        return augment_batch(x, self, generator)

    @classmethod
    def for_kind(cls, kind: ImageKind) -> LightAugment:
        """The policy for ``kind``: glyphs get the affine part only, photos also crop and flip."""
        return cls(crop=(0.5, 1.0), flip=True) if kind == "photo" else cls()


def image_kind(x: torch.Tensor) -> ImageKind:
    """``photo`` for colour images, ``glyph`` for grey ones (one channel, or channels all equal, as
    grey digits converted for an RGB backbone are): grey images are treated as glyphs, never
    flipped or cropped, since for them a flip may change the label.

    Shape: ``x [N, C, H, W]`` (a sample is enough).
    """
    if x.shape[1] == 1:
        return "glyph"
    sample = x[:64]
    return "glyph" if bool((sample == sample[:, :1]).all()) else "photo"


def light_matrices(n: int, policy: LightAugment, generator: torch.Generator) -> torch.Tensor:
    """Random 2x3 matrices of ``policy`` for ``n`` images, drawn on the CPU from ``generator``.

    ``theta = C @ F @ A``: ``A`` the small affine map (:func:`affine_matrices`, no shear), ``F``
    ``diag(-1, 1)`` for a flipped image, ``C`` the crop ``[[w, 0, cx], [0, h, cy]]`` with ``w h = area``,
    ``w / h = ratio`` (capped at the full side), its centre uniform where the crop fits.

    Shape: -> ``[n, 2, 3]`` (float32, CPU).
    """
    u = torch.rand(n, 9, generator=generator)
    lo, hi = policy.scale
    theta = affine_matrices((2 * u[:, 0] - 1) * math.radians(policy.rotate), lo + (hi - lo) * u[:, 1],
                            torch.zeros(n), (2 * u[:, 2:4] - 1) * 2 * policy.translate)
    full = torch.cat([theta, torch.tensor([[[0.0, 0.0, 1.0]]]).expand(n, 1, 3)], dim=1)
    if policy.flip:
        sign = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
        full = torch.diag_embed(torch.stack([sign, torch.ones(n), torch.ones(n)], 1)) @ full
    if policy.crop is not None:
        a_lo, a_hi = policy.crop
        area = a_lo + (a_hi - a_lo) * u[:, 5]
        r_lo, r_hi = math.log(policy.ratio[0]), math.log(policy.ratio[1])
        ratio = torch.exp(r_lo + (r_hi - r_lo) * u[:, 6])
        w, h = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
        cx, cy = (2 * u[:, 7] - 1) * (1 - w), (2 * u[:, 8] - 1) * (1 - h)
        crop = torch.zeros(n, 3, 3)
        crop[:, 0, 0], crop[:, 0, 2], crop[:, 1, 1], crop[:, 1, 2], crop[:, 2, 2] = w, cx, h, cy, 1.0
        full = crop @ full
    return full[:, :2]


def augment_batch(x: torch.Tensor, policy: LightAugment, generator: torch.Generator) -> torch.Tensor:
    """``x`` with ``policy`` applied, one random draw per image from ``generator``.

    Values stay within the input's range (bilinear resampling, border padding); dtype, device and
    memory format are kept.

    Shape: ``[N, C, H, W]`` -> ``[N, C, H, W]``.
    """
    if x.ndim != 4:
        raise ValueError(f"augment_batch expects images [N, C, H, W], got shape {tuple(x.shape)}")
    return warp(x, light_matrices(len(x), policy, generator))


__all__ = ["ImageKind", "LightAugment", "affine_matrices", "augment_batch", "image_kind", "light_matrices", "warp"]
