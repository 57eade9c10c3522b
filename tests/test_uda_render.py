"""benchmarks/uda.py's pages (rendered by uda_report.py): docs/UDA.md and README's uda block are pure functions of
docs/uda.json (the published ones re-render byte for byte), and the label-free vs oracle gap is the oracle's
accuracy minus the label-free choice's, per cell and per pair, on a hand-made record."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
uda = pytest.importorskip("uda")
uda_report = pytest.importorskip("uda_report")

STORED = ROOT / "docs" / "uda.json"


def _block(readme: str) -> str:
    _, rest = readme.split(uda_report.README_START, 1)
    return uda_report.README_START + rest.split(uda_report.README_END, 1)[0] + uda_report.README_END


def _cand(acc: float, im: float, entropy: float) -> dict[str, Any]:
    return {"acc": acc, "acc_all": acc, "validators": {"im": im, "entropy": entropy}, "seconds": 1.0}


def _tiny() -> dict[str, Any]:
    """One pair, two seeds, three candidates. Seed 0: im picks A (80%) while B (90%) is best, a 10-point gap;
    seed 1: im picks B, no gap. entropy picks B on both seeds."""
    def cell(seed: int, im_a: float) -> dict[str, Any]:
        cands = {"A(x=1)": _cand(0.80, im_a, 0.0), "B": _cand(0.90, 1.0, 1.0), "C": _cand(0.85, 0.5, 0.5)}
        best_im = max(cands, key=lambda k: cands[k]["validators"]["im"])
        return {"pair": "p->q", "seed": seed, "target_before": 0.5, "target_before_all": 0.5, "candidates": cands,
                "auto_choice": best_im, "auto_acc": cands[best_im]["acc"], "auto_acc_all": cands[best_im]["acc"],
                "seconds": 3.0}

    return {"cells": {"p->q/0": cell(0, 2.0), "p->q/1": cell(1, 0.0)},
            "oracle": {"q/0": {"target": "q", "seed": 0, "acc": 0.95}, "q/1": {"target": "q", "seed": 1, "acc": 0.97}},
            "date": "2026-01-01 00:00", "machine": {"cpu_model": "test CPU", "usable_cpus": 1, "torch": "x"},
            "settings": {"validator": "im", "iterations": 7, "batch_size": 4, "pretrain_epochs": 1,
                         "model_kwargs": {}, "augment": False, "threads": 1},
            "commands": ["python benchmarks/uda.py --tiny"]}


def test_the_gap_is_the_oracle_minus_the_label_free_choice_on_a_hand_made_record() -> None:
    db = _tiny()
    c0 = uda_report.choices(db["cells"]["p->q/0"])
    assert (c0["label_free"], c0["oracle"]) == ("A(x=1)", "B")
    assert c0["gap"] == pytest.approx(0.10) and c0["lead"] == pytest.approx(0.05)
    assert uda_report.choices(db["cells"]["p->q/1"])["gap"] == 0.0
    assert uda_report.choices(db["cells"]["p->q/0"], "entropy")["label_free"] == "B"
    page = uda_report.render(db)
    # per cell: choice, its accuracy, the oracle's, both, the gap (held out), the gap on all images, the lead
    assert "| p->q | 0 | A | 80.0 | B | 90.0 | 10.0 | 10.0 | 5.0 |" in page
    assert "| p->q | 1 | B | 90.0 | B | 90.0 | 0.0 | 0.0 | 5.0 |" in page
    # per pair: mean ± standard error over the two seeds (gaps 10 and 0: 5.0 ± 5.0)
    assert "| **p->q** | **mean of 2** | A ×1, B ×1 | 85.0 ± 5.0 | B ×2 | 90.0 ± 0.0 | **5.0 ± 5.0** |" in page
    assert "as accurate as the oracle's in 1 of 2 cells" in page
    # each validator's choice with its gap; entropy is right on both seeds
    assert "| p->q | 0 | A (10.0) | B (0.0) | no |" in page
    assert "| **mean gap; as accurate as the oracle's** | | **5.0 ± 5.0**; 1 of 2 | **0.0 ± 0.0**; 2 of 2 |" in page
    block = uda_report.render_readme(db)
    assert block.startswith(uda_report.README_START) and block.endswith(uda_report.README_END)
    assert "| p->q | 2 | 50.0 ± 0.0 | **85.0 ± 5.0** | 90.0 ± 0.0 | 5.0 ± 5.0 | 96.0 ± 1.0 |" in block
    assert "test-label-selected" in block and "7-iteration budget" in block


def test_the_label_free_choice_shown_is_what_adapt_returned_in_every_stored_cell() -> None:
    db = json.loads(STORED.read_text())
    v = db["settings"]["validator"]
    for key, cell in db["cells"].items():
        c = uda_report.choices(cell, v)
        assert (c["label_free"], c["label_free_acc"]) == (cell["auto_choice"], cell["auto_acc"]), key
        assert c["gap"] == c["oracle_acc"] - c["label_free_acc"] >= 0


def test_the_published_page_and_readme_block_are_what_the_json_renders() -> None:
    db = json.loads(STORED.read_text())
    assert uda_report.render(db) == (ROOT / "docs" / "UDA.md").read_text()
    assert _block((ROOT / "README.md").read_text()) == uda_report.render_readme(db)


def test_render_only_rewrites_the_same_bytes_and_leaves_the_json_and_the_rest_of_readme(tmp_path: Path) -> None:
    shutil.copy(STORED, tmp_path / "uda.json")
    readme = tmp_path / "README.md"
    readme.write_text("# intro\n\n" + uda_report.README_START + "\nstale\n" + uda_report.README_END + "\n\n## after\n")
    uda.main(["--render-only", "--out", str(tmp_path), "--runs", str(tmp_path / "runs"), "--readme", str(readme)])
    assert (tmp_path / "UDA.md").read_text() == (ROOT / "docs" / "UDA.md").read_text()
    assert (tmp_path / "uda.json").read_bytes() == STORED.read_bytes()
    text = readme.read_text()
    assert text.startswith("# intro\n\n") and text.endswith("\n\n## after\n") and "stale" not in text
    assert _block(text) == _block((ROOT / "README.md").read_text())
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="missing the markers"):
        uda.main(["--render-only", "--out", str(tmp_path), "--runs", str(tmp_path / "runs"), "--readme", str(readme)])
