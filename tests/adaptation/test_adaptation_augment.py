"""Source augmentation, the randomized CDAN map, class-balanced pseudo-labels: math vs NumPy, shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from transferkit.adaptation.augment import (
    GlyphAugment,
    affine_matrices,
    augment_glyphs,
    blur,
    elastic_field,
    gaussian_kernel1d,
    low_resolution,
    stroke_width,
)
from transferkit.adaptation.functional import class_balanced_pseudo_label_loss, randomized_multilinear_map

RNG = np.random.default_rng(1)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_stroke_width_is_grey_dilation_and_erosion() -> None:
    x = RNG.random((3, 1, 9, 9)).astype(np.float32)
    out = stroke_width(torch.from_numpy(x), torch.tensor([1, -1, 0])).numpy()
    assert out[0, 0] == pytest.approx(ndimage.grey_dilation(x[0, 0], size=(3, 3), mode="nearest"))
    assert out[1, 0] == pytest.approx(ndimage.grey_erosion(x[1, 0], size=(3, 3), mode="nearest"))
    assert out[2, 0] == pytest.approx(x[2, 0])


def test_blur_matches_a_numpy_separable_gaussian() -> None:
    x = RNG.random((2, 1, 10, 12))
    sig = np.array([0.7, 1.1])
    out = blur(torch.from_numpy(x), torch.from_numpy(sig)).numpy()
    for i, s in enumerate(sig):
        r = np.arange(-2, 3)
        k = np.exp(-(r**2) / (2 * s * s))
        k /= k.sum()
        ref = ndimage.correlate1d(ndimage.correlate1d(x[i, 0], k, axis=1, mode="nearest"), k, axis=0, mode="nearest")
        assert out[i, 0] == pytest.approx(ref, rel=1e-6, abs=1e-9)
    assert gaussian_kernel1d(torch.tensor([0.5, 2.0])).sum(1).numpy() == pytest.approx([1.0, 1.0])


def test_affine_matrices_rotation_scale_shear() -> None:
    torch.manual_seed(0)
    a = affine_matrices(50, GlyphAugment(rotate=20, scale=0.1, shear=0.0, shift=0.05))
    assert a.shape == (50, 2, 3)
    lin = a[:, :, :2]
    s = torch.linalg.det(lin).sqrt()  # rotation x isotropic scale: det = s^2, columns orthogonal
    assert ((s > 0.9 - 1e-6) & (s < 1.1 + 1e-6)).all()
    assert torch.allclose((lin[:, :, 0] * lin[:, :, 1]).sum(1), torch.zeros(50), atol=1e-6)
    ang = torch.atan2(lin[:, 1, 0], lin[:, 0, 0]).abs()
    assert (ang <= math.radians(20) + 1e-6).all() and (a[:, :, 2].abs() <= 0.1 + 1e-6).all()
    ident = affine_matrices(4, GlyphAugment(rotate=0, scale=0, shear=0, shift=0))
    assert torch.allclose(ident, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(4, 2, 3))


def test_elastic_field_is_a_scaled_gaussian_smoothing_of_uniform_noise() -> None:
    n, h, w, alpha, sigma = 2, 12, 10, 5.0, 1.5
    torch.manual_seed(3)
    d = elastic_field(n, h, w, alpha, sigma).numpy()
    assert d.shape == (n, h, w, 2)
    torch.manual_seed(3)
    u = (torch.rand(n * 2, 1, h, w) * 2 - 1).numpy().astype(np.float64)
    r = np.arange(-3, 4)  # radius ceil(2 sigma)
    k = np.exp(-(r**2) / (2 * sigma**2))
    k /= k.sum()
    for i in range(n):
        for axis, scale in ((0, 2.0 / w), (1, 2.0 / h)):
            ref = ndimage.correlate1d(ndimage.correlate1d(u[2 * i + axis, 0], k, axis=1, mode="nearest"), k, axis=0,
                                      mode="nearest")
            assert d[i, :, :, axis] == pytest.approx(alpha * scale * ref, rel=1e-5, abs=1e-7)
    assert np.abs(elastic_field(3, 8, 8, 0.0, 2.0).numpy()).max() == 0


def test_elastic_distortion_moves_ink_locally() -> None:
    torch.manual_seed(0)
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a vertical bar, as a "1"
    only = GlyphAugment(rotate=0, scale=0, shear=0, shift=0, p_thick=0, p_thin=0, p_blur=0, p_lowres=0, p_elastic=1.0)
    y = augment_glyphs(x, only)
    assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6
    changed = (y - x).abs().flatten(1).sum(1)
    assert (changed > 1.0).all()  # every example is distorted ...
    ink = y.flatten(1).sum(1) / x.flatten(1).sum(1)
    assert ((ink > 0.6) & (ink < 1.4)).all()  # ... but the stroke is bent, not erased or smeared over the image


def test_augment_glyphs_shape_range_and_identity() -> None:
    torch.manual_seed(0)
    x = torch.rand(8, 1, 28, 28)
    y = augment_glyphs(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6 and not torch.allclose(x, y)
    none = GlyphAugment(rotate=0, scale=0, shear=0, shift=0, p_thick=0, p_thin=0, p_blur=0, p_lowres=0, p_elastic=0)
    assert torch.allclose(augment_glyphs(x, none), x, atol=1e-5)


def test_randomized_multilinear_map_matches_numpy_and_estimates_inner_products() -> None:
    f, g = RNG.normal(size=(5, 7)), _softmax(RNG.normal(size=(5, 3)))
    rf, rg = RNG.normal(size=(7, 11)), RNG.normal(size=(3, 11))
    out = randomized_multilinear_map(*(torch.from_numpy(a) for a in (f, g, rf, rg))).numpy()
    assert out == pytest.approx((f @ rf) * (g @ rg) / math.sqrt(11))
    # E[<T(a), T(b)>] = <f_a, f_b> <g_a, g_b> (Long et al. 2018, Theorem 1): check with a wide map
    torch.manual_seed(0)
    d = 200_000
    ft, gt = torch.from_numpy(f[:2]), torch.from_numpy(g[:2])
    t = randomized_multilinear_map(ft, gt, torch.randn(7, d, dtype=torch.float64), torch.randn(3, d, dtype=torch.float64))
    exact = float((ft[0] @ ft[1]) * (gt[0] @ gt[1]))
    assert float(t[0] @ t[1]) == pytest.approx(exact, abs=0.05 * np.linalg.norm(f[0]) * np.linalg.norm(f[1]))


def test_class_balanced_pseudo_label_loss_matches_numpy() -> None:
    z = RNG.normal(scale=4.0, size=(30, 4))
    z[:12, 0] += 10  # class 0 dominates the confident predictions
    loss, mask = class_balanced_pseudo_label_loss(torch.from_numpy(z), threshold=0.8)
    p = _softmax(z)
    conf, y = p.max(1), p.argmax(1)
    m = conf >= 0.8
    counts = np.bincount(y[m], minlength=4)
    k = (counts > 0).sum()
    w = np.where(m, m.sum() / (k * np.maximum(counts[y], 1)), 0.0)
    ce = -np.log(p[np.arange(30), y])
    assert mask.numpy().tolist() == m.tolist()
    assert float(loss) == pytest.approx((w * ce).sum() / 30, rel=1e-5)
    assert w.sum() == pytest.approx(m.sum())
    for c in np.flatnonzero(counts):  # every present class gets the same total weight
        assert w[m & (y == c)].sum() == pytest.approx(m.sum() / k)


def test_class_balanced_pseudo_label_loss_with_nothing_confident_is_zero() -> None:
    loss, mask = class_balanced_pseudo_label_loss(torch.zeros(6, 3), threshold=0.9)
    assert float(loss) == 0.0 and not mask.any()


def test_low_resolution_round_trip() -> None:
    x = torch.from_numpy(RNG.random((3, 1, 16, 16)).astype(np.float32))
    out = low_resolution(x, torch.tensor([0, 8, 4]))
    assert torch.equal(out[0], x[0])
    small = x[1, 0].numpy().reshape(8, 2, 8, 2).mean(axis=(1, 3))  # area downsampling = block means
    back = F.interpolate(torch.from_numpy(small)[None, None], size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(out[1], back[0], atol=1e-6)
    assert torch.allclose(F.avg_pool2d(out[2:3], 4), F.avg_pool2d(x[2:3], 4), atol=0.15)


def test_fixmatch_pseudo_labels_come_from_the_label_logits() -> None:
    z_clean = torch.tensor([[5.0, 0.0], [0.0, 5.0], [0.1, 0.0]])
    z_aug = torch.tensor([[0.0, 1.0], [1.0, 0.0], [3.0, 0.0]])
    loss, mask = class_balanced_pseudo_label_loss(z_aug, 0.9, z_clean)
    assert mask.tolist() == [True, True, False]
    ce = F.cross_entropy(z_aug[:2], torch.tensor([0, 1]), reduction="sum") / 3
    assert float(loss) == pytest.approx(float(ce), rel=1e-6)
