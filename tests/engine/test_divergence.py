"""Divergence honesty: a phase that still diverges or ends near chance after its rollbacks fails the
run with one line naming the learning rate and a lower one; a phase that recovers says at which
learning rate, on stderr and in metrics.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import transferkit
from transferkit.cli import main
from transferkit.engine import divergence, progress, runlog
from transferkit.engine.config import TrainConfig
from transferkit.engine.divergence import chance_level, did_not_learn, fit_with_retries, near_chance
from transferkit.engine.loop import Phase, PhaseResult
from transferkit.models import ModelSpec, build_model

Tensors = tuple[torch.Tensor, torch.Tensor]
TINY = ["--model", "small_cnn", "--model-opt", "width=8", "--model-opt", "hidden=32"]


def _phase(val_labels: list[int] | None, k: int = 10) -> Phase:
    m = torch.nn.Linear(2, k)
    y = torch.arange(k)
    val = None if val_labels is None else (torch.zeros(len(val_labels), 2), torch.tensor(val_labels))
    return Phase("p", m, (torch.zeros(k, 2), y), val, [{"params": list(m.parameters())}])


def _result(acc: float, last_loss: float) -> PhaseResult:
    return PhaseResult("p", history=[{"epoch": 0, "train_loss": last_loss, "lr": 1e-3}], best_val_acc=acc)


def test_chance_is_the_majority_share() -> None:
    assert chance_level(torch.tensor([0, 0, 0, 1])) == 0.75
    near, chance = near_chance(0.12, torch.arange(100) % 10)
    assert near and chance == pytest.approx(0.1)
    assert not near_chance(0.5, torch.arange(100) % 10)[0]


@pytest.mark.parametrize(
    ("val", "acc", "loss", "retry", "failed"),
    [([0, 1] * 50, 0.11, 1.0, False, False),   # first attempt near chance, sane loss: a hard task, not divergence
     ([0, 1] * 50, 0.11, 1e4, False, True),    # first attempt near chance with a blown-up loss: wrecked
     ([0, 1] * 50, 0.90, 1e4, False, False),   # blown-up last loss but a good best epoch (restored): fine
     ([0, 1] * 50, 0.11, 1.0, True, True),     # a retry near chance
     ([0, 1] * 50, 0.90, 1e4, True, True),     # a retry still diverging
     ([0, 1] * 50, 0.90, 1.0, True, False),    # a retry that learned
     (None, math.nan, 1e4, False, True),       # no labelled validation: the loss alone
     (None, math.nan, 1.0, True, False)],
)
def test_did_not_learn(val: list[int] | None, acc: float, loss: float, retry: bool, failed: bool) -> None:
    assert (did_not_learn(_phase(val), _result(acc, loss), retry) is not None) == failed


def test_a_rollback_is_resumed_where_it_stopped(mnist_slices: tuple[Tensors, Tensors], tmp_path: Path) -> None:
    """Killed after a rollback was recorded: the resumed phase trains at the retry's learning rate."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "running", "kind": "pretrain"}))
    ckpt = run / "checkpoints" / "0-scratch"
    kept = [{"phase": "scratch", "error": "phase 'scratch': loss became nan at epoch 0 step 3", "lr": 1e-2,
             "retry_lr": 1e-3, "rows": []}]
    runlog.rollbacks_file(ckpt).write_text(json.dumps(kept))
    (x, y), (xv, yv) = mnist_slices
    m = build_model(ModelSpec("mlp", (1, 28, 28), [str(i) for i in range(10)], {"hidden": 32}), 0)
    phase = Phase("scratch", m, (x[::2], y[::2]), (xv[::3], yv[::3]), [{"params": list(m.parameters())}])
    cfg = TrainConfig(epochs=2, batch_size=32, precision="fp32", progress="off", lr=1e-2, schedule="constant")
    recorded: list[dict[str, Any]] = []
    res = fit_with_retries(phase, cfg, ckpt, on_rollback=recorded.append)
    assert [h["lr"] for h in res.history] == pytest.approx([1e-3, 1e-3])
    assert [r["retry_lr"] for r in res.rollbacks] == pytest.approx([1e-3]) and len(res.warnings) == 1
    assert recorded == res.rollbacks  # ctx.info["divergence"] as in the run before the kill


def test_lr_1e6_fails_in_one_line_naming_the_learning_rate(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: two rollbacks, then 10% accuracy (chance) reported with exit 0 and no warning."""
    monkeypatch.setenv(progress.ENV, "0")
    out = tmp_path / "run"
    code = main(["pretrain", "--data", "digits8", *TINY, "--epochs", "2", "--lr", "1e6", "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code != 0 and stdout == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("transferkit: error: training diverged at --lr 1e+06: "), err
    assert "gave up after 2 retries" in last and last.endswith("pass a lower --lr, e.g. --lr 0.001"), last
    assert "Traceback" not in err
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert not (out / "metrics.json").exists()
    rows = runlog.read_csv(out / runlog.FILE)
    assert rows and {r["rolled_back"] for r in rows} == {"1"}  # every attempt failed
    assert {float(r["lr"]) for r in rows if r["train_loss"] == "nan"} >= {1e6}


def test_a_recovery_is_recorded_in_metrics_json(tmp_path: Path, first_fit_diverges: list[float],
                                                caplog: pytest.LogCaptureFixture) -> None:
    """The first attempt diverges (as a NaN would), the retry trains: a one-line warning, in metrics.json too."""
    calls = first_fit_diverges
    out = tmp_path / "run"
    transferkit.pretrain("digits8", "small_cnn", out, model_kwargs={"width": 8, "hidden": 32}, epochs=1, lr=1e-2,
                         progress="off")
    assert calls == pytest.approx([1e-2, 1e-3])
    phase = json.loads((out / "metrics.json").read_text())["phases"][0]
    assert phase["rollbacks"][0]["retry_lr"] == pytest.approx(1e-3)
    [warning] = phase["warnings"]
    assert warning.startswith("phase 'scratch' trained at lr 0.001") and "\n" not in warning
    assert warning in caplog.text
