"""GBC: Gaussian Bhattacharyya Coefficient, the overlap between per-class Gaussians."""

from __future__ import annotations

import numpy as np

from transferkit.errors import ConfigError
from transferkit.transferability.base import check_features, check_positive_int, pca_reduce


def gbc(features: np.ndarray, labels: np.ndarray, *, gaussian: str = "spherical", dims: int = 64,
        var_floor: float = 1e-4) -> float:
    """GBC score (higher is better, at most 0).

    Pandy, Agostinelli, Uijlings, Ferrari & Mensink, "Transferability Estimation using
    Bhattacharyya Class Separability", CVPR 2022. Features (reduced to ``dims`` principal
    components) of each class ``c`` are modelled as a Gaussian ``N(mu_c, Sigma_c)`` with diagonal
    or spherical (``sigma_c^2 I``, the mean of the diagonal) covariance; per-dimension variances
    are floored at ``var_floor`` as in the authors' code. With ``Sigma = (Sigma_c + Sigma_c') / 2``:

        D_B(c, c') = 1/8 (mu_c - mu_c')^T Sigma^{-1} (mu_c - mu_c')
                     + 1/2 log( det Sigma / sqrt(det Sigma_c det Sigma_c') )
        GBC = - sum_c sum_{c' != c} exp(-D_B(c, c'))

    Shape:
        - features: ``[N, D]``
        - labels: ``[N]`` integers (at least 2 classes)
        - returns: scalar
    """
    if gaussian not in ("spherical", "diagonal"):
        raise ConfigError(f"gbc gaussian={gaussian!r} is not one of spherical, diagonal")
    if not var_floor > 0:
        raise ConfigError(f"gbc var_floor must be positive, got {var_floor!r}")
    f, y = check_features(features, labels)
    g = pca_reduce(f, check_positive_int("dims", dims))
    counts = np.bincount(y).astype(np.float64)
    means = np.zeros((len(counts), g.shape[1]))
    np.add.at(means, y, g)
    means /= counts[:, None]
    var = np.zeros_like(means)
    np.add.at(var, y, (g - means[y]) ** 2)
    var = np.maximum(var / counts[:, None], var_floor)  # [C, d] population variances
    if gaussian == "spherical":
        var = np.repeat(var.mean(axis=1, keepdims=True), g.shape[1], axis=1)
    avg = (var[:, None, :] + var[None, :, :]) / 2  # [C, C, d]
    diff2 = (means[:, None, :] - means[None, :, :]) ** 2
    log_det = np.log(var).sum(-1)  # [C]
    db = (diff2 / avg).sum(-1) / 8 + 0.5 * (np.log(avg).sum(-1) - 0.5 * (log_det[:, None] + log_det[None, :]))
    bc = np.exp(-db)
    np.fill_diagonal(bc, 0.0)
    return float(-bc.sum())
