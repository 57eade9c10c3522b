"""Cold-start methods on features alone: TypiClust, ProbCover, k-means closest, k-center greedy and a random draw.

Each is ``fn(X, budget, seed) -> Selection`` on a feature array ``X`` (``[N, D]``), registered by name in
:data:`METHODS`; the papers and formulas are in :mod:`transferkit.suggest`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from transferkit.suggest.geometry import (
    MIN_CLUSTER,
    PURITY,
    TYPICALITY_K,
    Selection,
    ball_graph,
    check_budget,
    fill_farthest,
    kmeans,
    nearest_other,
    normalise,
    typicality,
)


def _cluster_order(labels: np.ndarray, k: int) -> list[int]:
    """Clusters largest first, those under :data:`MIN_CLUSTER` points after the rest (ties: lower id)."""
    sizes = np.bincount(labels, minlength=k)
    return sorted(range(k), key=lambda c: (sizes[c] < MIN_CLUSTER, -sizes[c], c))


def _per_cluster(x: np.ndarray, budget: int, seed: int,
                 pick: Callable[[np.ndarray, np.ndarray], tuple[int, str, str]]) -> Selection:
    """One point of each of ``budget`` k-means clusters of ``x`` (normalised), largest clusters first:
    ``pick(the members' rows, the cluster's centre)`` gives the chosen row, what it is ("typical of") and
    its score ("typicality 0.82")."""
    x = normalise(x)
    check_budget(len(x), budget)
    labels, centres = kmeans(x, budget, seed)
    sizes = np.bincount(labels, minlength=budget)
    picks: list[int] = []
    why: list[str] = []
    for c in _cluster_order(labels, budget):
        members = np.flatnonzero(labels == c)
        if len(members) == 0:
            continue
        row, what, value = pick(x[members], centres[c])
        picks.append(int(members[row]))
        why.append(f"{what} cluster {c + 1} of {budget} ({sizes[c]} points, {value})")
    fill_farthest(x, picks, why, budget)
    return Selection(np.array(picks, dtype=np.int64), why)


def typiclust(x: np.ndarray, budget: int, seed: int = 0, k: int = TYPICALITY_K) -> Selection:
    """TypiClust (Hacohen et al., ICML 2022): the most typical point of each of ``budget`` k-means
    clusters, largest clusters first; typicality (:func:`typicality`) is computed inside the cluster.
    Shape ``[N, D]`` -> ``budget`` picks."""
    def most_typical(rows: np.ndarray, _: np.ndarray) -> tuple[int, str, str]:
        t = typicality(rows, k)
        best = int(np.argmax(t))
        return best, "typical of", f"typicality {t[best]:.2f}"

    return _per_cluster(x, budget, seed, most_typical)


def kmeans_closest(x: np.ndarray, budget: int, seed: int = 0) -> Selection:
    """The point nearest the centroid of each of ``budget`` k-means clusters, largest first.
    Shape ``[N, D]`` -> ``budget`` picks."""
    def nearest(rows: np.ndarray, centre: np.ndarray) -> tuple[int, str, str]:
        d = np.linalg.norm(rows - centre, axis=1)
        return int(np.argmin(d)), "nearest the centre of", f"distance {d.min():.2f}"

    return _per_cluster(x, budget, seed, nearest)


def kcenter(x: np.ndarray, budget: int, seed: int = 0) -> Selection:
    """k-center greedy (Sener and Savarese, ICLR 2018): start at the point nearest the mean, then each
    pick is ``argmax_i min_{j picked} ||x_i - x_j||``. Shape ``[N, D]`` -> ``budget`` picks
    (``seed`` is unused: the traversal is deterministic)."""
    del seed
    x = normalise(x)
    check_budget(len(x), budget)
    first = int(np.argmin(np.linalg.norm(x - x.mean(0), axis=1)))
    picks, why = [first], ["nearest the centre of all the data"]
    fill_farthest(x, picks, why, budget)
    return Selection(np.array(picks, dtype=np.int64), why)


def choose_delta(x: np.ndarray, n_clusters: int, seed: int = 0, alpha: float = PURITY) -> float:
    """ProbCover's radius: the largest ``delta`` on a grid of 0.05..1.0 (unit vectors) with
    ``purity >= alpha`` for the ``n_clusters`` k-means clusters of ``x`` (the smallest grid value
    when none reaches it). Shape ``[N, D]`` -> a float."""
    x = normalise(x)
    labels, _ = kmeans(x, max(2, min(n_clusters, len(x))), seed)
    gap = nearest_other(x, labels)  # one pass: purity(delta) = mean(gap >= delta) for every delta
    best = 0.05
    for delta in np.arange(0.05, 1.0001, 0.05):
        if float((gap >= delta).mean()) < alpha:
            break
        best = float(delta)
    return best


def probcover(x: np.ndarray, budget: int, seed: int = 0, delta: float | None = None) -> Selection:
    """ProbCover (Yehuda et al., NeurIPS 2022): greedy max coverage of ``delta``-balls. Each pick is
    ``argmax_i |B_delta(x_i) \\ covered|``; ``delta`` defaults to :func:`choose_delta` with ``budget``
    clusters. Once every point is covered, the rest are picked farthest-first. Shape ``[N, D]`` ->
    ``budget`` picks."""
    x = normalise(x)
    check_budget(len(x), budget)
    delta = choose_delta(x, budget, seed) if delta is None else delta
    balls = ball_graph(x, delta)
    covered = np.zeros(len(x), dtype=bool)
    picks: list[int] = []
    why: list[str] = []
    while len(picks) < budget and not covered.all():
        gain = np.array([int((~covered[b]).sum()) for b in balls])
        gain[picks] = -1
        best = int(np.argmax(gain))
        picks.append(best)
        covered[balls[best]] = True
        why.append(f"covers {gain[best]} new points within distance {delta:.2f} "
                   f"({100 * covered.mean():.0f}% covered)")
    fill_farthest(x, picks, why, budget)
    return Selection(np.array(picks, dtype=np.int64), why)


def random_draw(x: np.ndarray, budget: int, seed: int = 0) -> Selection:
    """A uniform random draw of ``budget`` rows without replacement (the baseline). Shape ``[N, D]``."""
    check_budget(len(x), budget)
    idx = np.random.default_rng(seed).choice(len(x), size=budget, replace=False).astype(np.int64)
    return Selection(idx, ["random draw"] * budget)


#: Selection methods by name: ``fn(X, budget, seed) -> Selection``.
METHODS: dict[str, Callable[[np.ndarray, int, int], Selection]] = {
    "typiclust": typiclust,
    "probcover": probcover,
    "kmeans_closest": kmeans_closest,
    "kcenter": kcenter,
    "random": random_draw,
}
#: The method ``suggest-labels`` uses unless told otherwise (chosen by benchmarks/suggest.py).
DEFAULT_METHOD = "kmeans_closest"


__all__ = ["DEFAULT_METHOD", "METHODS", "choose_delta", "kcenter", "kmeans_closest", "probcover", "random_draw",
           "typiclust"]
