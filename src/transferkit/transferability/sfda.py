"""SFDA: Self-challenging Fisher Discriminant Analysis."""

from __future__ import annotations

import numpy as np

from transferkit.errors import ConfigError
from transferkit.transferability.base import check_features


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _within_scatter(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class means ``[C, D]`` and ``S_W = sum_c pi_c cov_c = 1/N sum_i (x_i - mu_{y_i})(...)^T``."""
    counts = np.bincount(y).astype(np.float64)
    means = np.zeros((len(counts), x.shape[1]))
    np.add.at(means, y, x)
    means /= counts[:, None]
    r = x - means[y]
    return means, r.T @ r / len(x)


def shrinkage_strength(x: np.ndarray, y: np.ndarray, a: float = 5.0) -> float:
    """SFDA's adaptive regularisation ``lambda = exp(-a * sigma_max(S_W))`` (floored at 1e-10)."""
    import scipy.linalg

    _, sw = _within_scatter(x, y)
    d = sw.shape[0]
    top = float(scipy.linalg.eigh(sw, eigvals_only=True, subset_by_index=[d - 1, d - 1])[0])
    return max(float(np.exp(-a * top)), 1e-10)


def fisher_posterior(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Class posteriors of the regularised Fisher classifier fitted on ``(x, y)`` and applied to ``x``.

    ``S_W(lambda) = (1 - lambda) S_W + lambda (tr S_W / D) I``; keeping every discriminant direction
    ``W`` of ``S_B w = e S_W(lambda) w`` gives ``W W^T = S_W(lambda)^{-1}``, so the Fisher-space
    classifier is ``p(c | x) = softmax_c(x^T S^-1 mu_c - mu_c^T S^-1 mu_c / 2 + log pi_c)``.

    Shape:
        - x: ``[N, D]``, y: ``[N]`` in ``0..C-1``
        - returns: ``[N, C]``
    """
    import scipy.linalg

    means, sw = _within_scatter(x, y)
    d = sw.shape[0]
    reg = (1 - lam) * sw
    reg.flat[:: d + 1] += lam * np.trace(sw) / d
    try:
        coef = scipy.linalg.solve(reg, means.T, assume_a="pos").T  # [C, D] = mu_c^T S^-1
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        coef = np.linalg.lstsq(reg, means.T, rcond=None)[0].T
    priors = np.bincount(y) / len(y)
    logits = x @ coef.T - 0.5 * np.einsum("cd,cd->c", means, coef) + np.log(priors)
    return _softmax(logits)


def sfda(features: np.ndarray, labels: np.ndarray, *, a: float = 5.0) -> float:
    """SFDA score (higher is better, in (0, 1]).

    Shao, Zhao, Ge, Zhang, Yang, Wang, Shan & Luo, "Not All Models Are Equal: Predicting Model
    Transferability in a Self-challenging Fisher Space", ECCV 2022. Three steps:

    1. Regularised Fisher Discriminant Analysis with adaptive strength
       ``lambda = exp(-a * sigma_max(S_W))`` (``S_W`` the within-class covariance, ``a = 5``)
       gives class posteriors ``p(c | x)`` (:func:`fisher_posterior`).
    2. ConfMix, the self-challenge: with ``q_i = softmax(p(. | x_i))_{y_i}`` (the posterior of the
       true class, softened by a softmax) and ``mubar_{-c}`` the mean of the other classes' means,
       ``x~_i = q_i x_i + (1 - q_i) mubar_{-y_i}`` (hard, low-confidence samples move towards the
       other classes).
    3. Refit the Fisher classifier with the same ``lambda`` on ``x~``:
       ``SFDA = 1/N sum_i p~(y_i | x~_i)``.

    As in the authors' code, the shrinkage target is ``(tr S_W / D) I`` and every discriminant
    direction is kept; ``sigma_max`` is computed exactly (the authors run three power iterations).
    The score is invariant to translating and orthogonally rotating the features, not to scaling
    them (``lambda`` depends on the scale).

    Shape:
        - features: ``[N, D]``
        - labels: ``[N]`` integers (at least 2 classes)
        - returns: scalar
    """
    if not a > 0:
        raise ConfigError(f"sfda a must be positive, got {a!r}")
    f, y = check_features(features, labels)
    lam = shrinkage_strength(f, y, a)
    first = fisher_posterior(f, y, lam)
    q = _softmax(first)[np.arange(len(y)), y][:, None]
    means, _ = _within_scatter(f, y)
    others = (means.sum(axis=0) - means) / (len(means) - 1)  # [C, D]
    mixed = q * f + (1 - q) * others[y]
    second = fisher_posterior(mixed, y, lam)
    return float(second[np.arange(len(y)), y].mean())
