"""The geometry every cold-start method shares: unit-normalised features, distances in blocks of rows,
typicality, k-means, delta-balls, and the farthest-first top-up (:func:`fill_farthest`).

Pure functions of a feature array ``X`` (``[N, D]``); :class:`Selection` is what every method returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transferkit.errors import ConfigError

#: Neighbours of the typicality estimate (TypiClust's K).
TYPICALITY_K = 20
#: Clusters smaller than this are left to the last (TypiClust drops clusters of fewer than 5 points).
MIN_CLUSTER = 5
#: Share of pure balls ProbCover's ``delta`` must keep (the paper's alpha).
PURITY = 0.95
#: Rows per block of pairwise distances (memory: ``CHUNK * N`` floats at a time).
CHUNK = 1024


@dataclass(frozen=True)
class Selection:
    """Picked rows of the pool, in the order picked, and why each was picked.

    Attributes:
        index: int64 row indices into ``X``. Shape ``[B]``, distinct.
        why: one reason per pick, e.g. ``"typical of cluster 3 of 20 (48 points, typicality 1.92)"``.
    """

    index: np.ndarray
    why: list[str]


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64; zero rows stay zero). Shape ``[N, D]`` -> ``[N, D]``."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def check_budget(n: int, budget: int) -> None:
    """A one-line :class:`ConfigError` unless ``1 <= budget <= n``."""
    if budget < 1 or budget > n:
        raise ConfigError(f"--budget {budget}: must be between 1 and the number of unlabelled examples ({n})")


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances ``D[i, j] = ||a_i - b_j||``. Shapes ``[N, D]``, ``[M, D]`` -> ``[N, M]``."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def knn_mean_distance(x: np.ndarray, k: int) -> np.ndarray:
    """Mean distance of each row to its ``k`` nearest other rows (blocks of :data:`CHUNK` rows).
    Shape ``[N, D]`` -> ``[N]``; ``k`` is clipped to ``N - 1`` (0 neighbours: distance 0)."""
    n = len(x)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros(n)
    out = np.empty(n)
    for lo in range(0, n, CHUNK):
        d = pairwise_distances(x[lo : lo + CHUNK], x)
        d[np.arange(len(d)), np.arange(lo, lo + len(d))] = np.inf  # not its own neighbour
        out[lo : lo + len(d)] = np.partition(d, k - 1, axis=1)[:, :k].mean(1)
    return out


def typicality(x: np.ndarray, k: int = TYPICALITY_K) -> np.ndarray:
    """TypiClust's typicality, the inverse mean distance to the ``k`` nearest neighbours:
    ``t(x) = 1 / (1/k * sum_{x_i in KNN_k(x)} ||x - x_i||)``. Shape ``[N, D]`` -> ``[N]``
    (a lone point, or points all at distance 0, get ``inf``)."""
    with np.errstate(divide="ignore"):
        return 1.0 / knn_mean_distance(x, k)


def kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means (k-means++ initialisation, Lloyd iterations; scikit-learn). Shape ``[N, D]`` ->
    (labels ``[N]``, centroids ``[k, D]``)."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
    return km.labels_.astype(np.int64), km.cluster_centers_


def fill_farthest(x: np.ndarray, picks: list[int], why: list[str], budget: int) -> None:
    """Top up ``picks`` to ``budget`` (k-means left a cluster empty: duplicate points) farthest-first."""
    while len(picks) < budget:
        d = pairwise_distances(x, x[picks]).min(1) if picks else np.zeros(len(x))
        d[picks] = -1.0
        picks.append(int(np.argmax(d)))
        why.append(f"farthest from the picks before it (distance {d[picks[-1]]:.2f})")


def ball_graph(x: np.ndarray, delta: float) -> list[np.ndarray]:
    """For each row, the rows within distance ``< delta`` (itself included), in blocks of
    :data:`CHUNK` rows. Shape ``[N, D]`` -> N index arrays."""
    out: list[np.ndarray] = []
    for lo in range(0, len(x), CHUNK):
        d = pairwise_distances(x[lo : lo + CHUNK], x)
        out += [np.flatnonzero(row < delta) for row in d]
    return out


def nearest_other(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Distance from each row to the nearest row of another cluster (``inf`` when there is none), in
    blocks of :data:`CHUNK` rows. Shapes ``[N, D]``, ``[N]`` -> ``[N]``."""
    out = np.empty(len(x))
    for lo in range(0, len(x), CHUNK):
        d = pairwise_distances(x[lo : lo + CHUNK], x)
        d[labels[None, :] == labels[lo : lo + len(d), None]] = np.inf
        out[lo : lo + len(d)] = d.min(1)
    return out


def purity(x: np.ndarray, labels: np.ndarray, delta: float) -> float:
    """Share of points whose ``delta``-ball holds only points of their own cluster (ProbCover's purity
    ``pi(delta) = P(B_delta(x) is pure)``): a ball is pure when the nearest point of another cluster
    is at least ``delta`` away. Shapes ``[N, D]``, ``[N]`` -> a float in [0, 1]."""
    return float((nearest_other(x, labels) >= delta).mean())


__all__ = [
    "CHUNK", "MIN_CLUSTER", "PURITY", "TYPICALITY_K", "Selection", "ball_graph", "check_budget", "fill_farthest",
    "kmeans", "knn_mean_distance", "nearest_other", "normalise", "pairwise_distances", "purity", "typicality",
]
