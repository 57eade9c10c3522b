"""An ``adapt`` run killed with SIGKILL resumes from its last checkpoint to the same weights (issue 18)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _adapt(source: Path, out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    args = ["--source", str(source), "--source-data", "mnist5k", "--target-data", "digits8", "--method", "dann",
            "--max-source", "300", "--max-target", "200", "--iterations", "60", "--patience", "0", "--seed", "1",
            "--precision", "fp32", "--progress", "off"]  # 5 steps per epoch: 12 epochs, re-styled source batches
    return subprocess.Popen([sys.executable, "-m", "transferkit", "adapt", "--out", str(out), *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _epoch(run: Path) -> int:
    epochs = [0]
    for f in (run / "checkpoints").rglob("*.json"):
        try:
            epochs.append(int(json.loads(f.read_text())["loop"]["epoch"]))
        except (json.JSONDecodeError, KeyError, OSError, TypeError, ValueError):
            continue
    return max(epochs)


@pytest.mark.slow
def test_sigkill_mid_adaptation_then_resume_matches_an_uninterrupted_run(source_run: Path, tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _adapt(source_run, whole).wait(timeout=600) == 0

    proc = _adapt(source_run, killed)
    deadline = time.monotonic() + 300
    while _epoch(killed) < 3:  # three epoch checkpoints written, then a hard kill
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert json.loads((killed / "run.json").read_text())["status"] == "running"  # never looks complete
    assert not (killed / "metrics.json").exists()

    resumed = _adapt(source_run, killed)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()[-2000:]
    assert b"resuming from" in err
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (whole, killed))
    assert a["validators"] == b["validators"] and a["source_after"] == b["source_after"]
    assert (whole / "model.safetensors").read_bytes() == (killed / "model.safetensors").read_bytes()
