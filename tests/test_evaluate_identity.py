"""``evaluate`` knows a run's own data by its recorded identity (resolved path or fingerprint), not by
how the path is written, and adds to ``metrics.json`` under the run's lock."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_wine

import transferkit.api as api_module
from transferkit.cli import main
from transferkit.data import ArrayDataset, load_dataset
from transferkit.errors import CheckpointError
from transferkit.pipeline import data_identity, heldout_split, heldout_target, own_data

FAST = ["--epochs", "3", "--precision", "fp32", "--progress", "off"]
HELD_OUT = 53  # round(0.3 * 178): wine's test split


def _write_wine(path: Path, rows: int = 178) -> Path:
    d = load_wine()
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*map(str, d.feature_names), "label"])
        w.writerows([*map(repr, map(float, r)), str(d.target_names[t])] for r, t in zip(d.data[:rows], d.target[:rows]))
    return path


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An mlp pretrained on ``w.csv`` given as a relative path (cwd: the folder holding it)."""
    root = tmp_path_factory.mktemp("identity")
    _write_wine(root / "w.csv")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        assert main(["pretrain", "--data", "w.csv", "--model", "mlp", "--out", "run", *FAST]) == 0
    finally:
        mp.undo()
    return root, root / "run"


def _n(run: Path, data: str | Path) -> dict[str, Any]:
    return api_module.evaluate(run, str(data), save=False)["target"]


def test_the_same_data_written_another_way_scores_the_held_out_rows(wine_run: tuple[Path, Path],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root, run = wine_run
    assert json.loads((run / "config.json").read_text())["data_identity"] == data_identity(str(root / "w.csv"))
    monkeypatch.chdir(root)
    for written in ("w.csv", "./w.csv", root / "w.csv", "../" + root.name + "/w.csv"):
        t = _n(run, written)
        assert t["n"] == HELD_OUT and "note" not in t, written
    copy = shutil.copy(root / "w.csv", root / "copy.csv")  # same bytes elsewhere: the same data
    assert _n(run, copy)["n"] == HELD_OUT
    assert _n(run, _write_wine(root / "part.csv", rows=100))["n"] == 100  # other data: all of it


def test_changed_contents_keep_the_split_with_a_note(wine_run: tuple[Path, Path], tmp_path: Path) -> None:
    root, run = wine_run
    cfg = json.loads((run / "config.json").read_text())
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    data = tmp_path / "w.csv"
    _write_wine(data)
    cfg["data_identity"] = data_identity(str(data))
    (moved / "config.json").write_text(json.dumps(cfg))
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join([lines[0], *reversed(lines[1:])]))  # same rows, another order: changed bytes
    t = _n(moved, data)
    assert t["n"] == HELD_OUT and t["note"].startswith(f"{data} changed since the run")


def test_a_run_without_an_identity_compares_the_strings(wine_run: tuple[Path, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root, run = wine_run
    cfg = json.loads((run / "config.json").read_text())
    del cfg["data_identity"]  # written by an older version
    assert own_data(cfg, "data", "w.csv") == (True, None)
    assert own_data(cfg, "data", "./w.csv") == (False, None)
    ds = load_dataset(str(root / "w.csv"))
    assert len(heldout_split(cfg, "w.csv", ds)) == HELD_OUT and len(heldout_split(cfg, "./w.csv", ds)) == 178


def test_an_adapt_run_knows_its_target_data_by_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _write_wine(tmp_path / "t.csv")
    monkeypatch.chdir(tmp_path)
    cfg = {"command": "adapt", "target_data": "t.csv", "target_data_identity": data_identity("t.csv"),
           "target_split": {"val": 0.15, "test": 0.3, "seed": 0}}
    ds = ArrayDataset(np.zeros((178, 2), np.float32), None, [], name="t")
    for written in ("./t.csv", str(data)):
        part = heldout_target(cfg, written, ds)
        assert part is not None and len(part) == HELD_OUT
    assert heldout_target(cfg, str(_write_wine(tmp_path / "other.csv", rows=90)), ds) is None
    assert data_identity("digits8") == {"name": "digits8"}


def test_evaluate_adds_to_metrics_written_meanwhile(wine_run: tuple[Path, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Another evaluate finishing between this one's load and its write keeps its result."""
    root, run = wine_run
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    real = api_module.evaluate_model

    def concurrent(*args: Any) -> dict[str, Any]:
        metrics = json.loads((moved / "metrics.json").read_text())
        metrics.setdefault("evaluations", {})["other.csv"] = {"target": {"n": 1}}
        (moved / "metrics.json").write_text(json.dumps(metrics))
        return real(*args)

    monkeypatch.setattr(api_module, "evaluate_model", concurrent)
    api_module.evaluate(moved, str(root / "w.csv"))
    evaluations = json.loads((moved / "metrics.json").read_text())["evaluations"]
    assert set(evaluations) == {"other.csv", str(root / "w.csv")}


def test_evaluate_never_writes_into_a_run_replaced_meanwhile(wine_run: tuple[Path, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root, run = wine_run
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    before = (moved / "metrics.json").read_text()
    real = api_module.evaluate_model

    def overwritten(*args: Any) -> dict[str, Any]:  # an --overwrite run completes in the folder meanwhile
        info = json.loads((moved / "run.json").read_text())
        (moved / "run.json").write_text(json.dumps({**info, "started": "later"}))
        return real(*args)

    monkeypatch.setattr(api_module, "evaluate_model", overwritten)
    with pytest.raises(CheckpointError, match="replaced by another run while evaluate ran"):
        api_module.evaluate(moved, str(root / "w.csv"))
    assert (moved / "metrics.json").read_text() == before


def test_same_data_by_string_path_or_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """adapt's eval data is its target data however either path is written (then only the held-out part is scored)."""
    from transferkit.pipeline import same_data

    f = tmp_path / "t.csv"
    f.write_text("a,label\n1,x\n2,y\n")
    (tmp_path / "copy.csv").write_bytes(f.read_bytes())
    (tmp_path / "other.csv").write_text("a,label\n3,x\n4,y\n")
    monkeypatch.chdir(tmp_path)
    assert same_data("t.csv", "./t.csv") and same_data("t.csv", str(f)) and same_data("t.csv", "copy.csv")
    assert not same_data("t.csv", "other.csv") and not same_data("digits8", "mnist5k")
    assert same_data("digits8", "digits8")
