"""The metrics log of a run folder: history.csv rows appended per epoch, equal to history.json after
an interruption and a resume (no duplicate, no missing row), rolled-back attempts kept and marked,
and TensorBoard events that hold each epoch once."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from transferkit.engine import runlog
from transferkit.engine.config import TrainConfig
from transferkit.engine.divergence import fit_with_retries
from transferkit.engine.loop import Phase, PhaseResult, fit
from transferkit.models import ModelSpec, build_model

Tensors = tuple[torch.Tensor, torch.Tensor]


class _Interrupt(Exception):
    pass


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "running", "kind": "pretrain"}))
    return run


def _phase(mnist_slices: tuple[Tensors, Tensors], name: str = "scratch", **kw: Any) -> Phase:
    (x, y), (xv, yv) = mnist_slices
    m = build_model(ModelSpec("mlp", (1, 28, 28), [str(i) for i in range(10)], {"hidden": 32}), 0)
    return Phase(name, m, (x[::2], y[::2]), (xv[::3], yv[::3]), [{"params": list(m.parameters())}], **kw)


def _cfg(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"epochs": 4, "batch_size": 32, "precision": "fp32", "progress": "off", "patience": 0, **kw})


def _live(rows: list[dict[str, str]], phase_id: str) -> list[dict[str, float]]:
    """The rows of the attempt that finished, as history records."""
    out = []
    for r in rows:
        if r["phase_id"] == phase_id and r["rolled_back"] == "0":
            out.append({"epoch": int(r["epoch"]), "train_loss": float(r["train_loss"]), "lr": float(r["lr"]),
                        "val_acc": float(r["val_accuracy"]), "val_loss": float(r["val_loss"])})
    return out


def _assert_log_matches(run: Path, results: dict[str, PhaseResult]) -> list[dict[str, str]]:
    rows = runlog.read_csv(run / runlog.FILE)
    assert list(rows[0]) == list(runlog.COLUMNS)
    for pid, res in results.items():
        assert _live(rows, pid) == res.history
        assert all(float(r["seconds"]) >= 0 for r in rows if r["phase_id"] == pid and r["rolled_back"] == "0")
    return rows


def test_each_epoch_is_appended_as_it_finishes(mnist_slices: tuple[Tensors, Tensors], tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    seen: list[int] = []

    def rows_so_far(epoch: int) -> None:  # what a reader sees while the phase runs
        f = run / runlog.FILE
        seen.append(len(runlog.read_csv(f)) if f.exists() else -1)

    res = fit(_phase(mnist_slices, on_epoch_start=rows_so_far), _cfg(), run / "checkpoints" / "0-scratch")
    assert seen == [0, 1, 2, 3]
    rows = _assert_log_matches(run, {"0-scratch": res})
    assert {r["phase"] for r in rows} == {"scratch"} and len(rows) == 4


def test_no_log_outside_a_run_folder(mnist_slices: tuple[Tensors, Tensors], tmp_path: Path) -> None:
    fit(_phase(mnist_slices), _cfg(epochs=1), tmp_path / "ckpt" / "phase")
    assert not list(tmp_path.rglob(runlog.FILE)) and not list(tmp_path.rglob(runlog.TENSORBOARD))


@pytest.mark.parametrize("killed", ["after the row", "before the row"])
def test_resume_gives_each_epoch_once(killed: str, mnist_slices: tuple[Tensors, Tensors], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after epoch 2's checkpoint, with or without its row written: the resumed log equals
    history.json's records, each epoch once."""
    run = _run_folder(tmp_path)
    ckpt = run / "checkpoints" / "1-finetune"
    first = fit(_phase(mnist_slices, "probe"), _cfg(epochs=2), run / "checkpoints" / "0-probe")
    append = runlog.MetricsLog.append

    def dies(self: runlog.MetricsLog, rec: dict[str, Any], seconds: float) -> None:
        if rec["epoch"] == 2:
            if killed == "after the row":
                append(self, rec, seconds)
            raise _Interrupt  # epoch 2 is checkpointed: the resume starts at epoch 3
        append(self, rec, seconds)

    with monkeypatch.context() as mp:
        mp.setattr(runlog.MetricsLog, "append", dies)
        with pytest.raises(_Interrupt):
            fit(_phase(mnist_slices, "finetune"), _cfg(), ckpt)
    before = runlog.read_csv(run / runlog.FILE)
    assert len(before) == 2 + (3 if killed == "after the row" else 2)
    started: list[int] = []
    res = fit(_phase(mnist_slices, "finetune", on_epoch_start=started.append), _cfg(), ckpt)
    assert started == [3]
    rows = _assert_log_matches(run, {"0-probe": first, "1-finetune": res})
    assert [r["phase_id"] for r in rows] == ["0-probe"] * 2 + ["1-finetune"] * 4
    events = _scalars(run / runlog.TENSORBOARD / "1-finetune", "train_loss")
    assert events == [(e, pytest.approx(h["train_loss"])) for e, h in enumerate(res.history)]


def _scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_tensorboard_events_hold_every_logged_value(mnist_slices: tuple[Tensors, Tensors], tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    res = fit(_phase(mnist_slices), _cfg(epochs=3), run / "checkpoints" / "0-scratch")
    folder = run / runlog.TENSORBOARD / "0-scratch"
    for tag, key in (("train_loss", "train_loss"), ("val_accuracy", "val_acc"), ("val_loss", "val_loss"), ("lr", "lr")):
        assert _scalars(folder, tag) == [(e, pytest.approx(h[key])) for e, h in enumerate(res.history)], tag
    assert [s for s, _ in _scalars(folder, "seconds")] == [0, 1, 2]


def test_without_tensorboard_only_the_csv(mnist_slices: tuple[Tensors, Tensors], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runlog, "tensorboard_available", lambda: False)
    run = _run_folder(tmp_path)
    fit(_phase(mnist_slices), _cfg(epochs=1), run / "checkpoints" / "0-scratch")
    assert (run / runlog.FILE).exists() and not (run / runlog.TENSORBOARD).exists()


def test_rolled_back_attempts_keep_their_rows(mnist_slices: tuple[Tensors, Tensors], tmp_path: Path) -> None:
    """A loss that turns NaN in epoch 1 above lr 5e-3: the attempt's epoch 0 and the NaN epoch stay in
    the log as rolled back; the retry's rows (at lr 1e-3) follow, equal to its history."""
    run = _run_folder(tmp_path)
    phase = _phase(mnist_slices)
    phase.on_epoch_start = lambda e: setattr(phase, "_epoch", e)
    phase.extra_loss = lambda: torch.tensor(math.nan if getattr(phase, "_epoch", 0) >= 1 and (phase.lr or 1e-2) > 5e-3
                                            else 0.0)
    res = fit_with_retries(phase, _cfg(epochs=3, lr=1e-2), run / "checkpoints" / "0-scratch")
    rows = _assert_log_matches(run, {"0-scratch": res})
    rolled = [r for r in rows if r["rolled_back"] == "1"]
    assert [(r["epoch"], r["train_loss"]) for r in rolled][1] == ("1", "nan")
    assert "loss became nan at epoch 1" in rolled[1]["event"] and rolled[0]["train_loss"] != "nan"
    assert [r["rolled_back"] for r in rows] == ["1", "1", "0", "0", "0"]
    assert res.rollbacks[0]["lr"] == pytest.approx(1e-2) and res.rollbacks[0]["retry_lr"] == pytest.approx(1e-3)
    assert len(res.warnings) == 1 and "trained at lr 0.001" in res.warnings[0]


ARGS = ["--data", "digits8", "--model", "small_cnn", "--model-opt", "width=8", "--model-opt", "hidden=32",
        "--epochs", "6", "--patience", "0", "--seed", "1", "--progress", "off"]


@pytest.mark.slow
def test_sigkill_then_resume_leaves_history_csv_equal_to_history_json(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-m", "transferkit", "pretrain", "--out", str(out), *ARGS]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (out / runlog.FILE).exists() or len(runlog.read_csv(out / runlog.FILE)) < 2:
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
    history = json.loads((out / "history.json").read_text())
    rows = runlog.read_csv(out / runlog.FILE)
    assert _live(rows, "0-scratch") == history[0]["history"]
    assert len(rows) == 6 and [int(r["epoch"]) for r in rows] == list(range(6))
    assert [s for s, _ in _scalars(out / runlog.TENSORBOARD / "0-scratch", "train_loss")] == list(range(6))
