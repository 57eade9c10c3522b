"""An augmented transfer killed with SIGKILL resumes from its last checkpoint to the same weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.mark.slow
def test_sigkill_during_augmented_training_then_resume_matches(kill_resume: Any, source_run: Path,
                                                               tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    runner = kill_resume("transfer", ["--source", str(source_run), "--data", "digits8", "--shots", "10", "--strategy",
                                      "full", "--augment", "on", "--epochs", "8", "--patience", "0", "--batch-size",
                                      "16", "--seed", "1", "--progress", "off"])
    runner.run(whole)
    runner.kill_after(killed, 2)
    runner.resume(killed)
    info = json.loads((whole / "metrics.json").read_text())["strategy_info"]["augment"]
    assert info["augmented"] == ["finetune"]
    assert (whole / "model.safetensors").read_bytes() == (killed / "model.safetensors").read_bytes()
