"""benchmarks/harness.py: the store resumes and merges, a page re-renders byte for byte from its JSON, a failed
check exits 1; and the ported scripts' measure -> JSON -> page path (transfer replaced by a stand-in)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
harness = pytest.importorskip("harness")


def test_store_skips_finished_cells_and_keeps_what_another_process_stored(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    calls: list[str] = []
    a = harness.Store(path)
    a.cell("x|0", lambda: calls.append("x") or {"accuracy": 0.5})
    other = harness.Store(path)  # a parallel process started before "y" was stored
    a.cell("y|0", lambda: calls.append("y") or {"accuracy": 0.6})
    other.cell("z|0", lambda: {"accuracy": 0.7})
    again = harness.Store(path)
    again.cell("x|0", lambda: calls.append("x again") or {"accuracy": 0.0})
    assert calls == ["x", "y"] and set(again.done) == {"x|0", "y|0", "z|0"}
    assert again["x|0"]["accuracy"] == 0.5 and "wall_seconds" in again["x|0"]


def _toy(failing: bool) -> Any:
    def measure(ctx: Any) -> dict[str, Any]:
        store = harness.Store(ctx.work / "results.json")
        for seed in ctx.seeds:
            store.cell(f"toy|{seed}", lambda seed=seed: {"accuracy": 0.25 * (seed + 1)})
        return {"seeds": ctx.seeds, "runs": store.done}

    def render(doc: dict[str, Any]) -> str:
        rows = [[str(s), f"{100 * doc['runs'][f'toy|{s}']['accuracy']:.1f}"] for s in doc["seeds"]]
        return "\n".join(["# Toy", "", harness.generated_line(doc), "", *harness.table(["seed", "acc"], rows)]) + "\n"

    return harness.Bench("toy", "A toy.", measure, render, quick="one seed",
                         checks=lambda doc: ["always"] if failing else [])


def test_a_page_re_renders_byte_for_byte_and_a_failed_check_exits_1(tmp_path: Path) -> None:
    bench = _toy(failing=False)
    argv = ["--seeds", "0,1", "--work", str(tmp_path / "w"), "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    page = (tmp_path / "TOY.md").read_text()
    doc = json.loads((tmp_path / "toy.json").read_text())
    assert doc["command"] == "python benchmarks/toy.py " + " ".join(argv) and doc["generated"] in page
    assert "| 1 | 50.0 |" in page
    (tmp_path / "TOY.md").write_text("stale")
    assert bench.main(["--render-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "TOY.md").read_text() == page
    assert _toy(failing=True).main(["--quick", "--work", str(tmp_path / "q"), "--out", str(tmp_path / "q")]) == 1
    assert json.loads((tmp_path / "q" / "toy.json").read_text())["seeds"] == [0]


def test_image_measures_renders_and_re_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = pytest.importorskip("image")

    def transfer(source: str, target: str, **kw: Any) -> Any:
        acc = 0.5 if kw["strategy"] == "scratch" else 0.9
        return SimpleNamespace(metrics={"target": {"accuracy": acc}, "train_seconds": 1.0, "n_train": 100,
                                        "phases": [{"epochs": 1}]})

    monkeypatch.setattr(image.transferkit, "transfer", transfer)
    assert image.main(["--quick", "--work", str(tmp_path), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "IMAGE.md").read_text()
    assert "| `mnist_cnn` | digits8 | 10 (100 images) | 50.0 ± 0.0 | 90.0 ± 0.0 |" in page
    assert image.main(["--render-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "IMAGE.md").read_text() == page
