"""Classification metrics as pure NumPy functions (tested against scikit-learn)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class ``i`` predicted as ``j``. Shape ``[K, K]``."""
    c = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(c, (y_true, y_pred), 1)
    return c


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean over the classes present in ``y_true`` or ``y_pred`` of
    ``F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k)`` (scikit-learn's ``average="macro"``)."""
    c = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(c).astype(float)
    fp = c.sum(0) - tp
    fn = c.sum(1) - tp
    present = (c.sum(0) + c.sum(1)) > 0
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[present].mean()) if present.any() else float("nan")


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, object]:
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, num_classes),
        "n": len(y_true),
        "confusion": confusion_matrix(y_true, y_pred, num_classes).tolist(),
    }
