"""``transferkit report`` on one pretrain and one transfer run per modality (image, text, audio,
tabular), each small and on real data: the page renders, the layer views (weight change, CKA) are
finite for every backbone group, and saliency is drawn (image maps, text token scores) or its
absence explained on the page (audio, tabular).

Before the fix a text run crashed the report (``RuntimeError: Sizes of tensors must match`` in
``evaluation/cka.py``): each text batch is trimmed to its longest text, so the flattened token
states of two batches had different widths.
"""

from __future__ import annotations

import csv
import html
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.data import ArrayDataset, load_dataset
from transferkit.evaluation.saliency import SaliencyExamples, TextSaliency
from transferkit.report.analysis import analyse_runs
from transferkit.report.html import render_html

TRAIN = {"precision": "fp32", "progress": "off", "batch_size": 32}
IMG = re.compile(r'<img src="data:image/png;base64,')


def _per_class(ds: ArrayDataset, n: int, start: int = 0) -> ArrayDataset:
    y = ds.require_labels()
    idx = np.concatenate([np.flatnonzero(y == c)[start : start + n] for c in range(ds.num_classes)])
    return ds.subset(np.sort(idx))


def _text_csv(path: Path, ds: ArrayDataset) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([str(t), ds.class_names[c]] for t, c in zip(ds.x, ds.require_labels(), strict=True))
    return path


def _image(root: Path) -> tuple[Path, Path]:
    src, tgt = root / "src", root / "tgt"
    transferkit.pretrain("mnist5k", "small_cnn", src, seed=0, model_kwargs={"width": 8, "hidden": 32}, epochs=1,
                         **TRAIN)
    transferkit.transfer(src, "digits8", strategy="lp_ft", shots=5, out=tgt, epochs=1, **TRAIN)
    return src, tgt


def _text(root: Path) -> tuple[Path, Path]:
    """The README's runs/txt in small: MiniLM + zs_init on real VADER movie snippets, and a MiniLM
    linear probe trained on real tweets as the "pretrain"-side run (a text model with a head)."""
    movies = _text_csv(root / "movies.csv", _per_class(load_dataset("vader-movies"), 60))  # 36 test texts: 2 chunks
    tweets = _text_csv(root / "tweets.csv", _per_class(load_dataset("vader-tweets"), 60))
    src, tgt = root / "tweets_probe", root / "txt"
    transferkit.transfer("minilm", str(tweets), strategy="linear_probe", shots=8, out=src, epochs=1, **TRAIN)
    transferkit.transfer("minilm", str(movies), strategy="zs_init", shots=8, out=tgt, epochs=1, **TRAIN)
    return src, tgt


def _audio(root: Path) -> tuple[Path, Path]:
    src, tgt = root / "spoken_src", root / "spk"
    transferkit.pretrain("spoken-digits:voices=A,per_voice=2", "audio_cnn", src, seed=0, epochs=1, **TRAIN)
    transferkit.transfer(src, "spoken-digits:voices=B,per_voice=2", strategy="lp_ft", shots=2, out=tgt, epochs=1,
                         **TRAIN)
    return src, tgt


def _wine_csv(path: Path, rows: np.ndarray, x: np.ndarray, y: np.ndarray, columns: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*columns, "cultivar"])
        w.writerows([*map(float, x[i]), f"cultivar{int(y[i])}"] for i in rows)
    return path


def _tabular(root: Path) -> tuple[Path, Path]:
    """sklearn's wine table split into two populations by alcohol (low -> high): same columns, shifted;
    the label in a column named ``cultivar`` (the report reads the data with the run's columns)."""
    from sklearn.datasets import load_wine

    wine = load_wine()
    x, y, cols = wine.data, wine.target, [c.replace("/", "_") for c in wine.feature_names]
    low = x[:, 0] <= np.median(x[:, 0])
    src_csv = _wine_csv(root / "wine_low.csv", np.flatnonzero(low), x, y, cols)
    tgt_csv = _wine_csv(root / "wine_high.csv", np.flatnonzero(~low), x, y, cols)
    src, tgt = root / "wine_src", root / "wine_tgt"
    transferkit.pretrain(str(src_csv), "mlp", src, seed=0, epochs=5, label_column="cultivar", **TRAIN)
    transferkit.transfer(src, str(tgt_csv), strategy="lp_ft", out=tgt, epochs=1, label_column="cultivar",
                         **TRAIN)  # all rows: one class has 2 training rows
    return src, tgt


BUILD = {"image": _image, "text": _text, "audio": _audio, "tabular": _tabular}


@pytest.mark.parametrize("modality", [pytest.param(m, marks=pytest.mark.slow) if m == "text" else m for m in BUILD])
def test_report_renders_for_every_modality(modality: str, tmp_path: Path) -> None:
    src, tgt = BUILD[modality](tmp_path)
    source_view, view = analyse_runs([src, tgt], max_samples=48, n_saliency=2)
    assert view.modality == modality
    assert view.change is not None and view.cka is not None, view.notes
    backbone = [g for g in view.cka if g != "head"]
    assert backbone and all(math.isfinite(view.cka[g]) and 0 <= view.cka[g] <= 1 + 1e-9 for g in backbone), view.cka
    groups = dict(transferkit.load_run(tgt).model.layer_groups())
    weighted = [g for g in backbone if any(True for _ in groups[g].parameters())]  # a log-mel front end has none
    assert weighted and all(math.isfinite(view.change[g]) for g in weighted), view.change
    with warnings.catch_warnings():  # e.g. a layout that collapses ("constrained_layout not applied")
        warnings.filterwarnings("error", category=UserWarning, module=r"transferkit\.report")
        page = render_html([source_view, view])
    for sid in ("summary", "curves", "confusion", "layers", "saliency", "notes"):
        assert f'<section id="{sid}">' in page, sid
    assert len(IMG.findall(page)) >= 5  # 2 training curves, 2 confusions, layers (+ saliency for images)
    saliency = page[page.index('<section id="saliency">'):page.index('<section id="notes">')]
    if modality == "image":
        assert isinstance(view.saliency, SaliencyExamples) and len(view.saliency) >= 1 and IMG.search(saliency)
    elif modality == "text":  # gradient x input per token, the texts shown with their tokens shaded
        ex = view.saliency
        assert isinstance(ex, TextSaliency) and 1 <= len(ex) <= 4 and view.saliency_note is None
        for toks, sc in zip(ex.tokens, ex.scores, strict=True):
            assert toks[0] == "[CLS]" and toks[-1] == "[SEP]" and len(toks) == len(sc)
            assert sc.min() >= 0 and sc.max() == pytest.approx(1.0)
        assert saliency.count("<span style=\"background:rgba(214,39,40,") >= sum(len(t) - 2 for t in ex.tokens)
    else:
        assert view.saliency_note is not None and modality in view.saliency_note
        assert f"{view.label}: {view.saliency_note}" in html.unescape(saliency)
