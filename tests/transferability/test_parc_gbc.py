"""PARC against its published recipe; GBC against a per-pair Bhattacharyya computation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from transferkit.transferability import gbc, parc
from transferkit.transferability.base import pca_reduce

Blobs = Callable[..., tuple[np.ndarray, np.ndarray]]


def reference_parc(f: np.ndarray, y: np.ndarray) -> float:
    """Bolya et al.'s recipe: standardise, 1 - corrcoef of rows, one-hot labels, Spearman x 100."""
    g = StandardScaler().fit_transform(f)
    rdm_f = 1 - np.corrcoef(g)
    rdm_y = 1 - np.corrcoef(np.eye(int(y.max()) + 1)[y])
    iu = np.triu_indices(len(y), 1)
    return float(spearmanr(rdm_f[iu], rdm_y[iu])[0] * 100)


def test_parc_matches_the_recipe(make_blobs: Blobs) -> None:
    f, y = make_blobs(n_per_class=15, classes=4, dim=10, sep=0.7, seed=17)  # D <= 32: no PCA step
    assert parc(f, y) == pytest.approx(reference_parc(f, y), rel=1e-9)


def test_pca_reduce_matches_sklearn_up_to_axis_signs() -> None:
    x = np.random.default_rng(0).normal(size=(50, 40)) @ np.diag(np.linspace(3, 0.1, 40))
    ours = pca_reduce(x, 8)
    ref = PCA(n_components=8, svd_solver="full").fit_transform(x)
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), rtol=1e-7, atol=1e-9)


def test_parc_is_invariant_to_per_feature_affine_maps_and_row_order(make_blobs: Blobs) -> None:
    f, y = make_blobs(n_per_class=15, classes=3, dim=8, sep=0.7, seed=18)
    rng = np.random.default_rng(2)
    scaled = f * rng.uniform(0.1, 10, size=8) + rng.normal(size=8)
    assert parc(scaled, y) == pytest.approx(parc(f, y), rel=1e-9)
    perm = rng.permutation(len(y))
    assert parc(f[perm], y[perm]) == pytest.approx(parc(f, y), rel=1e-9)


def test_parc_separable_above_random(make_blobs: Blobs) -> None:
    f, y = make_blobs(n_per_class=20, classes=4, dim=40, sep=3.0, seed=19)  # D > 32: PCA step on
    # D_y is binary, which caps the rank correlation: ~23 is near the ceiling for 4 balanced classes
    assert parc(f, y) > 15
    assert abs(parc(np.random.default_rng(0).normal(size=f.shape), y)) < 5


def reference_gbc(f: np.ndarray, y: np.ndarray, spherical: bool) -> float:
    """-sum over ordered class pairs of exp(-D_B), D_B with dense diagonal covariance matrices."""
    stats = []
    for c in np.unique(y):
        var = np.maximum(f[y == c].var(axis=0), 1e-4)
        if spherical:
            var = np.full_like(var, var.mean())
        stats.append((f[y == c].mean(axis=0), np.diag(var)))
    total = 0.0
    for i, (m1, s1) in enumerate(stats):
        for j, (m2, s2) in enumerate(stats):
            if i != j:
                s = (s1 + s2) / 2
                db = (m1 - m2) @ np.linalg.solve(s, m1 - m2) / 8 + 0.5 * np.log(
                    np.linalg.det(s) / np.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
                total += np.exp(-db)
    return -total


@pytest.mark.parametrize("gaussian", ["spherical", "diagonal"])
def test_gbc_matches_pairwise_bhattacharyya(make_blobs: Blobs, gaussian: str) -> None:
    f, y = make_blobs(n_per_class=20, classes=4, dim=5, sep=0.8, seed=20)  # D <= 64: no PCA (centred only)
    assert gbc(f, y, gaussian=gaussian) == pytest.approx(reference_gbc(f, y, gaussian == "spherical"), rel=1e-9)


def test_gbc_near_zero_for_far_apart_classes_and_low_for_identical_ones(make_blobs: Blobs) -> None:
    f, y = make_blobs(n_per_class=20, classes=3, dim=4, sep=50.0, seed=21)
    assert gbc(f, y) == pytest.approx(0.0, abs=1e-6)
    same = np.random.default_rng(0).normal(size=f.shape)
    assert gbc(same, y) < -5.0  # 6 ordered pairs with BC close to 1
