"""benchmarks/augment.py: the paired statistics, the decision rule, its quick mode, and the recipes it decides."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from transferkit.strategies.recipes import recipe_for

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
augment = pytest.importorskip("augment")


def test_paired_difference_and_its_standard_error() -> None:
    d = augment.paired([0.02, 0.04, 0.03])
    assert d["mean"] == pytest.approx(0.03) and d["se"] == pytest.approx(0.01 / math.sqrt(3))


def test_on_only_when_the_pooled_difference_clears_two_standard_errors() -> None:
    def row(strategy: str, diffs: list[float]) -> dict[str, object]:
        return {"backbone": "b", "strategy": strategy, "difference": augment.paired(diffs)}

    rows = [row("up", [0.02, 0.03, 0.025]), row("up", [0.02, 0.01, 0.03]), row("noisy", [0.05, -0.04, 0.01]),
            row("down", [-0.02, -0.03, -0.01])]
    got = {d["strategy"]: d["default"] for d in augment.decide(rows)}
    assert got == {"up": "on", "noisy": "off", "down": "off"}


def test_quick_mode_runs_and_writes_the_doc(tmp_path: Path) -> None:
    assert augment.main(["--quick", "--work", str(tmp_path), "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "augment.json").read_text())
    row = data["rows"][0]
    assert row["augmented_phases"] == ["finetune"] and {"off", "on"} <= {k.split("|")[4] for k in data["runs"]}
    assert "| `small_cnn` | `lp_ft` |" in (tmp_path / "AUGMENT.md").read_text()


def test_the_recipes_follow_the_published_decisions() -> None:
    """Every measured (backbone, strategy) pair defaults to what docs/augment.json decided, and no unmeasured
    pair turns augmentation on."""
    decisions = json.loads((ROOT / "docs" / "augment.json").read_text())["decisions"]
    measured = {(d["backbone"], d["strategy"]): d["default"] for d in decisions}
    for (backbone, strategy), default in measured.items():
        rec = recipe_for(backbone, strategy)
        setting = rec.settings.get("augment", "off") if rec else "off"
        assert ("on" if setting == "affine" else setting) == default, (backbone, strategy)
        if rec is not None and "augment" in rec.settings:
            assert "docs/AUGMENT.md" in rec.evidence
    from transferkit.strategies.recipes import RECIPES

    on = {pair for pair, rec in RECIPES.items() if rec.settings.get("augment") in ("on", "affine")}
    assert on <= {pair for pair, default in measured.items() if default == "on"}
