"""The report's plots as PNG bytes, drawn with matplotlib's Agg renderer (no display, no pyplot state).

Every function takes plain numbers and returns PNG bytes; :mod:`transferkit.report.html` inlines
them as base64 ``data:`` URLs so the report needs nothing at view time.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from transferkit.evaluation.saliency import SaliencyExamples

DPI = 100
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def training_curves(phases: Sequence[dict[str, Any]], title: str) -> bytes:
    """Losses and validation accuracy per epoch, the phases one after another (dashed boundaries).

    ``phases``: ``history.json`` entries, each ``{"name", "history": [{"epoch", "train_loss",
    "val_loss", "val_acc"}, ...]}``.
    """
    fig = _figure(5.7, 2.7)
    ax_loss, ax_acc = fig.subplots(1, 2)
    offset = 0
    for i, ph in enumerate(phases):
        rows = ph.get("history") or []
        xs = np.arange(offset, offset + len(rows)) + 1
        color = COLORS[i % len(COLORS)]
        for key, style in (("train_loss", "-o"), ("val_loss", "--s")):
            ys = [r.get(key, float("nan")) for r in rows]
            ax_loss.plot(xs, ys, style, ms=2.5, color=color, label=f"{ph.get('name', i)} {key.replace('_', ' ')}")
        ax_acc.plot(xs, [r.get("val_acc", float("nan")) for r in rows], "-o", ms=2.5, color=color,
                    label=str(ph.get("name", i)))
        if offset:
            for ax in (ax_loss, ax_acc):
                ax.axvline(offset + 0.5, color="#999999", ls=":", lw=1)
        offset += len(rows)
    ax_loss.set(title="loss", xlabel="epoch (all phases)")
    ax_acc.set(title="validation accuracy", xlabel="epoch (all phases)", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def confusion(matrix: np.ndarray, class_names: Sequence[str], title: str) -> bytes:
    """Confusion matrix (rows: true class, columns: predicted), coloured by row-normalised rate."""
    k = len(matrix)
    size = min(6.0, 2.0 + 0.26 * k)
    fig = _figure(size + 0.9, size)
    ax = fig.subplots()
    rows = matrix.sum(1, keepdims=True)
    rate = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    im = ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rate[i, j] > 0.5 else "black")
    ticks = np.arange(k)
    names = [str(c)[:12] for c in class_names] if len(class_names) == k else [str(t) for t in ticks]
    if k <= 30:
        ax.set_xticks(ticks, names, rotation=90 if max(map(len, names)) > 2 else 0, fontsize=7)
        ax.set_yticks(ticks, names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of true class")
    return _png(fig)


def strategy_bars(rows: Sequence[tuple[str, float, float, int]], title: str = "target test accuracy") -> bytes:
    """One bar per (strategy, shots) group: ``(label, mean, std, n_runs)``, error bar = std."""
    fig = _figure(max(5.0, 0.7 * len(rows) + 2), 3.4)
    ax = fig.subplots()
    xs = np.arange(len(rows))
    means = [r[1] for r in rows]
    ax.bar(xs, means, yerr=[r[2] for r in rows], capsize=3,
           color=[COLORS[i % len(COLORS)] for i in range(len(rows))])
    for x, (_, m, _, n) in zip(xs.tolist(), rows, strict=True):
        ax.text(x, m + 0.01, f"{100 * m:.1f}%" + (f"\n(n={n})" if n > 1 else ""), ha="center", va="bottom", fontsize=7)
    tilt = len(rows) > 4
    ax.set_xticks(xs, [r[0] for r in rows], rotation=30 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
    ax.set(ylim=(0, 1.1), ylabel="accuracy", title=title)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def accuracy_vs_shots(series: Mapping[str, Sequence[tuple[float, float, float]]]) -> bytes:
    """Target accuracy against labelled examples per class: ``{strategy: [(shots, mean, std)]}``."""
    fig = _figure(6, 3.4)
    ax = fig.subplots()
    for i, (name, pts) in enumerate(sorted(series.items())):
        pts = sorted(pts)
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                    color=COLORS[i % len(COLORS)], label=name)
    shots = sorted({p[0] for pts in series.values() for p in pts})
    if len(shots) > 1 and shots[0] > 0 and shots[-1] / shots[0] >= 8:
        ax.set_xscale("log")
    ax.set_xticks(shots, [f"{s:g}" for s in shots])
    ax.set(xlabel="shots (labelled examples per class)", ylabel="target accuracy", ylim=(0, 1.02),
           title="accuracy vs shots")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def forgetting(rows: Sequence[tuple[str, float, float]]) -> bytes:
    """Source-task accuracy before and after transfer per run: ``(label, before, after)``."""
    fig = _figure(max(5.0, 1.1 * len(rows) + 2), 3.4)
    ax = fig.subplots()
    xs = np.arange(len(rows))
    w = 0.38
    ax.bar(xs - w / 2, [r[1] for r in rows], w, color="#7f7f7f", label="source acc. before")
    ax.bar(xs + w / 2, [r[2] for r in rows], w, color="#d62728", label="source acc. after")
    for x, (_, b, a) in zip(xs, rows, strict=True):
        ax.text(x + w / 2, a + 0.01, f"{100 * (a - b):+.1f} pt", ha="center", va="bottom", fontsize=7)
    tilt = len(rows) > 3
    ax.set_xticks(xs, [r[0] for r in rows], rotation=30 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
    ax.set(ylim=(0, 1.12), ylabel="source test accuracy", title="forgetting: source accuracy before / after transfer")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8)
    return _png(fig)


def layer_views(runs: Sequence[tuple[str, dict[str, float] | None, dict[str, float] | None]]) -> bytes:
    """Grouped bars per layer group: relative weight change (left) and linear CKA to the source (right).

    ``runs``: ``(label, {group: change} or None, {group: cka} or None)``; groups in input order.
    """
    groups: list[str] = []
    for _, change, cka in runs:
        for d in (change or {}, cka or {}):
            groups += [g for g in d if g not in groups]
    fig = _figure(min(12.0, max(8.0, 0.6 * len(groups) * max(1, len(runs)) + 4)), 3.6)
    ax_w, ax_c = fig.subplots(1, 2)
    xs = np.arange(len(groups))
    w = 0.8 / max(1, len(runs))
    for i, (label, change, cka) in enumerate(runs):
        pos = xs - 0.4 + w * (i + 0.5)
        color = COLORS[i % len(COLORS)]
        for ax, values in ((ax_w, change), (ax_c, cka)):
            if values:
                vals = [values.get(g, float("nan")) for g in groups]
                ax.bar(pos, [v if _finite(v) else 0 for v in vals], w, color=color, label=label)
                for p, v in zip(pos, vals, strict=True):
                    if not _finite(v):
                        ax.text(p, 0.01, "n/a", ha="center", va="bottom", fontsize=6, rotation=90,
                                transform=ax.get_xaxis_transform())  # y in axes units: inside at any scale
    changes = [v for _, c, _ in runs for v in (c or {}).values() if _finite(v) and v > 0]
    if changes and max(changes) / min(changes) > 50:  # the head often moves 100x more than the backbone
        ax_w.set_yscale("symlog", linthresh=max(min(changes), 1e-4))
    ax_w.set(title="relative weight change ||w - w_src|| / ||w_src||", ylabel="relative L2 change")
    ax_c.set(title="linear CKA to the source (1 = same)", ylabel="CKA", ylim=(0, 1.05))
    for ax in (ax_w, ax_c):
        ax.set_xticks(xs, groups, fontsize=8)
        ax.set_xlabel("layer group (input -> output)")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = max((ax_w.get_legend_handles_labels(), ax_c.get_legend_handles_labels()), key=lambda h: len(h[1]))
    if handles:  # one legend under both panels: CKA bars reach the top, where a legend would hide them
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=8)
    return _png(fig)


def _rgb(img: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` (1 or 3 channels) or ``[H, W]`` in ``[0, 1]`` -> ``[H, W, 3]``."""
    if img.ndim == 3 and img.shape[0] == 3:
        return np.asarray(np.clip(img.transpose(1, 2, 0), 0, 1))
    grey = np.clip(img.mean(0) if img.ndim == 3 else img, 0, 1)
    return np.repeat(grey[..., None], 3, axis=2)


def saliency_grid(ex: SaliencyExamples, class_names: Sequence[str], title: str) -> bytes:
    """Each example as its image (top row) and its saliency map over it (bottom row), correct ones
    first; drawn as one mosaic on one axes (16 small axes take seconds to render)."""
    from matplotlib import colormaps

    n = len(ex)
    h, w = ex.maps.shape[1:]
    pad = max(2, h // 10)
    mosaic = np.ones((2 * h + 3 * pad, n * (w + pad) + pad, 3))
    heat = colormaps["inferno"]
    for j in range(n):
        img = _rgb(ex.images[j])
        over = 0.35 * img.mean(2, keepdims=True) + 0.65 * heat(np.clip(ex.maps[j], 0, 1))[..., :3]
        x0 = pad + j * (w + pad)
        mosaic[pad : pad + h, x0 : x0 + w] = img
        mosaic[2 * pad + h : 2 * pad + 2 * h, x0 : x0 + w] = over

    def name(i: int) -> str:
        return str(class_names[i])[:8] if 0 <= i < len(class_names) else str(i)

    width = max(4.0, 1.05 * n)
    fig = _figure(width, width * mosaic.shape[0] / mosaic.shape[1] + 0.55)
    ax = fig.subplots()
    ax.imshow(mosaic, interpolation="nearest")
    for j in range(n):
        ok = bool(ex.correct[j])
        ax.text(pad + j * (w + pad) + w / 2, -1, f"{'ok' if ok else 'WRONG'} {name(int(ex.y_true[j]))}\u2192"
                f"{name(int(ex.y_pred[j]))}", ha="center", va="bottom", fontsize=7,
                color="#2ca02c" if ok else "#d62728")
    ax.set_axis_off()
    ax.set_title(title + "  (true\u2192predicted; bottom: saliency)", fontsize=8, pad=14)
    return _png(fig)
