"""A training run killed with SIGKILL resumes from its last checkpoint to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["--data", "digits8", "--model", "small_cnn", "--model-opt", "width=8", "--model-opt", "hidden=32",
        "--epochs", "6", "--patience", "0", "--seed", "1", "--progress", "off"]


def _pretrain(out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, "-m", "transferkit", "pretrain", "--out", str(out), *ARGS],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _epoch_of_checkpoint(run: Path) -> int:
    f = run / "checkpoints" / "0-scratch.json"
    try:
        return int(json.loads(f.read_text())["loop"]["epoch"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _pretrain(whole).wait(timeout=300) == 0

    proc = _pretrain(killed)
    deadline = time.monotonic() + 240
    while _epoch_of_checkpoint(killed) < 2:  # let it write two epoch checkpoints, then kill it hard
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert json.loads((killed / "run.json").read_text())["status"] == "running"  # never looks complete
    assert not (killed / "metrics.json").exists()

    resumed = _pretrain(killed)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0
    assert b"resuming from" in err

    a = json.loads((whole / "metrics.json").read_text())["source"]
    b = json.loads((killed / "metrics.json").read_text())["source"]
    assert a == b
    ha = json.loads((whole / "history.json").read_text())[0]["history"]
    hb = json.loads((killed / "history.json").read_text())[0]["history"]
    assert [h["val_loss"] for h in ha] == [h["val_loss"] for h in hb]
    assert (whole / "model.safetensors").read_bytes() == (killed / "model.safetensors").read_bytes()
