"""LEEP: the log expected empirical prediction of the source head on the target labels."""

from __future__ import annotations

import numpy as np

from transferkit.transferability.base import check_probs, one_hot


def leep(probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP of a source classifier on target data (higher is better, at most 0).

    Nguyen, Hassner, Seeger & Archambeau, "LEEP: A New Measure to Evaluate Transferability of
    Learned Representations", ICML 2020. With ``theta(x_i)`` the source model's class
    probabilities (source classes ``z``) and target labels ``y_i``:

        P(y, z) = 1/N sum_{i: y_i = y} theta(x_i)_z          (empirical joint)
        P(y | z) = P(y, z) / sum_y' P(y', z)                 (empirical conditional)
        LEEP = 1/N sum_i log( sum_z P(y_i | z) theta(x_i)_z )

    i.e. the average log-likelihood of the "expected empirical predictor" that re-labels source
    classes as target classes.

    Shape:
        - probs: ``[N, C_s]`` source-class probabilities (rows sum to 1)
        - labels: ``[N]`` integers (at least 2 classes)
        - returns: scalar (nats)
    """
    p, y = check_probs(probs, labels)
    n = len(y)
    joint = one_hot(y).T @ p / n  # [C_t, C_s]
    marginal = joint.sum(axis=0, keepdims=True)  # [1, C_s]
    cond = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    eep = (p * cond[y]).sum(axis=1)  # [N]: sum_z theta_z P(y_i | z)
    return float(np.mean(np.log(eep)))
