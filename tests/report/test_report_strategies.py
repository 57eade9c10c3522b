"""The report on a run of every registered strategy (driven by ``STRATEGIES``: a new strategy is
covered automatically): tiny image runs (a 1-epoch small_cnn source on mnist5k, 5-shot digits8, one
epoch), each analysed with its layer views and saliency, then all of them on one page."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import transferkit
from transferkit.report.analysis import RunView, analyse_run
from transferkit.report.html import render_html
from transferkit.strategies import STRATEGIES

TRAIN = {"precision": "fp32", "progress": "off", "batch_size": 32}
OPTIONS = {"auto": {"budget": "0"}}  # rules only: one trial, like the README's --budget 0


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("strategies") / "src"
    transferkit.pretrain("mnist5k", "small_cnn", out, seed=0, model_kwargs={"width": 8, "hidden": 32}, epochs=1,
                         **TRAIN)
    return out


@pytest.fixture(scope="module")
def views() -> dict[str, RunView]:
    return {}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_report_views_of_every_strategy(name: str, source: Path, views: dict[str, RunView]) -> None:
    out = source.parent / name
    transferkit.transfer(source, "digits8", strategy=name, shots=5, out=out, epochs=1, options=OPTIONS.get(name),
                         **TRAIN)
    view = analyse_run(out, max_samples=32, n_saliency=1)
    assert view.kind == "transfer" and view.strategy == name and view.accuracy is not None
    assert view.change is not None and view.cka is not None, view.notes
    for g in ("conv1", "conv2", "fc"):
        assert math.isfinite(view.cka[g]) and math.isfinite(view.change[g]), (g, view.cka, view.change)
    if name == "linear_probe":  # a frozen backbone: unmoved, the same representations
        assert view.change["conv1"] == 0.0 and view.cka["fc"] == pytest.approx(1.0, abs=1e-6)
    assert view.saliency is not None and len(view.saliency) >= 1
    views[name] = view


def test_one_page_compares_every_strategy(source: Path, views: dict[str, RunView]) -> None:
    if set(views) != set(STRATEGIES):
        pytest.skip("needs every strategy's run from test_report_views_of_every_strategy")
    page = render_html([analyse_run(source, max_samples=32, n_saliency=0), *views.values()])
    assert '<section id="comparison">' in page and '<section id="layers">' in page
    for name in STRATEGIES:
        assert f"<td>{name}</td>" in page


def test_report_views_of_an_adapt_run(source: Path) -> None:
    """An ``adapt`` run (no target labels in training) gets its layer views against its source and
    saliency on its held-out labelled evaluation data."""
    out = source.parent / "da"
    transferkit.adapt(source, "mnist5k", "digits8", method="dann", out=out, target_labels_for_eval="digits8",
                      max_source=300, max_target=300, epochs=1, **TRAIN)
    view = analyse_run(out, max_samples=32, n_saliency=1)
    assert view.kind == "adapt" and view.layer_note is None, view.notes
    assert view.change is not None and view.cka is not None
    assert all(math.isfinite(view.cka[g]) for g in ("conv1", "conv2", "fc"))
    assert view.saliency is not None and len(view.saliency) >= 1
    assert '<section id="layers">' in render_html([view])
