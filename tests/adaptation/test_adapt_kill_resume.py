"""An ``adapt`` run killed with SIGKILL resumes from its last checkpoint to the same weights (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.mark.slow
def test_sigkill_mid_adaptation_then_resume_matches_an_uninterrupted_run(kill_resume: Any, source_run: Path,
                                                                         tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    # 5 steps per epoch: 12 epochs, re-styled source batches
    runner = kill_resume("adapt", ["--source", str(source_run), "--source-data", "mnist5k", "--target-data",
                                   "digits8", "--method", "dann", "--max-source", "300", "--max-target", "200",
                                   "--iterations", "60", "--patience", "0", "--seed", "1", "--precision", "fp32",
                                   "--progress", "off"], env={"OMP_NUM_THREADS": "1"})
    runner.run(whole)
    runner.kill_after(killed, 3)  # three epoch checkpoints written, then a hard kill
    runner.resume(killed)
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (whole, killed))
    assert a["validators"] == b["validators"] and a["source_after"] == b["source_after"]
    assert (whole / "model.safetensors").read_bytes() == (killed / "model.safetensors").read_bytes()
