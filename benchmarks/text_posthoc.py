"""Rows of benchmarks/text.py computed from a trained cell's saved logits, without training: output-space
ensembles with the zero-shot model, EM prior correction, the zero-shot prior, and other points of a ``zs_init``
cell's WiSE-FT path. Temperatures and weights come from the validation draw only; a test set's labels are read
only to score."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from text_rows import DOMAINS, EM, ENSEMBLE, POSTHOC_BASES, WISE_ROWS, ZSP

from transferkit.strategies.text_prior import ALPHAS, select_alpha
from transferkit.zeroshot import (
    balanced_accuracy,
    em_label_shift,
    fit_temperature,
    log_softmax_np,
    output_ensemble,
    report,
)


def posthoc(path: Path) -> dict[str, Any]:
    """Post-hoc methods from one cell's saved logits (no training; nothing of a test set's labels is read
    except to score). Temperatures and the ensemble weight come from the source validation draw only."""
    z = np.load(path)
    y_val = z["val_y"]
    t_m, t_z = fit_temperature(z["val"], y_val), fit_temperature(z["zs_val"], y_val)

    def lm(k: str) -> np.ndarray:  # the cell's model, temperature-scaled log-probabilities
        return log_softmax_np(z[k], t_m)

    def lz(k: str) -> np.ndarray:  # the zero-shot model's
        return log_softmax_np(z[f"zs_{k}"], t_z)

    val_acc = {f"{a:.1f}": float((output_ensemble(lz("val"), lm("val"), a).argmax(1) == y_val).mean()) for a in ALPHAS}
    alpha = select_alpha(val_acc, len(y_val), "best")
    alpha_1se = select_alpha(val_acc, len(y_val), "1se")  # the smallest weight within one SE: toward zero-shot
    prior = np.bincount(y_val, minlength=2) / len(y_val)  # the k-shot draws are class-balanced
    out: dict[str, Any] = {"": {}, f" {ENSEMBLE}": {"alpha": alpha}, f" {ENSEMBLE} (1se)": {"alpha": alpha_1se},
                           f" {EM}": {}, f" {ENSEMBLE} {EM}": {},
                           f" {ZSP}": {}}
    for d in DOMAINS:
        y = z[f"{d}_y"]
        ens = output_ensemble(lz(d), lm(d), alpha)
        preds = {f" {ENSEMBLE}": ens.argmax(1),
                 f" {ENSEMBLE} (1se)": output_ensemble(lz(d), lm(d), alpha_1se).argmax(1),
                 f" {EM}": em_label_shift(np.exp(lm(d)), prior)[1].argmax(1),
                 f" {ENSEMBLE} {EM}": em_label_shift(np.exp(ens), prior)[1].argmax(1),
                 f" {ZSP}": (lm(d) + np.log(np.exp(lz(d)).mean(0) / prior)).argmax(1)}
        for name, pred in preds.items():
            m = report(y, pred, 2, d)
            m.pop("confusion")
            out[name][d] = m
        out[f" {EM}"].setdefault("em_prior", {})[d] = float(em_label_shift(np.exp(lm(d)), prior)[0][1])
    del out[""]
    return out


def wise_path_rows(path: Path, cell: dict[str, Any]) -> dict[str, Any]:
    """Other points of a ``zs_init`` cell's WiSE-FT path, from its saved test logits at every alpha: the
    alpha the ``1se`` rule picks from the *same* recorded validation accuracies (what ``wise_rule=1se`` would
    have returned: the rule does not change training) and WiSE-FT's a-priori ``alpha = 0.5``."""
    z = np.load(path)
    if "a0.0_movies" not in z:
        return {}
    scores = cell["info"]["zs_init"]["val_acc_by_alpha"]
    out: dict[str, Any] = {}
    for label, rule in WISE_ROWS.items():
        a = select_alpha(scores, len(z["val_y"]), rule) if isinstance(rule, str) else float(rule)
        row: dict[str, Any] = {"alpha": a}
        for d in DOMAINS:
            m = report(z[f"{d}_y"], z[f"a{a:.1f}_{d}"].argmax(1), 2, d)
            m.pop("confusion")
            row[d] = m
        out[f" {label}"] = row
    return out


def derived_cells(strategy: str, path: Path, cell: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Rows computed from one trained cell's saved logits (no training), by row name."""
    rows = posthoc(path) if strategy in POSTHOC_BASES else {}
    if cell is not None and strategy.startswith("zs_init"):
        rows.update(wise_path_rows(path, cell))
        z = np.load(path)
        if "a0.0_movies" in z:  # the test accuracies along the path, for the trade-off table (never to choose)
            cell["tweets_positive_rate"] = float(z["tweets_y"].mean())
            cell["wise_path"] = {f"{a:.1f}": {
                "movies": float((z[f"a{a:.1f}_movies"].argmax(1) == z["movies_y"]).mean()),
                "tweets": float((z[f"a{a:.1f}_tweets"].argmax(1) == z["tweets_y"]).mean()),
                "tweets_balanced": balanced_accuracy(np.bincount(2 * z["tweets_y"] + z[f"a{a:.1f}_tweets"].argmax(1),
                                                                 minlength=4).reshape(2, 2)),
                "tweets_positive_rate": float(z[f"a{a:.1f}_tweets"].argmax(1).mean())} for a in ALPHAS}
    return {strategy + suffix: {"train_seconds": 0.0, **c} for suffix, c in rows.items()}


__all__ = ["derived_cells", "posthoc", "wise_path_rows"]
