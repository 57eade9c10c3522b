"""PARC: Pairwise Annotation Representation Comparison."""

from __future__ import annotations

import numpy as np

from transferkit.errors import DataError
from transferkit.transferability.base import check_features, check_positive_int, pca_reduce


def parc(features: np.ndarray, labels: np.ndarray, *, dims: int = 32) -> float:
    """PARC score (higher is better, in [-100, 100]).

    Bolya, Mittapalli & Hoffman, "Scalable Diverse Model Selection for Accessible Transfer
    Learning", NeurIPS 2021. Features are reduced to ``dims = 32`` principal components and
    standardised per column; then two representational dissimilarity matrices are compared:

        D_f[i, j] = 1 - pearson(f_i, f_j)        (rows of the standardised features)
        D_y[i, j] = 1 - pearson(onehot(y_i), onehot(y_j))
        PARC = 100 * spearman( upper(D_f), upper(D_y) )

    ``D_y`` takes only two values (0 for the same class, ``1 + 1/(C - 1)`` otherwise), so the
    rank correlation is computed against the indicator ``[y_i != y_j]``, which has the same ranks.
    Memory is ``O(N^2)``: sub-sample large sets first.

    Shape:
        - features: ``[N, D]`` (N >= 3)
        - labels: ``[N]`` integers (at least 2 classes)
        - returns: scalar
    """
    from scipy.stats import spearmanr

    f, y = check_features(features, labels)
    dims = check_positive_int("dims", dims)
    if np.bincount(y).max() < 2:
        raise DataError(f"parc needs a class with at least 2 samples, got {len(y)} samples in {len(y)} classes")
    g = pca_reduce(f, dims)
    sd = g.std(axis=0)
    g = g / np.where(sd > 0, sd, 1.0)  # already centred: standardised
    g = g - g.mean(axis=1, keepdims=True)  # row-wise Pearson: centre and normalise each row
    g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    iu = np.triu_indices(len(g), 1)
    dist_f = 1.0 - (g @ g.T)[iu]
    diff_y = (y[:, None] != y[None, :])[iu].astype(np.float64)
    rho = spearmanr(dist_f, diff_y)[0]
    return float(100.0 * rho)
