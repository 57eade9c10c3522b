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
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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
    _fill(x, picks, why, budget)
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


def _fill(x: np.ndarray, picks: list[int], why: list[str], budget: int) -> None:
    """Top up ``picks`` to ``budget`` (k-means left a cluster empty: duplicate points) farthest-first."""
    while len(picks) < budget:
        d = pairwise_distances(x, x[picks]).min(1) if picks else np.zeros(len(x))
        d[picks] = -1.0
        picks.append(int(np.argmax(d)))
        why.append(f"farthest from the picks before it (distance {d[picks[-1]]:.2f})")


def kcenter(x: np.ndarray, budget: int, seed: int = 0) -> Selection:
    """k-center greedy (Sener and Savarese, ICLR 2018): start at the point nearest the mean, then each
    pick is ``argmax_i min_{j picked} ||x_i - x_j||``. Shape ``[N, D]`` -> ``budget`` picks
    (``seed`` is unused: the traversal is deterministic)."""
    del seed
    x = normalise(x)
    check_budget(len(x), budget)
    first = int(np.argmin(np.linalg.norm(x - x.mean(0), axis=1)))
    picks, why = [first], ["nearest the centre of all the data"]
    _fill(x, picks, why, budget)
    return Selection(np.array(picks, dtype=np.int64), why)


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
    _fill(x, picks, why, budget)
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


def prompt_scores(x: np.ndarray, class_emb: np.ndarray) -> np.ndarray:
    """Centred cosine scores of each row against each class's prompt embedding:
    ``s_ic = cos(x_i, t_c) - mean_j cos(x_j, t_c)``. Shapes ``[N, D]``, ``[K, D]`` -> ``[N, K]``."""
    s = normalise(x) @ normalise(class_emb).T
    return s - s.mean(0, keepdims=True)


def quotas(sizes: np.ndarray, budget: int) -> np.ndarray:
    """The budget shared out over classes of ``sizes`` members, one at a time round-robin, larger classes
    first in each round, no class above its size: ``[5, 9], 3 -> [1, 2]``. Shape ``[K]`` -> ``[K]``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    q = np.zeros(len(sizes), dtype=np.int64)
    order = sorted(range(len(sizes)), key=lambda c: (-sizes[c], c))
    left = min(budget, int(sizes.sum()))
    while left > 0:
        for c in order:
            if left > 0 and q[c] < sizes[c]:
                q[c] += 1
                left -= 1
    return q


def _margins(scores: np.ndarray) -> np.ndarray:
    """``s_ic - max_{c' != c} s_ic'`` for every row and class. Shape ``[N, K]`` -> ``[N, K]``."""
    top2 = np.sort(scores, axis=1)[:, -2:] if scores.shape[1] > 1 else np.zeros((len(scores), 2))
    best = scores.max(1, keepdims=True)
    other = np.where(scores == best, top2[:, :1], top2[:, 1:])
    return scores - other


#: Share of a (sub)cluster, most confident first, that ``confident_typical`` takes its most typical example from.
CONFIDENT_SHARE = 0.1
#: How :func:`class_aware` picks inside a (sub)cluster.
PICKS = ("confident", "typical", "mixed", "confident_typical")


def _pick(x: np.ndarray, rows: np.ndarray, margin: np.ndarray, pick: str) -> tuple[int, str]:
    """One row of ``rows`` by ``pick`` (:data:`PICKS`) and what it is: the largest ``margin``; the largest
    typicality; the largest sum of the two ranks; the most typical of the :data:`CONFIDENT_SHARE` largest
    margins (typicality among those). Shapes: ``x`` ``[N, D]``, ``rows`` ``[n]``, ``margin`` ``[N]``."""
    if pick == "confident":
        return int(rows[np.argmax(margin[rows])]), "most confident"
    if pick == "typical":
        return int(rows[np.argmax(typicality(x[rows]))]), "most typical"
    if pick == "mixed":
        rank = np.argsort(np.argsort(typicality(x[rows]))) + np.argsort(np.argsort(margin[rows]))
        return int(rows[np.argmax(rank)]), "highest typicality + confidence rank"
    top = rows[np.argsort(-margin[rows])[: max(1, int(np.ceil(CONFIDENT_SHARE * len(rows))))]]
    return int(top[np.argmax(typicality(x[top]))]), f"most typical of the {len(top)} most confident"


def class_aware(x: np.ndarray, scores: np.ndarray, budget: int, seed: int = 0, class_names: list[str] | None = None,
                pick: str = "confident") -> Selection:
    """Examples spread evenly over the classes the prompts predict (``argmax_c scores``): a predicted
    class with quota ``q`` (:func:`quotas`) gives one example from each of its ``q`` k-means clusters,
    chosen by ``pick`` (:func:`_pick`). Shapes ``[N, D]``, ``[N, K]`` -> ``budget`` picks."""
    if pick not in PICKS:
        raise ConfigError(f"class-aware pick {pick!r}: unknown; choose one of {', '.join(PICKS)}")
    x = normalise(x)
    check_budget(len(x), budget)
    names = class_names or [str(c) for c in range(scores.shape[1])]
    pred, margin = scores.argmax(1), _margins(scores)
    sizes = np.bincount(pred, minlength=scores.shape[1])
    picks: list[int] = []
    why: list[str] = []
    for c, q in enumerate(quotas(sizes, budget).tolist()):
        members = np.flatnonzero(pred == c)
        lab = kmeans(x[members], q, seed)[0] if q > 1 else np.zeros(len(members), dtype=np.int64)
        for j in range(q):
            if not (lab == j).any():
                continue
            rows = members[lab == j]
            row, what = _pick(x, rows, margin[:, c], pick)
            where = f"sub-cluster {j + 1} of {q} ({len(rows)} points) of " if q > 1 else ""
            picks.append(row)
            why.append(f"{what} of {where}the {sizes[c]} examples the label-name prompts call '{names[c]}' "
                       f"(margin {margin[row, c]:+.3f})")
    _fill(x, picks, why, budget)
    return Selection(np.array(picks, dtype=np.int64), why)


#: Class-aware methods by name: ``fn(X, scores, budget, seed, class_names) -> Selection``.
CLASS_METHODS: dict[str, Callable[[np.ndarray, np.ndarray, int, int, list[str] | None], Selection]] = {
    f"prompt_{p}": functools.partial(class_aware, pick=p)
    for p in PICKS}
#: The class-aware method of ``suggest-labels --classes`` (chosen by benchmarks/suggest.py on validation splits).
DEFAULT_CLASS_METHOD = "prompt_confident"


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
    "CLASS_METHODS", "DEFAULT_CLASS_METHOD", "DEFAULT_METHOD", "METHODS", "Selection", "ball_graph",
    "check_budget", "choose_delta", "class_aware", "kcenter", "kmeans", "kmeans_closest", "nearest_other",
    "normalise", "pairwise_distances", "probcover", "prompt_scores", "purity", "quotas", "random_draw", "select",
    "typicality", "typiclust",
]
