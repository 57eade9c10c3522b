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
    with pytest.raises(SystemExit, match=r"toy\.json not found"):
        bench.main(["--render-only", "--out", str(tmp_path / "empty")])
    with pytest.raises(SystemExit):
        bench.main(["--seeds", "0,x"])


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


#: (script, page) of every script on the harness: its committed page is what it renders from its committed JSON
PORTED = [("image", "IMAGE.md"), ("augment", "AUGMENT.md"), ("audio", "AUDIO.md"), ("ddp", "DDP.md"),
          ("tabular", "TABULAR.md"), ("image_resolution", "IMAGE_RESOLUTION.md")]


@pytest.mark.parametrize(("script", "page"), PORTED)
def test_the_published_page_is_what_its_json_renders(script: str, page: str) -> None:
    bench = pytest.importorskip(script).BENCH
    doc = json.loads((ROOT / "docs" / f"{bench.name}.json").read_text())
    assert bench.md == page and bench.render(doc) == (ROOT / "docs" / page).read_text()


def test_the_published_federated_section_is_what_its_json_renders(tmp_path: Path) -> None:
    federated = pytest.importorskip("federated")
    page = (ROOT / "docs" / "FEDERATED.md").read_text()
    (tmp_path / "FEDERATED.md").write_text(page)
    federated.write_doc(tmp_path / "FEDERATED.md",
                        federated.render(json.loads((ROOT / "docs" / "federated.json").read_text())))
    assert (tmp_path / "FEDERATED.md").read_text() == page  # the hand-written guide around it kept too


def test_federated_resumes_its_setups_and_splices_its_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    federated = pytest.importorskip("federated")
    pytest.importorskip("flwr")
    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "metrics.json").write_text(json.dumps({"source": {"accuracy": 0.98}}))
    monkeypatch.setattr(federated, "source", lambda work, epochs: work / "source")
    ran: list[str] = []

    def run(name: str, src: Path, out: Path, rounds: int, **kw: Any) -> dict[str, Any]:
        ran.append(name)
        acc = 0.9 if kw["share"] == "head" else 0.95
        return {"name": name, "options": kw, "rounds": rounds, "pooled_accuracy": acc, "clients": {"0": acc},
                "bytes_down": 10 if kw["share"] == "head" else 1000, "bytes_up": 10, "wall_seconds": 1.0,
                "bytes_total": 20 if kw["share"] == "head" else 1010, "history": [],
                "baselines": {"centralised": {"pooled_accuracy": 0.92, "strategy": "x"},
                              "local_only": {"pooled_accuracy": 0.8}}}

    monkeypatch.setattr(federated, "run", run)
    (tmp_path / "FEDERATED.md").write_text("# Guide\n\nkept\n")
    argv = ["--quick", "--work", str(tmp_path), "--out", str(tmp_path)]
    assert federated.main(argv) == 0 and federated.main(argv) == 0 and ran == ["domains-head", "domains-all"]
    page = (tmp_path / "FEDERATED.md").read_text()
    assert page.startswith("# Guide\n\nkept\n") and page.count(federated.BEGIN) == 1 and "| PASS |" in page


def test_audio_measures_and_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    audio = pytest.importorskip("audio")
    src = tmp_path / "source"
    src.mkdir()
    (src / "metrics.json").write_text(json.dumps({"source": {"accuracy": 0.97}, "train_seconds": 3.0, "n_train": 80}))
    monkeypatch.setattr(audio, "RunDir", lambda path: SimpleNamespace(status=lambda: "complete"))
    monkeypatch.setattr(audio, "synthesis_seconds", lambda: {"per_utterance_ms": 50.0, "utterances": 4,
                                                             "seconds": 0.2})
    spread = {"median": 0.01, "min": 0.01, "max": 0.02, "n": 3}
    monkeypatch.setattr(audio, "frontend_share", lambda: {"batch": 64, "frontend_s": spread, "train_step_s": spread,
                                                          "share": spread})
    monkeypatch.setattr(audio.transferkit, "evaluate", lambda *a, **k: {"target": {"accuracy": 0.4}})

    def transfer(src: Path, data: str, **kw: Any) -> Any:
        after = None if kw["strategy"] == "scratch" else {"accuracy": 0.9}
        return SimpleNamespace(metrics={"target": {"accuracy": 0.8}, "train_seconds": 1.0, "n_train": 50,
                                        "source_before": {"accuracy": 0.97},
                                        **({"source_after": after} if after else {})})

    monkeypatch.setattr(audio.transferkit, "transfer", transfer)
    assert audio.main(["--quick", "--work", str(tmp_path), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "AUDIO.md").read_text()
    assert "| `linear_probe` | 80.0 ± 0.0 | 80.0 ± 0.0 | 90.0 ± 0.0 |" in page and "**40.0%** on B" in page
    assert audio.main(["--render-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "AUDIO.md").read_text() == page


def test_ddp_resumes_its_rows_and_fails_when_the_criterion_does(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ddp = pytest.importorskip("ddp")
    launched: list[str] = []
    monkeypatch.setattr(ddp, "pretrain", lambda work: work / "source")
    monkeypatch.setattr(ddp, "_run", lambda cmd, env: launched.append(cmd[0]) or 2.0)
    acc = {"1_process": 0.9, "2_processes": 0.9}
    monkeypatch.setattr(ddp, "_record", lambda out, wall: {
        "accuracy": acc[out.parent.name], "wall_seconds": wall, "train_seconds": 1.0, "samples_per_second": 100.0,
        "phases": [{"bf16_autocast": False}]})
    argv = ["--quick", "--work", str(tmp_path), "--out", str(tmp_path)]
    assert ddp.main(argv) == 0 and len(launched) == 2 * len(ddp.CONFIGS)
    assert "**Criterion** (2-process accuracy within 0.5 pt of 1 process, every strategy and seed): **PASS**" in (
        tmp_path / "DDP.md").read_text()
    assert ddp.main(argv) == 0 and len(launched) == 2 * len(ddp.CONFIGS)  # every row stored: nothing reruns
    acc["2_processes"] = 0.8
    assert ddp.main([*argv, "--work", str(tmp_path / "again")]) == 1


def test_image_resolution_picks_the_smallest_size_near_the_best(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    res = pytest.importorskip("image_resolution")
    acc = {64: 0.80, 96: 0.905, 128: 0.91}
    monkeypatch.setattr(res.transferkit, "transfer", lambda *a, **k: SimpleNamespace(metrics={
        "target": {"accuracy": acc[k["model_kwargs"]["resolution"]]}, "train_seconds": 1.0, "n_train": 10}))
    monkeypatch.setattr(res, "forward_cost", lambda rs, batch, rounds: {r: res.Spread.of([r / 10.0]) for r in rs})
    argv = ["--resolutions", "64,96,128", "--work", str(tmp_path), "--out", str(tmp_path)]
    assert res.main(argv) == 0
    page = (tmp_path / "IMAGE_RESOLUTION.md").read_text()
    assert json.loads((tmp_path / "image_resolution.json").read_text())["chosen"] == 96 and "| 96 **chosen** |" in page
    assert res.main(["--render-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "IMAGE_RESOLUTION.md").read_text() == page


def test_the_published_memory_page_is_what_its_json_renders() -> None:
    bench = pytest.importorskip("memory").bench()
    doc = json.loads((ROOT / "docs" / "memory.json").read_text())
    assert bench.md == "MEMORY.md" and bench.render(doc) == (ROOT / "docs" / "MEMORY.md").read_text()
