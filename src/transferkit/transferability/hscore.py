"""H-score with Ledoit-Wolf shrinkage of the feature covariance (the regularised H-score)."""

from __future__ import annotations

import numpy as np

from transferkit.transferability.base import check_features


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of ``x`` and its shrinkage ``alpha`` in ``[0, 1]``.

    Ledoit & Wolf, "A well-conditioned estimator for large-dimensional covariance matrices",
    J. Multivariate Analysis 2004. With centred rows ``x_i``, ``S = X^T X / N`` and
    ``mu = tr(S) / D``:

        delta = ||S - mu I||_F^2 / D
        b = min(delta, 1/(N^2 D) sum_i ||x_i x_i^T - S||_F^2)
        alpha = b / delta,   Sigma = (1 - alpha) S + alpha mu I

    Shape:
        - x: ``[N, D]``
        - returns: ``([D, D], scalar)``
    """
    xc = x - x.mean(axis=0)
    n, d = xc.shape
    s = xc.T @ xc / n
    mu = np.trace(s) / d
    delta = (np.sum(s**2) - 2 * mu * np.trace(s) + d * mu**2) / d  # ||S - mu I||_F^2 / D
    # sum_i ||x_i x_i^T - S||_F^2 = sum_i ||x_i||^4 - N ||S||_F^2
    spread = (np.sum(np.sum(xc**2, axis=1) ** 2) - n * np.sum(s**2)) / (n**2 * d)
    b = min(max(spread, 0.0), delta)
    alpha = 0.0 if b == 0 else float(b / delta)
    cov = (1 - alpha) * s
    cov.flat[:: d + 1] += alpha * mu
    return cov, alpha


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """Shrinkage-regularised H-score (higher is better).

    H-score: Bao, Li, Huang, Tan, Zheng & Yao, "An Information-Theoretic Approach to
    Transferability in Task Transfer Learning", ICIP 2019:
    ``H(f) = tr( cov(f)^{-1} cov(E[f | y]) )``. Its plain form inverts a badly conditioned
    covariance and collapses for high-dimensional features; Ibrahim, Ponomareva & Mazumder,
    "Newer is not always better: Rethinking transferability metrics, their peculiarities,
    stability and performance" (ECML-PKDD 2022, arXiv:2110.06893) replace it by the Ledoit-Wolf
    estimate ``cov_alpha(f) = (1 - alpha) cov(f) + alpha mu I`` (see :func:`ledoit_wolf`):

        H_alpha(f) = tr( cov_alpha(f)^{-1} (1 - alpha) cov(E[f | y]) )

    ``cov(E[f | y])`` is the covariance (``N - 1`` denominator, as in the authors' code) of the
    rows with every feature replaced by its class mean, i.e.
    ``sum_c n_c (mu_c - mu)(mu_c - mu)^T / (N - 1)``.

    Shape:
        - features: ``[N, D]``
        - labels: ``[N]`` integers (at least 2 classes)
        - returns: scalar
    """
    f, y = check_features(features, labels)
    cov, alpha = ledoit_wolf(f)
    counts = np.bincount(y).astype(np.float64)
    means = np.zeros((len(counts), f.shape[1]))
    np.add.at(means, y, f)
    dev = means / counts[:, None] - f.mean(axis=0)  # [C, D] class mean minus grand mean
    sol = np.linalg.lstsq(cov, dev.T, rcond=None)[0] if alpha == 0 else np.linalg.solve(cov, dev.T)
    between = float(np.einsum("c,cd,dc->", counts, dev, sol))  # sum_c n_c dev_c^T cov^-1 dev_c
    return (1 - alpha) * between / (len(f) - 1)
