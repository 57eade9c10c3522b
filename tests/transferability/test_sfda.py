"""SFDA: its Fisher classifier against the eigen-decomposition route, invariances, sanity."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import scipy.linalg

from transferkit.transferability import sfda
from transferkit.transferability.sfda import fisher_posterior, shrinkage_strength

Blobs = Callable[..., tuple[np.ndarray, np.ndarray]]


def eigen_route_posterior(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """The authors' route: S_B = S_T(lambda) - S_W(lambda), W from eigh(S_B, S_W(lambda)),
    coef = means W W^T, intercept = -diag(means coef^T) / 2 + log priors."""
    classes = np.unique(y)
    priors = np.array([np.mean(y == c) for c in classes])
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    sw = sum(p * np.cov(x[y == c].T, bias=True) for p, c in zip(priors, classes))
    d = x.shape[1]

    def shrink(s: np.ndarray) -> np.ndarray:
        return (1 - lam) * s + lam * np.trace(s) / d * np.eye(d)

    sb = shrink(np.cov(x.T, bias=True)) - shrink(sw)
    _, w = scipy.linalg.eigh(sb, shrink(sw))
    coef = means @ w @ w.T
    logits = x @ coef.T - 0.5 * np.diag(means @ coef.T) + np.log(priors)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_fisher_posterior_matches_the_eigen_decomposition_route(make_blobs: Blobs) -> None:
    f, y = make_blobs(n_per_class=20, classes=3, dim=5, sep=1.0, seed=12)
    for lam in (1e-10, 0.3):
        np.testing.assert_allclose(fisher_posterior(f, y, lam), eigen_route_posterior(f, y, lam), rtol=1e-7,
                                   atol=1e-10)


def test_shrinkage_is_exp_of_minus_five_times_the_largest_within_class_eigenvalue(make_blobs: Blobs) -> None:
    f, y = make_blobs(dim=4, seed=13)
    f = f * 0.2
    sw = sum(np.mean(y == c) * np.cov(f[y == c].T, bias=True) for c in np.unique(y))
    assert shrinkage_strength(f, y) == pytest.approx(np.exp(-5 * np.linalg.eigvalsh(sw)[-1]), rel=1e-10)


def test_invariant_to_translation_and_rotation(make_blobs: Blobs) -> None:
    f, y = make_blobs(n_per_class=25, classes=4, dim=6, sep=0.6, seed=14)
    f = f * 0.3  # keep lambda away from its floor so the regulariser matters
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(6, 6)))
    assert sfda(f @ q + 5.0, y) == pytest.approx(sfda(f, y), rel=1e-9)


def test_separable_scores_higher_than_random_labels(make_blobs: Blobs) -> None:
    f, y = make_blobs(n_per_class=30, classes=4, dim=6, sep=4.0, seed=15)
    good = sfda(f, y)
    bad = sfda(f, np.random.default_rng(0).permutation(y))
    assert 0.9 < good <= 1.0
    assert bad < 0.5


def test_self_challenge_lowers_the_score_of_overlapping_classes(make_blobs: Blobs) -> None:
    """ConfMix pulls uncertain samples towards the other classes: SFDA <= plain Fisher accuracy."""
    f, y = make_blobs(n_per_class=30, classes=3, dim=4, sep=0.8, seed=16)
    lam = shrinkage_strength(f, y)
    plain = fisher_posterior(f, y, lam)[np.arange(len(y)), y].mean()
    assert sfda(f, y) < plain
