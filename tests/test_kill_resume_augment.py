"""An augmented transfer killed with SIGKILL resumes from its last checkpoint to the same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _transfer(source: Path, out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    args = ["--source", str(source), "--data", "digits8", "--shots", "10", "--strategy", "full", "--augment", "on",
            "--epochs", "8", "--patience", "0", "--batch-size", "16", "--seed", "1", "--progress", "off"]
    return subprocess.Popen([sys.executable, "-m", "transferkit", "transfer", "--out", str(out), *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _epoch(run: Path) -> int:
    try:
        return int(json.loads((run / "checkpoints" / "0-finetune.json").read_text())["loop"]["epoch"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


@pytest.mark.slow
def test_sigkill_during_augmented_training_then_resume_matches(source_run: Path, tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _transfer(source_run, whole).wait(timeout=300) == 0
    proc = _transfer(source_run, killed)
    deadline = time.monotonic() + 240
    while _epoch(killed) < 2:
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    resumed = _transfer(source_run, killed)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and b"resuming from" in err
    info = json.loads((whole / "metrics.json").read_text())["strategy_info"]["augment"]
    assert info["augmented"] == ["finetune"]
    assert (whole / "model.safetensors").read_bytes() == (killed / "model.safetensors").read_bytes()
