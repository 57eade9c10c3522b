"""Unsupervised validators: score an adapted model *without target labels* (higher is better).

They pick the checkpoint (early stopping), the method and its trade-off weight. Each is a pure
function of a :class:`ValidationData` (NumPy arrays); :func:`score` looks one up by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from transferkit.errors import ConfigError
from transferkit.registry import Registry


@dataclass
class ValidationData:
    """Model outputs a validator may read. Target: inputs only; source: labelled validation data.

    Shape: ``target_logits [Nt, C]``, ``target_features [Nt, D]``, ``source_logits [Ns, C]``,
    ``source_labels [Ns]``, ``source_features [Ns, D]``.
    """

    target_logits: np.ndarray
    target_features: np.ndarray
    source_logits: np.ndarray | None = None
    source_labels: np.ndarray | None = None
    source_features: np.ndarray | None = None


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(p + 1e-12)).sum(axis=-1)


def neg_entropy(d: ValidationData) -> float:
    """Negative mean prediction entropy on the target, ``-mean_i H(p_i)`` (Morerio et al., ICLR 2018)."""
    return float(-_entropy(_softmax(d.target_logits)).mean())


def info_max(d: ValidationData) -> float:
    """Mutual information of inputs and predictions, ``H(mean_i p_i) - mean_i H(p_i)`` (IM; SHOT).

    Unlike entropy it penalises collapse onto few classes.
    """
    p = _softmax(d.target_logits)
    return float(_entropy(p.mean(axis=0)) - _entropy(p).mean())


def soft_neighborhood_density(d: ValidationData, temperature: float = 0.05) -> float:
    """SND (Saito et al., ICCV 2021): mean entropy of each target example's soft neighbourhood.

    ``p`` L2-normalised softmax outputs; ``M = p p^T`` without its diagonal;
    ``P = softmax(M / tau)`` row-wise; ``SND = mean_i H(P_i)``. Dense clusters score high.
    """
    p = _softmax(d.target_logits)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    sim = p @ p.T / temperature
    np.fill_diagonal(sim, -np.inf)
    return float(_entropy(_softmax(sim)).mean())


def deep_embedded_validation(d: ValidationData, seed: int = 0) -> float:
    """Negative DEV risk (You et al., ICML 2019, eqs. 6-9) from labelled *source* validation data.

    A logistic domain classifier (source 0 vs target 1, cross-fitted) gives density ratios
    ``w_i = (N_s / N_t) P(t|x_i) / P(s|x_i)`` on source examples; with losses ``l_i`` (cross-entropy)
    and ``L_i = w_i l_i``: ``eta = -Cov(L, w) / Var(w)``, ``risk = mean(L) + eta mean(w) - eta``.
    """
    if d.source_logits is None or d.source_labels is None or d.source_features is None:
        raise ConfigError("validator 'dev' needs labelled source validation data")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.preprocessing import StandardScaler

    fs, ft = d.source_features, d.target_features
    x = StandardScaler().fit_transform(np.concatenate([fs, ft]).astype(np.float64))
    dom = np.r_[np.zeros(len(fs)), np.ones(len(ft))]
    prob = cross_val_predict(LogisticRegression(C=1.0, max_iter=500), x, dom, cv=3,
                             method="predict_proba")[: len(fs), 1]
    prob = np.clip(prob, 1e-4, 1 - 1e-4)
    w = (len(fs) / len(ft)) * prob / (1 - prob)
    p = _softmax(d.source_logits)
    loss = -np.log(p[np.arange(len(p)), d.source_labels] + 1e-12)
    weighted = w * loss
    var = np.var(w, ddof=1)
    eta = -np.cov(np.stack([weighted, w]))[0, 1] / var if var > 1e-12 else 0.0
    return float(-(weighted.mean() + eta * w.mean() - eta))


def batch_nuclear_norm(d: ValidationData) -> float:
    """BNM (Cui et al., CVPR 2020, eq. 9 as a score): the nuclear norm of the target prediction matrix,
    ``||P||_* / sqrt(N min(N, C))`` with ``P [N, C]`` the softmax outputs.

    The paper maximises ``||A||_* / B`` over a batch; for a fixed set of inputs this is the same ranking,
    rescaled so it lies in [0, 1]: rows of ``P`` have L2 norm <= 1, so ``||P||_* <= sqrt(rank) ||P||_F
    <= sqrt(min(N, C) N)``, reached by confident predictions spread evenly over the classes. High nuclear
    norm = confident (large Frobenius norm) *and* diverse (high rank) predictions.
    """
    p = _softmax(d.target_logits)
    n, c = p.shape
    return float(np.linalg.svd(p, compute_uv=False).sum() / np.sqrt(n * min(n, c)))


VALIDATORS: Registry[Callable[[ValidationData], float]] = Registry("validator")
VALIDATORS.add("entropy", neg_entropy, "negative mean target prediction entropy")
VALIDATORS.add("im", info_max, "information maximisation: diversity minus mean entropy on the target")
VALIDATORS.add("snd", soft_neighborhood_density, "soft neighbourhood density (Saito et al. 2021)")
VALIDATORS.add("bnm", batch_nuclear_norm, "batch nuclear-norm of the target predictions (Cui et al. 2020)")
VALIDATORS.add("dev", deep_embedded_validation, "deep embedded validation: importance-weighted source risk")


def score(name: str, data: ValidationData) -> float:
    """The validator ``name`` on ``data`` (higher is better)."""
    return VALIDATORS.get(name)(data)


def score_all(data: ValidationData, names: list[str] | None = None) -> dict[str, float]:
    """Every (or the named) validator on ``data``; those lacking inputs are left out."""
    out = {}
    for n in names or list(VALIDATORS):
        if n == "dev" and data.source_labels is None:
            continue
        out[n] = score(n, data)
    return out


#: Bootstrap resamples of the target validation inputs behind :func:`resampled`, and the share of them in which
#: one candidate must score above another for its lead to count (:func:`leads`): a one-sided 95% paired test,
#: fixed before it was measured on any choice.
RESAMPLES = 200
LEAD_CONFIDENCE = 0.95
#: validators that are functions of the target rows taken one by one (a mean over rows, or of the mean
#: prediction / the prediction matrix): a bootstrap resample of the rows is a sample of the same statistic
RESAMPLABLE = ("entropy", "im", "bnm")


def resampled(name: str, data: ValidationData, draws: int = RESAMPLES, seed: int = 0) -> np.ndarray | None:
    """The validator ``name`` on ``draws`` bootstrap resamples of the target rows of ``data`` (``[draws]``).

    The rows drawn depend only on the number of target rows and ``seed``, so two models scored on the same
    target inputs are scored on the same resamples: their scores *pair*, and :func:`leads` compares them
    resample by resample (the spread of a single validator's score is mostly the inputs', shared by both).
    ``None`` for a validator that reads labelled source data (``dev``: only target rows are resampled) and for
    ``snd``, whose neighbourhoods a resample's duplicated rows distort (a row's copy is its nearest neighbour).
    """
    if name not in RESAMPLABLE:
        return None
    fn = VALIDATORS.get(name)
    n = len(data.target_logits)
    rows = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    return np.array([fn(ValidationData(data.target_logits[r], data.target_features[r])) for r in rows])


def leads(a: np.ndarray, b: np.ndarray, confidence: float = LEAD_CONFIDENCE) -> bool:
    """Whether the paired resampled scores ``a`` lead ``b`` beyond resampling noise: ``a > b`` (or ``b`` not a
    number) in at least ``confidence`` of the resamples (see :func:`resampled`)."""
    return float(np.mean((a > b) | np.isnan(b))) >= confidence


def pick_within_noise(scores: list[float], resamples: list[np.ndarray | None], order: list[int],
                      confidence: float = LEAD_CONFIDENCE) -> tuple[int, int, list[int]]:
    """The label-free pick among candidates with validator ``scores``, their paired ``resamples`` (or ``None``)
    and their places in an ``order`` of preference: ``(pick, best, tied)`` as indices.

    ``best`` is the highest score (the first on a tie; a non-finite score ranks last). ``tied``: the
    candidates placed before ``best`` in ``order`` that it does not :func:`lead` beyond resampling noise (both
    resampled, both finite). ``pick`` is the earliest of ``tied`` in ``order``, else ``best``: a difference the
    validation inputs cannot tell apart is settled by the order (a measured prior), not by noise."""
    ranked = [s if math.isfinite(s) else -math.inf for s in scores]  # a diverged candidate ranks last
    best = max(range(len(scores)), key=lambda i: ranked[i])
    rb = resamples[best]
    tied = [i for i, r in enumerate(resamples) if order[i] < order[best] and r is not None and rb is not None
            and math.isfinite(ranked[i]) and bool(np.isfinite(r).all()) and not leads(rb, r, confidence)]
    return min([best, *tied], key=lambda i: order[i]), best, tied


#: Validators disagree when one ranks another's pick in its worse half (normalised rank > 0.5, see
#: :func:`agreement`).
DISAGREEMENT_THRESHOLD = 0.5


def agreement(scores: list[dict[str, float]], threshold: float = DISAGREEMENT_THRESHOLD) -> dict[str, Any]:
    """How far the validators agree on ``scores`` (one dict of validator -> score per candidate).

    Each validator's pick is its best candidate; ``ranks[v][w]`` is the rank (0 = best) of ``v``'s pick in
    ``w``'s order, normalised by ``n - 1`` (1 = ``w``'s worst). ``spread`` is the largest of these: 0 when
    every validator picks the same candidate, small when they only swap near-ties at the top.
    ``disagree`` is ``spread > threshold``: some validator puts another's pick in its *worse half*.
    Why half: a swap among the top candidates costs little whichever is right (the candidates near
    the top by two validators are usually close), while a pick one validator ranks below the median of
    another means they measure different things on this data, and no label-free rule says which to trust:
    then a few target labels decide.
    """
    names = list(scores[0]) if scores else []
    n = len(scores)
    order = {w: sorted(range(n), key=lambda i: -scores[i][w]) for w in names}
    picks = {v: order[v][0] for v in names}
    ranks = {v: {w: order[w].index(picks[v]) / max(1, n - 1) for w in names} for v in names}
    spread = max((r for row in ranks.values() for r in row.values()), default=0.0)
    return {"picks": picks, "all_agree": len(set(picks.values())) <= 1, "ranks": ranks, "spread": spread,
            "threshold": threshold, "disagree": spread > threshold}
