"""The run directory: what it holds, when it says complete, failure marking, resume, and refusing
to load incomplete, corrupt or mismatched runs (one CheckpointError naming the path)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import transferkit
from transferkit.errors import CheckpointError
from transferkit.runs import RunDir, load_run

TINY: dict[str, Any] = {"model": "mlp", "model_kwargs": {"hidden": 16}, "batch_size": 128, "precision": "fp32",
                        "progress": "off"}


def _pretrain(out: Path, **kw: Any) -> transferkit.RunResult:
    return transferkit.pretrain("mnist5k", out=out, seed=0, **{**TINY, "epochs": 1, **kw})


def _copy_run(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------ layout


def test_complete_run_layout(source_run: Path) -> None:
    names = {p.name for p in source_run.iterdir()}
    assert {"run.json", "config.json", "model.json", "model.safetensors", "metrics.json", "history.json",
            "report.md"} <= names
    assert "checkpoints" not in names, "training checkpoints left behind in a complete run"
    assert not [n for n in names if n.endswith(".tmp")], "temporary files left behind"
    run = json.loads((source_run / "run.json").read_text())
    assert run["status"] == "complete" and run["kind"] == "pretrain" and "finished" in run
    config = json.loads((source_run / "config.json").read_text())
    assert config["seed"] == 0 and config["data"] == "mnist5k" and config["kind"] == "pretrain"
    assert config["transferkit_version"] == transferkit.__version__
    assert config["train"]["epochs"] == 2 and config["train"]["precision"] == "fp32"
    assert config["model_kwargs"] == {"width": 16, "hidden": 64}
    spec = json.loads((source_run / "model.json").read_text())
    assert spec["name"] == "small_cnn" and spec["class_names"] == [str(i) for i in range(10)]
    metrics = json.loads((source_run / "metrics.json").read_text())
    assert 0.5 < metrics["source"]["accuracy"] <= 1.0
    history = json.loads((source_run / "history.json").read_text())
    assert len(history[0]["history"]) == 2
    report = (source_run / "report.md").read_text()
    assert "pretrain" in report and "source accuracy" in report


def test_status_is_complete_only_at_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    original = RunDir.complete

    def spy(self: RunDir) -> None:
        seen["status"] = self.status()
        seen["files"] = {p.name for p in self.path.iterdir()}
        original(self)

    monkeypatch.setattr(RunDir, "complete", spy)
    out = tmp_path / "run"
    _pretrain(out)
    assert seen["status"] == "running"
    written = {"model.safetensors", "model.json", "metrics.json", "history.json", "report.md", "checkpoints"}
    assert written <= seen["files"]
    assert RunDir(out).status() == "complete"
    assert not (out / "checkpoints").exists()


def test_rundir_lifecycle(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", "pretrain", {"seed": 3})
    assert run.status() == "running"
    run.write("notes.txt", "hello")
    assert (run.path / "notes.txt").read_text() == "hello"
    run.fail(ValueError("bad thing"))
    info = json.loads((run.path / "run.json").read_text())
    assert info["status"] == "failed" and info["error"] == "ValueError: bad thing"
    assert RunDir(tmp_path / "missing").status() is None


# ------------------------------------------------------------------------------ failure and resume


def test_failed_run_is_marked_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transferkit.engine import divergence

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("boom in training")

    monkeypatch.setattr(divergence, "fit", boom)  # the loop run_strategy's phases go through
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"):
        _pretrain(out)
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed"
    assert info["error"] == "RuntimeError: boom in training"
    with pytest.raises(CheckpointError, match="not a complete run \\(status: failed\\)"):
        load_run(out)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C after the first epoch's checkpoint; the same command again finishes the run where it stopped."""
    from transferkit.engine import loop

    ref = _pretrain(tmp_path / "ref", epochs=3)
    original = loop.save_checkpoint

    def save_then_interrupt(*a: Any, **k: Any) -> None:
        original(*a, **k)
        raise KeyboardInterrupt

    out = tmp_path / "run"
    monkeypatch.setattr(loop, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _pretrain(out, epochs=3)
    monkeypatch.setattr(loop, "save_checkpoint", original)
    assert RunDir(out).status() == "failed"
    assert any((out / "checkpoints").iterdir())
    res = _pretrain(out, epochs=3)
    assert RunDir(out).status() == "complete"
    assert _states_equal(res.model, ref.model)
    assert _states_equal(load_run(out).model, load_run(tmp_path / "ref").model)
    assert res.metrics["source"]["accuracy"] == ref.metrics["source"]["accuracy"]


def test_changed_config_does_not_resume_foreign_state(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", "pretrain", {"seed": 0})
    run.checkpoints.mkdir()
    (run.checkpoints / "0-scratch.json").write_text("{}")
    RunDir.create(tmp_path / "r", "pretrain", {"seed": 0})
    assert (run.checkpoints / "0-scratch.json").exists()
    RunDir.create(tmp_path / "r", "pretrain", {"seed": 1})
    assert not run.checkpoints.exists()


# ------------------------------------------------------------------------------ overwrite


def test_refuses_to_overwrite_a_complete_run(source_run: Path, tmp_path: Path) -> None:
    run = _copy_run(source_run, tmp_path)
    with pytest.raises(CheckpointError, match="already holds a complete run") as e:
        RunDir.create(run, "pretrain", {})
    assert str(run) in str(e.value)
    with pytest.raises(CheckpointError, match="already holds a complete run"):
        _pretrain(run)
    assert load_run(run).spec.name == "small_cnn", "the refused call damaged the run"
    res = _pretrain(run, overwrite=True)
    assert res.run_dir == run
    assert load_run(run).spec.name == "mlp"


def test_refuses_a_file_as_run_directory(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        RunDir.create(f, "pretrain", {})


# ------------------------------------------------------------------------------ load_run refusals


def _check(path: Path, match: str, shown: Path) -> None:
    with pytest.raises(CheckpointError, match=match) as e:
        load_run(path)
    msg = str(e.value)
    assert str(shown) in msg, msg
    assert "\n" not in msg


def test_load_run_refuses_missing_and_incomplete(tmp_path: Path) -> None:
    _check(tmp_path / "nope", "no such run directory", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    _check(tmp_path / "empty", "missing run.json", tmp_path / "empty")
    RunDir.create(tmp_path / "running", "pretrain", {})
    _check(tmp_path / "running", r"not a complete run \(status: running\)", tmp_path / "running")


def test_load_run_refuses_corrupt_run_json(source_run: Path, tmp_path: Path) -> None:
    run = _copy_run(source_run, tmp_path)
    (run / "run.json").write_text('{"status": "compl')
    _check(run, r"status: corrupt", run)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing"])
def test_load_run_refuses_bad_weights(damage: str, source_run: Path, tmp_path: Path) -> None:
    run = _copy_run(source_run, tmp_path)
    weights = run / "model.safetensors"
    data = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        weights.write_bytes(b"\x13\x37" * 100)
    elif damage == "empty":
        weights.write_bytes(b"")
    else:
        weights.unlink()
    _check(run, "weights file not found" if damage == "missing" else "corrupt or truncated safetensors", weights)


def test_load_run_refuses_class_count_mismatch(source_run: Path, tmp_path: Path) -> None:
    run = _copy_run(source_run, tmp_path)
    spec = json.loads((run / "model.json").read_text())
    spec["class_names"] = ["a", "b", "c"]
    (run / "model.json").write_text(json.dumps(spec))
    _check(run, "weights do not fit model.json", run / "model.safetensors")


def test_load_run_refuses_malformed_model_json(source_run: Path, tmp_path: Path) -> None:
    run = _copy_run(source_run, tmp_path)
    (run / "model.json").write_text(json.dumps({"input_shape": [1, 28, 28]}))
    _check(run, "malformed", run / "model.json")
    (run / "model.json").write_text("{not json")
    _check(run, "not valid JSON", run / "model.json")


def test_load_run_refuses_unknown_architecture(source_run: Path, tmp_path: Path) -> None:
    run = _copy_run(source_run, tmp_path)
    spec = json.loads((run / "model.json").read_text())
    spec["name"] = "small_cn"
    (run / "model.json").write_text(json.dumps(spec))
    _check(run, "unknown model 'small_cn' \\(did you mean 'small_cnn'\\?\\)", run / "model.json")
    spec["name"] = "small_cnn"
    spec["kwargs"] = {"widht": 16}
    (run / "model.json").write_text(json.dumps(spec))
    _check(run, "unknown option 'widht' for model small_cnn", run / "model.json")


def test_loaded_run_round_trip(source_run: Path, source_loaded: transferkit.runs.LoadedRun) -> None:
    again = load_run(source_run)
    assert _states_equal(again.model, source_loaded.model)
    assert again.config["command"] == "pretrain"
    assert again.source_head() is None
    assert again.metrics["source"]["accuracy"] > 0.5
