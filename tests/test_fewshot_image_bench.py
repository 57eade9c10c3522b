"""benchmarks/fewshot_image.py: which current strategies it runs, the paired criterion, the split check, quick
mode's failure, the page (transfer replaced by a stand-in: no training)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
fi = pytest.importorskip("fewshot_image")

SPLIT = {"n_train": 100, "n_val": 100, "n_test": 539, "sha256": "abc"}


def _image_doc() -> dict[str, Any]:
    def row(target: str, acc: dict[str, float]) -> dict[str, Any]:
        return {"source": "efficientnet_lite0", "target": target, "shots": 10,
                "accuracy": {s: [a, a] for s, a in acc.items()}}

    acc = {"scratch": 0.1, "linear_probe": 0.8, "lp_ft": 0.82, "self_train": 0.99, "full_defaults": 0.98,
           "wise_ft": 0.85, "layerwise_lr": 0.6}
    return {"generated": "then", "rows": [row("digits8", acc), row("fontdigits", {**acc, "linear_probe": 0.7}),
                                          {**row("digits8", {"lora": 1.0}), "shots": None}]}


def test_current_strategies_are_the_best_labels_only_cli_default_columns() -> None:
    got = fi.current_strategies(_image_doc())
    assert [c["strategy"] for c in got] == ["wise_ft", "lp_ft", "linear_probe"]  # not self_train, *_defaults
    assert got[2]["image_json_mean"] == {"digits8": 0.8, "fontdigits": 0.7}
    doc = _image_doc()
    doc["rows"] = doc["rows"][:1]
    with pytest.raises(SystemExit, match="fontdigits"):
        fi.current_strategies(doc)


def _fake(acc: dict[str, float], n_test: int = 539) -> Any:
    def transfer(source: str, target: str, **kw: Any) -> Any:
        assert source == "efficientnet_lite0" and kw["shots"] == 10 and kw["progress"] == "off"
        name = kw["strategy"] + ("@recipe" if kw.get("lr") == 1e-4 and "epochs" in kw and kw["epochs"] == 5
                                 and kw["strategy"] == "contrastive" else "")
        a = acc.get(name, acc.get(kw["strategy"], 0.5)) + 0.01 * kw["seed"]
        font = target == "fontdigits"  # its body phase saturates: 100 % from epoch 2, all 40 epochs run
        phases = [{"name": "contrastive", "epochs": 40 if font else 12, "best_epoch": 2, "best_val_acc": 0.7,
                   "seconds": 1.0},
                  {"name": "probe", "epochs": 40, "best_epoch": 30, "best_val_acc": a - 0.02, "seconds": 1.0}]
        history = [{"name": "contrastive", "history": [{"val_acc": 0.6, "val_score": 0.6},
                                                       {"val_score": 1.0 if font else 0.7}]}]
        return SimpleNamespace(metrics={"target": {"accuracy": a, "n": n_test}, "train_seconds": 1.0,
                                        "n_train": 100, "n_val": 100, "phases": phases,
                                        "strategy_info": {"contrastive": {"loss": "pairs"}}, "notes": []},
                               history=history if kw["strategy"] == "contrastive" else [])

    return transfer


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, acc: dict[str, float], argv: list[str],
         n_test: int = 539) -> tuple[int, dict[str, Any], str]:
    monkeypatch.setattr(fi.transferkit, "transfer", _fake(acc, n_test))
    monkeypatch.setattr(fi, "fingerprint", lambda target, seed: dict(SPLIT))
    monkeypatch.setattr(fi, "frozen_ncm", lambda target, seed: {"val_accuracy": 0.55})
    monkeypatch.setattr(fi, "DOCS", tmp_path / "docs")
    (tmp_path / "docs").mkdir(parents=True, exist_ok=True)
    (tmp_path / "docs" / "image.json").write_text(json.dumps(_image_doc()))
    rc = fi.main([*argv, "--work", str(tmp_path / "w"), "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "fewshot_image.json").read_text())
    return rc, doc, (tmp_path / "FEWSHOT_IMAGE.md").read_text()


def test_full_run_pairs_contrastive_with_the_best_current_and_says_where_it_falls_short(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    acc = {"contrastive": 0.80, "wise_ft": 0.85, "lp_ft": 0.82, "linear_probe": 0.79, "contrastive@recipe": 0.9}
    rc, doc, page = _run(tmp_path, monkeypatch, acc, ["--seeds", "0,1,2", "--variants"])
    assert rc == 0 and doc["strategies"] == ["contrastive", "wise_ft", "lp_ft", "linear_probe"]
    v = fi.verdicts(doc)
    assert [x["best"] for x in v] == ["wise_ft", "wise_ft"] and not any(x["held"] for x in v)
    assert v[0]["diff"] == pytest.approx(-0.05) and v[0]["seeds"] == [0, 1, 2]
    assert "| digits8 | `wise_ft` | -5.0 ± 0.0 | -5.0, -5.0, -5.0 | 3 | **no** |" in page
    assert "**Not held**: digits8 (contrastive -5.0 pt), fontdigits (contrastive -5.0 pt)" in page
    assert "`transferkit transfer --source efficientnet_lite0 --data fontdigits --shots 10 --strategy contrastive`" \
        in page
    assert "seed 1 body curve (%): 60 70\n" in page and "was 55.0 ± 0.0 % on the frozen ImageNet features" in page
    assert "seed 1 body curve (%): 60 100 — the score reached 100 % at epoch 2" in page
    assert "never fired before the 40-epoch cap" in page and "(contrastive 1x the costliest" in page
    assert "`contrastive@recipe` ← best on validation" in page and "Appendix" in page
    assert doc["settings"]["wise_ft"]["provenance"]["lr"].startswith("recipe")
    assert fi.main(["--render-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "FEWSHOT_IMAGE.md").read_text() == page


def test_within_one_point_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    acc = {"contrastive": 0.845, "wise_ft": 0.85, "lp_ft": 0.82, "linear_probe": 0.79}
    rc, doc, page = _run(tmp_path, monkeypatch, acc, ["--seeds", "0,1"])
    assert rc == 0 and all(x["held"] for x in fi.verdicts(doc))
    assert "**Held on every target**, but on fewer than 3 seeds for digits8, fontdigits: provisional" in page
    assert "| **yes** (only 2 seeds; 3 wanted) |" in page
    assert "Appendix" not in page


def test_quick_fails_when_contrastive_falls_well_below_the_probe(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rc, doc, _ = _run(tmp_path, monkeypatch, {"contrastive": 0.75, "linear_probe": 0.80}, ["--quick"])
    assert rc == 0 and doc["targets"] == ["digits8"] and doc["seeds"] == [0] and doc["train"] == fi.QUICK_TRAIN
    rc, doc, _ = _run(tmp_path / "again", monkeypatch, {"contrastive": 0.60, "linear_probe": 0.80}, ["--quick"])
    assert rc == 1 and fi.checks(doc) and "quick bound -10" in fi.checks(doc)[0]


def test_a_run_on_another_split_fails_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rc, doc, _ = _run(tmp_path, monkeypatch, {}, ["--seeds", "0"], n_test=500)
    assert rc == 1 and any("differ from the seeded split's 100/100/539" in x for x in fi.checks(doc))


def test_the_deadline_starts_no_new_run_and_the_page_says_unfinished(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rc, doc, page = _run(tmp_path, monkeypatch, {}, ["--seeds", "0", "--deadline-min", "1e-9"])
    assert rc == 0 and not doc["complete"] and "**Unfinished**" in page and "`fontdigits|contrastive|0`" in page
    assert doc["runs"] == {}  # nothing ran: no split to check either


def test_variants_only_runs_the_appendix_and_keeps_the_stored_main_cells(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    acc = {"contrastive": 0.80, "wise_ft": 0.85, "lp_ft": 0.82, "linear_probe": 0.79}
    _run(tmp_path, monkeypatch, acc, ["--seeds", "0"])
    calls: list[str] = []
    fake = _fake(acc)

    def transfer(source: str, target: str, **kw: Any) -> Any:
        calls.append(kw["strategy"])
        return fake(source, target, **kw)

    monkeypatch.setattr(fi.transferkit, "transfer", transfer)
    rc = fi.main(["--seeds", "0,1", "--variants", "--variants-only", "--work", str(tmp_path / "w"),
                  "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "fewshot_image.json").read_text())
    assert rc == 0 and calls == ["contrastive"] * 2 * 2 * len(fi.VARIANTS)
    assert [v["seeds"] for v in fi.verdicts(doc)] == [[0], [0]] and "digits8|wise_ft|1" in doc["missing"]


def test_targets_runs_one_target_and_refuses_an_unknown_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rc, doc, _ = _run(tmp_path, monkeypatch, {}, ["--seeds", "0", "--targets", "fontdigits"])
    assert rc == 0 and doc["targets"] == ["fontdigits"] and not any(k.startswith("digits8") for k in doc["runs"])
    with pytest.raises(SystemExit, match="--targets: 'mnist'"):
        _run(tmp_path, monkeypatch, {}, ["--targets", "mnist"])


def test_fingerprint_is_the_split_transfer_draws_and_frozen_ncm_scores_it() -> None:
    a, b = fi.fingerprint("digits8", 0), fi.fingerprint("digits8", 1)
    assert (a["n_train"], a["n_val"]) == (100, 100) and a["n_test"] > 400
    assert a["sha256"] != b["sha256"] and len(a["sha256"]) == 16
    assert 0.3 < fi.frozen_ncm("digits8", 0)["val_accuracy"] <= 1.0  # chance is 0.1


def test_the_published_page_is_what_its_json_renders() -> None:
    path = ROOT / "docs" / "fewshot_image.json"
    if not path.exists():
        pytest.skip("docs/fewshot_image.json not generated yet")
    doc = json.loads(path.read_text())
    assert fi.BENCH.render(doc) == (ROOT / "docs" / "FEWSHOT_IMAGE.md").read_text()
    assert not doc["quick"] and len(doc["seeds"]) >= 3 and not fi.split_mismatches(doc)
