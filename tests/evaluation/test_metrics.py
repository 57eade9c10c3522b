"""Classification metrics against scikit-learn over many random label sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from transferkit.evaluation.metrics import accuracy, classification_report, confusion_matrix, macro_f1


def _cases() -> list[tuple[np.ndarray, np.ndarray, int]]:
    rng = np.random.default_rng(0)
    cases = []
    for i in range(30):
        k = int(rng.integers(2, 12))
        n = int(rng.integers(1, 80))
        y = rng.integers(0, k, n)
        if i % 3 == 0:  # predictions that never use some classes
            p = rng.integers(0, max(1, k // 2), n)
        elif i % 3 == 1:  # mostly right, some noise
            p = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n))
        else:
            p = rng.integers(0, k, n)
        cases.append((y, p, k))
    # classes absent from the truth, only predicted; classes absent from both
    cases.append((np.array([0, 0, 1, 1]), np.array([0, 2, 1, 3]), 6))
    cases.append((np.array([3, 3, 3]), np.array([3, 3, 3]), 5))
    cases.append((np.array([0, 1, 2]), np.array([2, 0, 1]), 3))
    return cases


CASES = _cases()


@pytest.mark.parametrize(("y", "p", "k"), CASES)
def test_against_sklearn(y: np.ndarray, p: np.ndarray, k: int) -> None:
    assert accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
    np.testing.assert_array_equal(confusion_matrix(y, p, k), skm.confusion_matrix(y, p, labels=list(range(k))))
    # scikit-learn's macro average runs over the labels present in y_true or y_pred
    assert macro_f1(y, p, k) == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0), abs=1e-12)


def test_classes_absent_from_predictions_count_as_zero() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 0, 1, 1, 1, 1])  # class 2 never predicted
    # F1: class 0 = 1, class 1 = 2*2/(4+2) = 2/3, class 2 = 0
    assert macro_f1(y, p, 3) == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_report_fields() -> None:
    y, p, k = CASES[4]
    rep = classification_report(y, p, k)
    assert rep["n"] == len(y)
    assert rep["accuracy"] == accuracy(y, p)
    assert rep["macro_f1"] == macro_f1(y, p, k)
    assert np.array(rep["confusion"]).shape == (k, k)
    assert np.array(rep["confusion"]).sum() == len(y)


def test_empty_inputs_are_nan() -> None:
    e = np.array([], dtype=np.int64)
    assert math.isnan(accuracy(e, e))
    assert math.isnan(macro_f1(e, e, 3))
