"""The shrinkage H-score against its formula with sklearn's Ledoit-Wolf estimator."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf, ledoit_wolf as sk_ledoit_wolf

from transferkit.transferability import hscore, ledoit_wolf

Blobs = Callable[..., tuple[np.ndarray, np.ndarray]]


def reference_hscore(f: np.ndarray, y: np.ndarray) -> float:
    """tr(cov_alpha(f)^+ (1 - alpha) cov(E[f|y])), written the way the paper's code does it."""
    f = f - f.mean(axis=0, keepdims=True)
    lw = LedoitWolf(assume_centered=False).fit(f)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    covg = np.cov(g, rowvar=False)
    return float(np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * covg)))


@pytest.mark.parametrize("n,d", [(80, 5), (30, 50)], ids=["N>D", "N<D"])
def test_ledoit_wolf_matches_sklearn(n: int, d: int) -> None:
    x = np.random.default_rng(0).normal(size=(n, d)) @ np.diag(np.linspace(0.5, 3, d)) + 2.0
    cov, alpha = ledoit_wolf(x)
    ref_cov, ref_alpha = sk_ledoit_wolf(x)
    assert alpha == pytest.approx(ref_alpha, rel=1e-10)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n_per_class,dim", [(25, 6), (6, 40)], ids=["N>D", "N<D"])
def test_hscore_matches_the_formula(make_blobs: Blobs, n_per_class: int, dim: int) -> None:
    f, y = make_blobs(n_per_class=n_per_class, classes=4, dim=dim, sep=1.0, seed=5)
    assert hscore(f, y) == pytest.approx(reference_hscore(f, y), rel=1e-8)


def test_shrinkage_keeps_high_dimensional_hscore_bounded(make_blobs: Blobs) -> None:
    """With N < D the plain H-score's inverse explodes; the shrunk one stays below the class count."""
    f, y = make_blobs(n_per_class=5, classes=4, dim=60, sep=0.0, seed=6)  # no class signal
    assert 0 <= hscore(f, y) < 1.0


def test_more_separable_features_score_higher(make_blobs: Blobs) -> None:
    values = [hscore(*make_blobs(sep=sep, seed=7)) for sep in (0.1, 1.0, 3.0)]
    assert values == sorted(values), values


def test_constant_features_score_zero() -> None:
    assert hscore(np.ones((10, 3)), np.array([0, 1] * 5)) == 0.0
