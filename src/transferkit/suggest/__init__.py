"""Cold-start selection: which unlabelled examples to label first, chosen on frozen source features.

Every function here is a pure function of a feature array ``X`` (``[N, D]``, one row per
unlabelled example) and a ``budget`` ``B`` (how many examples a person will label); nothing is
trained. Features are L2-normalised first (:func:`normalise`), so distances are the Euclidean
distances of unit vectors, ``||u - v|| = sqrt(2 - 2 cos(u, v))``.

- **TypiClust** (Hacohen, Dekel and Weinshall, "Active Learning on a Budget: Opposite Strategies
  Suit High and Low Budgets", ICML 2022): cluster the pool into ``B`` clusters (k-means), then
  from each cluster, largest first, take its most *typical* point,
  ``typicality(x) = ( 1/K * sum_{x_i in KNN_K(x)} ||x - x_i|| )^-1`` with ``K = min(20, |cluster| - 1)``
  neighbours inside the cluster (:func:`typicality`, :func:`typiclust`).
- **ProbCover** (Yehuda, Dekel, Hacohen and Weinshall, "Active Learning Through a Covering Lens",
  NeurIPS 2022): draw a graph with an edge ``x -> x'`` when ``||x - x'|| < delta`` and greedily take
  the point whose ``delta``-ball covers the most points not yet covered (:func:`probcover`);
  ``delta`` is the largest radius whose balls stay *pure* (every point of the ball in the same
  k-means cluster) for at least ``alpha = 0.95`` of the points (:func:`choose_delta`).
- **k-means closest** (the TypiClust paper's ablation): from each k-means cluster, the point
  nearest its centroid (:func:`kmeans_closest`).
- **k-center greedy** (Sener and Savarese, "Active Learning for Convolutional Neural Networks: A
  Core-Set Approach", ICLR 2018): farthest-first traversal, each pick the point farthest from
  those picked (:func:`kcenter`).

Class-aware selection (class names known, a text source; label-name prompts as in
:mod:`transferkit.zeroshot`): centred prompt scores ``s_ic = cos(x_i, t_c) - mean_j cos(x_j, t_c)``
(:func:`prompt_scores`; centring calibrates the prompts' bias toward a class, label-free) predict
``argmax_c s_ic``; the budget is shared evenly over the predicted classes (:func:`quotas`), a class
with quota ``q > 1`` is split into ``q`` k-means clusters, and each (sub)cluster gives one example
(:func:`class_aware`): **prompt_confident** the largest margin ``s_ic - max_{c' != c} s_ic'``,
**prompt_typical** the most typical, **prompt_mixed** the largest sum of the two ranks,
**prompt_confident_typical** the most typical of the 10% most confident.

:data:`METHODS` (features only) and :data:`CLASS_METHODS` (prompt scores too) map names to functions;
:data:`DEFAULT_METHOD` and :data:`DEFAULT_CLASS_METHOD` are those ``benchmarks/suggest.py`` chose
(docs/SUGGEST.md gives the rule). Each returns a :class:`Selection`: the picked rows in order and one
plain-words reason per pick.

The shared geometry is in :mod:`transferkit.suggest.geometry`, the feature-only methods in
:mod:`transferkit.suggest.pool`, the class-aware ones in :mod:`transferkit.suggest.classes`.
"""

from __future__ import annotations

import numpy as np

from transferkit.errors import ConfigError
from transferkit.suggest.classes import (
    CLASS_METHODS,
    CONFIDENT_SHARE,
    DEFAULT_CLASS_METHOD,
    PICKS,
    class_aware,
    prompt_scores,
    quotas,
)
from transferkit.suggest.geometry import (
    CHUNK,
    MIN_CLUSTER,
    PURITY,
    TYPICALITY_K,
    Selection,
    ball_graph,
    check_budget,
    fill_farthest,
    kmeans,
    knn_mean_distance,
    nearest_other,
    normalise,
    pairwise_distances,
    purity,
    typicality,
)
from transferkit.suggest.pool import (
    DEFAULT_METHOD,
    METHODS,
    choose_delta,
    kcenter,
    kmeans_closest,
    probcover,
    random_draw,
    typiclust,
)


def select(x: np.ndarray, budget: int, method: str = DEFAULT_METHOD, seed: int = 0,
           scores: np.ndarray | None = None, class_names: list[str] | None = None) -> Selection:
    """The ``budget`` rows of ``x`` to label first by ``method`` (a name in :data:`METHODS`, or in
    :data:`CLASS_METHODS` with the prompt ``scores`` ``[N, K]`` of :func:`prompt_scores`).

    Raises:
        ConfigError: an unknown method, a class-aware method without scores, a budget outside
            ``1..N``, or features (scores) that are not ``[N, D]`` (``[N, K]``, ``K >= 2``) finite numbers.
    """
    if method not in METHODS and method not in CLASS_METHODS:
        raise ConfigError(f"--method {method}: unknown; choose one of {', '.join([*METHODS, *CLASS_METHODS])}")
    x = np.asarray(x)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ConfigError(f"features must be a finite [N, D] array, got shape {x.shape}")
    if method in METHODS:
        return METHODS[method](x, budget, seed)
    if scores is None:
        raise ConfigError(f"--method {method}: needs the class names (--classes NAME,NAME,...) and a text source")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[:1] != x.shape[:1] or scores.ndim != 2 or scores.shape[1] < 2 or not np.isfinite(scores).all():
        raise ConfigError(f"prompt scores must be a finite [N, K>=2] array for {len(x)} rows, got shape {scores.shape}")
    return CLASS_METHODS[method](x, scores, budget, seed, class_names)


__all__ = [
    "CHUNK", "CLASS_METHODS", "CONFIDENT_SHARE", "DEFAULT_CLASS_METHOD", "DEFAULT_METHOD", "METHODS", "MIN_CLUSTER",
    "PICKS", "PURITY", "TYPICALITY_K", "Selection", "ball_graph", "check_budget", "choose_delta", "class_aware",
    "fill_farthest", "kcenter", "kmeans", "kmeans_closest", "knn_mean_distance", "nearest_other", "normalise",
    "pairwise_distances", "probcover", "prompt_scores", "purity", "quotas", "random_draw", "select", "typicality",
    "typiclust",
]
