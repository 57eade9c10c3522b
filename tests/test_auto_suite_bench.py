"""benchmarks/auto_suite.py (+ auto_suite_summary.py, auto_suite_report.py): the runs pass augment="off" and the
page says why; --render-only (no training)."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
auto_suite = pytest.importorskip("auto_suite")
auto_suite_report = pytest.importorskip("auto_suite_report")
auto_suite_summary = pytest.importorskip("auto_suite_summary")
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
    assert auto_suite_report.augment_sentence(doc) == ""


def test_text_plan_runs_minilm_with_the_clis_settings() -> None:
    plan = auto_suite.TEXT
    assert plan.epochs is None and plan.augment == "auto"  # nothing passed: the recipes decide, as on the CLI
    assert [s.backbone for s in plan.sources] == [True] and plan.sources[0].model == "minilm"
    assert {(t.target, t.shots) for t in plan.tasks} >= {("vader-movies", 8), ("sms-spam", 8)}
    assert plan.seeds == [0, 1, 2] and "contrastive" in plan.strategies and "auto" not in plan.strategies
    from transferkit.strategies.auto import TEXT_FEW

    assert set(TEXT_FEW) <= set(plan.strategies)  # every candidate auto can pick for these tasks runs in full
    assert auto_suite.row_key("t", 0, "lp_ft", None, None).endswith("epochs=recipe")


def test_a_rerun_resumes_from_the_stored_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every finished cell is appended to the results file; a second invocation runs none of them again, and an
    auto cell stored by another auto.py is run again (its choice may differ)."""
    calls: list[tuple[str, str, int]] = []

    def fake_run(src: str, target: str, shots: int, strategy: str, seed: int, *rest: object) -> dict[str, object]:
        calls.append((target, strategy, seed))
        row: dict[str, object] = {"accuracy": 0.5 + seed / 10, "train_seconds": 1.0, "wall_seconds": 1.0}
        if strategy == "auto":
            row["auto"] = {"choice": "contrastive", "reason": "r", "candidates": ["contrastive"],
                           "decision_seconds": 0.1, "signals": {}, "search": None}
        return row

    monkeypatch.setattr(auto_suite, "one_run", fake_run)
    plan, dirs = auto_suite.TEXT, {"minilm": Path("minilm")}
    path = tmp_path / "results-text.jsonl"
    auto_suite.run_units(plan, dirs, auto_suite.Results(path, False), "all", 1)
    n = len(plan.tasks) * len(plan.seeds) * (len(plan.strategies) + len(plan.auto_budgets))
    assert len(calls) == n and len(path.read_text().splitlines()) == n
    calls.clear()
    res = auto_suite.Results(path, False)
    auto_suite.run_units(plan, dirs, res, "all", 1)
    assert calls == [] and res.reused == n
    monkeypatch.setattr(auto_suite, "auto_version", lambda: "another")
    auto_suite.run_units(plan, dirs, auto_suite.Results(path, False), "all", 1)
    assert {c[1] for c in calls} == {"auto"} and len(calls) == len(plan.tasks) * len(plan.seeds)


def test_paired_regret_is_the_per_seed_difference_and_its_standard_error() -> None:
    best = {"0": 0.70, "1": 0.66, "2": 0.72}
    cell = [{"seed": 0, "accuracy": 0.69}, {"seed": 1, "accuracy": 0.60}, {"seed": 2, "accuracy": 0.72}]
    out = auto_suite_summary.paired_regret(best, cell)
    d = [0.01, 0.06, 0.0]
    assert out["regret_per_seed"] == pytest.approx(d)
    assert out["regret_se"] == pytest.approx(float(np.std(d, ddof=1) / np.sqrt(3)))
    assert auto_suite_summary.paired_regret({"0": 0.7}, cell) == {}  # not paired: no error bar


def test_the_stored_image_rows_decide_as_the_current_rules_do() -> None:
    """The image part is not rerun for the text rule: replaying the current rules on the signals every stored
    image run recorded gives back its recorded decisions (the first candidate at budget 0, the search's order)."""
    published = ROOT / "docs" / "auto_suite.json"
    if not published.exists():
        pytest.skip("no published auto_suite.json")
    same, total, differ = auto_suite_report.replay_rules(json.loads(published.read_text())["tasks"])
    assert total > 0 and same == total, differ


def test_the_text_part_is_written_beside_the_stored_image_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """write_text_part summarises the stored text cells into ``doc["text"]`` and keeps the image part byte for byte;
    the page gains the text section (rule, regret with its paired SE, every strategy) and keeps the image tables."""
    published = ROOT / "docs" / "auto_suite.json"
    if not published.exists():
        pytest.skip("no published auto_suite.json")
    doc = json.loads(published.read_text())
    doc.pop("text", None)
    (tmp_path / "auto_suite.json").write_text(json.dumps(doc))
    plan = auto_suite.TEXT
    res = auto_suite.Results(tmp_path / "results-text.jsonl", False)
    for t in plan.tasks:
        for s in plan.seeds:
            for n in [*plan.strategies, "auto"]:
                acc = 0.6 + 0.01 * s + (0.05 if n == "zs_init" else 0.04 if n in ("contrastive", "auto") else 0.0)
                row = {"accuracy": acc, "train_seconds": 2.0, "wall_seconds": 3.0, "cpu_seconds": 2.5, "n_test": 500,
                       "key": auto_suite.row_key(t.key, s, n, 0.0 if n == "auto" else None, None), "task": t.key,
                       "seed": s, "strategy": n, "budget": 0.0 if n == "auto" else None}
                if n == "auto":
                    row["auto"] = {"choice": "contrastive", "reason": "why", "candidates": ["contrastive", "lp_ft"],
                                   "decision_seconds": 0.5, "signals": {"modality": "text"}, "search": None}
                res.add(row)
    meta = {"command": "python benchmarks/auto_suite.py --part text", "date": "d", "auto_version": "v", "plan":
            auto_suite.asdict(plan), "mode": "text", "jobs": 1}
    machine = {"usable_cpus": 2, "load_average_start": (1.0, 1.0, 1.0)}
    args = auto_suite.parse_args(["--part", "text", "--out", str(tmp_path)])
    assert auto_suite.write_text_part(args, plan, res, meta, machine, {}, 0.0) == 0
    out = json.loads((tmp_path / "auto_suite.json").read_text())
    assert {k: v for k, v in out.items() if k != "text"} == doc
    movies = next(t for t in out["text"]["tasks"] if t["task"]["target"] == "vader-movies")
    assert movies["best"] == "zs_init" and movies["auto"]["0"]["regret"] == pytest.approx(0.01)
    assert movies["auto"]["0"]["regret_se"] == pytest.approx(0.0, abs=1e-12)
    page = (tmp_path / "AUTO_SUITE.md").read_text()
    assert "## Text tasks (MiniLM)" in page and "+1.0 ± 0.0" in page and "rule 4 of" in page
    assert "## Per task (means over seeds)" in page  # the image part is still rendered
