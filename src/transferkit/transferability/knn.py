"""Leave-one-out k-nearest-neighbour accuracy on L2-normalised features."""

from __future__ import annotations

import numpy as np

from transferkit.errors import DataError
from transferkit.transferability.base import check_features, check_positive_int


def knn(features: np.ndarray, labels: np.ndarray, *, k: int = 5, chunk: int = 1024) -> float:
    """Leave-one-out ``k``-NN accuracy on L2-normalised features (higher is better, in [0, 1]).

    The non-parametric probe used to evaluate frozen self-supervised features, e.g. Wu, Xiong, Yu
    & Lin, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018
    and Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (DINO), ICCV
    2021. With ``g_i = f_i / ||f_i||`` (cosine similarity, equivalently Euclidean distance on the
    sphere) and ``N_k(i)`` the ``k`` most similar other samples:

        yhat_i = argmax_c #{j in N_k(i): y_j = c}   (a tie goes to the lower class index)
        kNN = 1/N sum_i [yhat_i = y_i]

    Similarities are computed ``chunk`` rows at a time (memory ``O(chunk * N)``).

    Shape:
        - features: ``[N, D]`` (N > k)
        - labels: ``[N]`` integers (at least 2 classes)
        - returns: scalar accuracy
    """
    f, y = check_features(features, labels)
    k = check_positive_int("k", k)
    chunk = check_positive_int("chunk", chunk)
    n = len(f)
    if k >= n:
        raise DataError(f"knn with k={k} needs more than {k} samples, got {n}")
    g = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    num_classes = int(y.max()) + 1
    correct = 0
    for start in range(0, n, chunk):
        sim = g[start : start + chunk] @ g.T  # [b, N]
        rows = np.arange(sim.shape[0])
        sim[rows, start + rows] = -np.inf  # leave the sample itself out
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # [b, k]
        votes = np.zeros((sim.shape[0], num_classes), dtype=np.int64)
        np.add.at(votes, (np.repeat(rows, k), y[nn].reshape(-1)), 1)
        correct += int((votes.argmax(axis=1) == y[start : start + chunk]).sum())
    return correct / n
