"""LEEP and NCE on hand-computed contingency tables, plus an sklearn cross-check for NCE."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from transferkit.transferability import leep, nce

# 4 target samples, 2 source classes: theta(x_i) rows and target labels
THETA = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
Y = np.array([0, 0, 1, 1])


def test_leep_hand_computed() -> None:
    # P(y, z) = 1/4 [[2, 0], [0.5, 1.5]];  P(z) = [0.625, 0.375]
    # P(y | z0) = [0.8, 0.2], P(y | z1) = [0, 1]
    # EEP: x1, x2 -> 0.8;  x3 -> 1.0;  x4 -> 0.5 * 0.2 + 0.5 * 1 = 0.6
    expected = (2 * math.log(0.8) + math.log(1.0) + math.log(0.6)) / 4
    assert leep(THETA, Y) == pytest.approx(expected, rel=1e-12)


def test_leep_is_zero_for_a_source_head_that_already_predicts_the_target() -> None:
    y = np.array([0, 1, 2, 1, 0, 2])
    assert leep(np.eye(3)[y], y) == pytest.approx(0.0, abs=1e-12)


def test_leep_of_uniform_probabilities_is_the_label_log_prior() -> None:
    """theta carries no information: EEP(y_i) = P(y_i), so LEEP = sum_y P(y) log P(y)."""
    y = np.array([0, 0, 0, 1])
    assert leep(np.full((4, 5), 0.2), y) == pytest.approx(0.75 * math.log(0.75) + 0.25 * math.log(0.25))


def test_leep_ignores_the_order_of_source_classes() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7), size=40)
    y = rng.integers(0, 3, 40)
    assert leep(p[:, rng.permutation(7)], y) == pytest.approx(leep(p, y), rel=1e-12)


def test_nce_hand_computed() -> None:
    theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])  # z = [0, 0, 1, 0]
    # joint counts: (y0, z0) = 2, (y1, z1) = 1, (y1, z0) = 1;  P(y | z0) = [2/3, 1/3], P(y | z1) = [0, 1]
    expected = 0.5 * math.log(2 / 3) + 0.25 * math.log(1 / 3) + 0.25 * math.log(1.0)
    assert nce(theta, Y) == pytest.approx(expected, rel=1e-12)


def test_nce_equals_mutual_information_minus_label_entropy(make_probs: Callable[..., np.ndarray]) -> None:
    """-H(Y|Z) = I(Y; Z) - H(Y), with sklearn's mutual information (natural log)."""
    y = np.random.default_rng(1).integers(0, 4, 200)
    p = make_probs(y, 6, informative=True, seed=2)
    z = p.argmax(axis=1)
    prior = np.bincount(y) / len(y)
    expected = mutual_info_score(y, z) + float(np.sum(prior * np.log(prior)))
    assert nce(p, y) == pytest.approx(expected, rel=1e-10)


def test_nce_is_zero_when_source_labels_determine_target_labels() -> None:
    z = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    y = z // 2  # many-to-one is still deterministic
    assert nce(np.eye(4)[z], y) == pytest.approx(0.0, abs=1e-12)
