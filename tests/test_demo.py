"""``transferkit demo`` runs every registered strategy; a strategy that needs more than labels gets it."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferkit import demo
from transferkit.strategies import STRATEGIES


def test_demo_runs_strategies_that_read_unlabelled_data(source_run: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "_source", lambda out, log: source_run)  # the session's small source, not 8 epochs
    unlabelled = [e.name for e in STRATEGIES.list("*") if getattr(e.obj, "uses_unlabelled", False)]
    assert "self_train" in unlabelled
    res = demo.run_demo(tmp_path / "demo", shots=[5], pattern="self_train", log=lambda *a: None)
    (row,) = res["rows"]
    assert row["strategy"] == "self_train" and row["target_acc"] > 0.3  # digits8, 10 classes: chance is 0.1
    text = (tmp_path / "demo" / "results.md").read_text()
    assert "| self_train |" in text and "without its labels" in text
