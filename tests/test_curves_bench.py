"""benchmarks/curves.py: run order, summaries, gains and the rendered section (no training)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
curves = pytest.importorskip("curves")


def _task() -> curves.Task:
    return curves.Task("t", "toy", "digits8", {"zero_shot": (), "ncm": curves.SHOTS, "lora": curves.FEW},
                       baseline="zero_shot", png="x.png")


def _done() -> dict[str, dict[str, float]]:
    done = {f"zero_shot|all|{s}": {"accuracy": 0.6} for s in (0, 1)}
    for k in ("1", "5", "10", "50", "all"):
        done.update({f"ncm|{k}|{s}": {"accuracy": 0.5 + 0.01 * s} for s in (0, 1)})
    done["lora|1|0"] = {"accuracy": 0.9}  # one seed only: reported with n=1
    return done


def test_cells_zero_shot_once_per_seed_then_by_shots() -> None:
    c = curves.cells(_task(), [0, 1])
    assert c[:2] == [("zero_shot", None, 0), ("zero_shot", None, 1)]
    assert ("lora", None, 0) not in c and ("ncm", None, 1) in c
    assert len(c) == 2 + 2 * 5 + 2 * 4
    assert [x[1] for x in curves.cells(_task(), [0], only={"all"})] == [None, None]


def test_summary_flat_baseline_and_gain() -> None:
    task = _task()
    s = curves.summarise(task, _done(), [0, 1])
    assert set(s["zero_shot"]) == {"1", "5", "10", "50", "all"} and s["zero_shot"]["50"] == [0.6, 0.6]
    assert s["lora"] == {"1": [0.9]}
    g = {k: (best, round(gain, 6)) for k, best, gain in curves.gains(task, s)}
    assert g["1"] == ("lora", 30.0)
    assert g["all"] == ("ncm", round(100 * (0.505 - 0.6), 6))


def test_section_marks_missing_and_partial_cells(tmp_path: Path) -> None:
    task = _task()
    s = curves.summarise(task, _done(), [0, 1])
    text = "\n".join(curves.section(task, s, _done(), [0, 1], complete=False))
    assert "| `lora` | 90.0 ± 0.0 (n=1) | — | — | — | — |" in text
    assert "Unfinished" in text and "`lora` +30.0" in text
    curves.plot(task, s, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_mnist_rows_pass_augment_off_and_the_page_says_why() -> None:
    """small_cnn's lp_ft/full recipe augments by default; the stored mnist curves ran without it, so the
    script passes augment="off" and the section says so in a sentence built from the recipe table."""
    task = curves.TASKS["mnist"]
    assert task.train.get("augment") == "off" and task.backbone == "small_cnn"
    s = curves.summarise(task, {}, [0])
    text = "\n".join(curves.section(task, s, {}, [0], complete=True))
    assert 'measured without augmentation (`augment="off"`' in text and "docs/AUGMENT.md" in text
    assert "`full` and `lp_ft`" in text
    effnet = curves.TASKS["effnet"]  # its recipe does not augment: no sentence
    assert "augment" not in "\n".join(curves.section(effnet, curves.summarise(effnet, {}, [0]), {}, [0], True))


def test_render_only_reads_the_published_runs_without_a_store(tmp_path: Path) -> None:
    import json

    runs = {f"ncm|{k}|0": {"accuracy": 0.5, "seconds": 1.0} for k in ("1", "5", "10", "50", "all")}
    (tmp_path / "curves.json").write_text(json.dumps({"tasks": {"mnist": {"runs": runs}}}))
    assert curves.load_store(tmp_path / "none", curves.TASKS["mnist"], tmp_path / "curves.json") == runs
    assert curves.load_store(tmp_path / "none", curves.TASKS["effnet"], tmp_path / "curves.json") == {}
    assert curves.load_store(tmp_path / "none", curves.TASKS["mnist"]) == {}


def test_run_stores_each_cell_resumes_and_stops_at_the_deadline(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int | None, int]] = []

    class FakeRunner:
        def __init__(self, task: object, work: Path) -> None:
            pass

        def run(self, strategy: str, k: int | None, seed: int) -> dict[str, float]:
            calls.append((strategy, k, seed))
            return {"accuracy": 0.5}

    monkeypatch.setattr(curves, "Runner", FakeRunner)
    task = curves.TASKS["audio"]
    assert curves.run([task], tmp_path, [0], deadline=0.0, only={"1"}) == {"audio": False} and calls == []
    assert curves.run([task], tmp_path, [0], deadline=float("inf"), only={"1"}) == {"audio": True}
    stored = curves.load_store(tmp_path, task)
    assert set(stored) == {f"{s}|1|0" for s in task.strategies} and "seconds" in stored["ncm|1|0"]
    n = len(calls)
    curves.run([task], tmp_path, [0], deadline=float("inf"), only={"1"})
    assert len(calls) == n  # every cell stored: nothing reruns
