"""Class-aware cold-start selection: label-name prompt scores spread the picks over the predicted classes.

With the class names known and a text source (prompts as in :mod:`transferkit.zeroshot`), centred prompt scores
(:func:`prompt_scores`) predict a class per example; the budget is shared evenly over the predicted classes
(:func:`quotas`) and each (sub)cluster gives one example (:func:`class_aware`). :data:`CLASS_METHODS` maps the
names ``prompt_<pick>`` to ``fn(X, scores, budget, seed, class_names) -> Selection``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from transferkit.errors import ConfigError
from transferkit.suggest.geometry import Selection, check_budget, fill_farthest, kmeans, normalise, typicality


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
    fill_farthest(x, picks, why, budget)
    return Selection(np.array(picks, dtype=np.int64), why)


#: Class-aware methods by name: ``fn(X, scores, budget, seed, class_names) -> Selection``.
CLASS_METHODS: dict[str, Callable[[np.ndarray, np.ndarray, int, int, list[str] | None], Selection]] = {
    f"prompt_{p}": functools.partial(class_aware, pick=p)
    for p in PICKS}
#: The class-aware method of ``suggest-labels --classes`` (chosen by benchmarks/suggest.py on validation splits).
DEFAULT_CLASS_METHOD = "prompt_confident"


__all__ = ["CLASS_METHODS", "CONFIDENT_SHARE", "DEFAULT_CLASS_METHOD", "PICKS", "class_aware", "prompt_scores",
           "quotas"]
