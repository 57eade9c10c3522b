"""benchmarks/auto_suite.py: the runs pass augment="off" and the page says why; --render-only (no training)."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
auto_suite = pytest.importorskip("auto_suite")
recipe_notes = pytest.importorskip("recipe_notes")


def test_every_run_passes_the_plans_augment_off() -> None:
    assert auto_suite.FULL.augment == "off" and auto_suite.QUICK.augment == "off"
    assert inspect.signature(auto_suite.one_run).parameters["augment"].default == "off"


def test_note_follows_the_recipe_table() -> None:
    assert recipe_notes.augmented_by_default("small_cnn", ["scratch", "lp_ft", "full", "l2sp"]) == ["lp_ft", "full"]
    assert recipe_notes.augment_off_note("efficientnet_lite0", ["lp_ft", "full"]) == ""
    assert recipe_notes.augment_off_note("audio_cnn", ["lp_ft"]) == ""
    note = recipe_notes.augment_off_note("small_cnn", ["full", "lp_ft"], ["auto"])
    assert "`full` and `lp_ft` (and `auto`" in note and "docs/AUGMENT.md" in note


def test_render_only_adds_the_sentence_and_keeps_the_json(tmp_path: Path) -> None:
    published = ROOT / "docs" / "auto_suite.json"
    if not published.exists():
        pytest.skip("no published auto_suite.json")
    (tmp_path / "auto_suite.json").write_bytes(published.read_bytes())
    assert auto_suite.main(["--render-only", "--out", str(tmp_path)]) == 0
    page = (tmp_path / "AUTO_SUITE.md").read_text()
    assert 'measured without augmentation (`augment="off"`' in page and "(and `auto`" in page
    assert (tmp_path / "auto_suite.json").read_bytes() == published.read_bytes()
    doc = json.loads(published.read_text())
    doc["meta"]["plan"]["augment"] = "on"  # a suite run with augmentation has nothing to explain
    assert auto_suite.augment_sentence(doc) == ""
