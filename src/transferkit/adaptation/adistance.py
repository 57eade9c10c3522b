"""Proxy A-distance between two feature sets (Ben-David et al., 2007; Ganin et al., 2016)."""

from __future__ import annotations

import numpy as np


def proxy_a_distance(source: np.ndarray, target: np.ndarray, *, max_samples: int = 1000, folds: int = 5,
                     C: float = 0.1, seed: int = 0) -> float:
    """``PAD = 2 (1 - 2 err)`` where ``err`` is the cross-validated error of a linear domain classifier.

    A logistic regression (standardised features, inverse regularisation ``C``) separates source from
    target; ``err`` is its held-out error over ``folds`` stratified folds, capped at 0.5 so the
    result is in ``[0, 2]``: 0 = indistinguishable domains, 2 = perfectly separable. Each domain is
    subsampled (seeded) to at most ``max_samples`` rows and to equal sizes.

    Shape: ``source [Ns, D]``, ``target [Nt, D]`` -> scalar.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(source), len(target), max_samples)
    if n < folds:
        raise ValueError(f"proxy A-distance needs at least {folds} examples per domain, got {n}")
    s = source[rng.choice(len(source), n, replace=False)]
    t = target[rng.choice(len(target), n, replace=False)]
    x = np.concatenate([s, t]).astype(np.float64)
    y = np.r_[np.zeros(n), np.ones(n)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
    acc = cross_val_score(clf, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed)).mean()
    err = min(1.0 - float(acc), 0.5)
    return 2.0 * (1.0 - 2.0 * err)
