"""Cross-validated accuracy of a logistic-regression probe on frozen features (a cheap proxy)."""

from __future__ import annotations

import warnings

import numpy as np

from transferkit.errors import ConfigError, DataError
from transferkit.transferability.base import check_features, check_positive_int


def linear_probe_cv(features: np.ndarray, labels: np.ndarray, *, folds: int = 3, max_iter: int = 100,
                    c: float = 1.0, seed: int = 0) -> float:
    """Mean stratified ``folds``-fold accuracy of L2-regularised logistic regression (higher is better).

    The linear-evaluation protocol (e.g. Kornblith, Shlens & Le, "Do Better ImageNet Models
    Transfer Better?", CVPR 2019), cut down to a proxy: features standardised on each training
    fold, multinomial logistic regression with inverse regularisation ``c`` fitted by L-BFGS for
    at most ``max_iter`` iterations (unconverged fits are accepted silently), accuracy averaged
    over ``min(folds, smallest class size)`` stratified folds:

        score = 1/K sum_k acc( LR_k fitted on the other folds, fold k )

    Shape:
        - features: ``[N, D]``
        - labels: ``[N]`` integers (at least 2 classes, each with at least 2 samples)
        - returns: scalar accuracy in [0, 1]
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f, y = check_features(features, labels)
    folds = check_positive_int("folds", folds, minimum=2)
    max_iter = check_positive_int("max_iter", max_iter)
    if not c > 0:
        raise ConfigError(f"linear_probe_cv c must be positive, got {c!r}")
    counts = np.bincount(y)
    smallest = int(counts.min())
    if smallest < 2:
        label = np.unique(np.asarray(labels))[int(counts.argmin())]
        raise DataError(f"linear_probe_cv needs at least 2 samples per class; class {label} has 1")
    cv = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return float(np.mean(cross_val_score(probe, f, y, cv=cv, scoring="accuracy")))
