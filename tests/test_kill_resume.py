"""A training run killed with SIGKILL resumes from its last checkpoint to the same result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ARGS = ["--data", "digits8", "--model", "small_cnn", "--model-opt", "width=8", "--model-opt", "hidden=32",
        "--epochs", "6", "--patience", "0", "--seed", "1", "--progress", "off"]


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(kill_resume: Any, tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    runner = kill_resume("pretrain", ARGS)
    runner.run(whole)
    runner.kill_after(killed, 2)  # two epoch checkpoints written, then a hard kill
    runner.resume(killed)

    a = json.loads((whole / "metrics.json").read_text())["source"]
    b = json.loads((killed / "metrics.json").read_text())["source"]
    assert a == b
    ha = json.loads((whole / "history.json").read_text())[0]["history"]
    hb = json.loads((killed / "history.json").read_text())[0]["history"]
    assert [h["val_loss"] for h in ha] == [h["val_loss"] for h in hb]
    assert (whole / "model.safetensors").read_bytes() == (killed / "model.safetensors").read_bytes()
