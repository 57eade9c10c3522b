"""``$TRANSFERKIT_MAX_EPOCHS`` (quick mode) says so once per command and is recorded in config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import transferkit
from transferkit.engine.config import MAX_EPOCHS_ENV


def _config(run: Path) -> dict[str, object]:
    return json.loads((run / "config.json").read_text())


def test_the_cap_warns_once_and_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Before: config.json said 8 epochs while the run trained 1, and nothing said so."""
    monkeypatch.setenv(MAX_EPOCHS_ENV, "1")
    transferkit.pretrain("digits8", "mlp", tmp_path / "src", model_kwargs={"hidden": 16}, progress="off")
    assert _config(tmp_path / "src")["train_cap"] == {"max_epochs": 1, "from": f"${MAX_EPOCHS_ENV}"}
    assert capsys.readouterr().err.count(f"warning: ${MAX_EPOCHS_ENV}=1 caps training") == 1
    transferkit.transfer(tmp_path / "src", "digits8", strategy="lp_ft", out=tmp_path / "t", shots=5, progress="off")
    assert capsys.readouterr().err.count(f"${MAX_EPOCHS_ENV}=1 caps training") == 1  # once, not once per phase
    assert _config(tmp_path / "t")["train_cap"]["max_epochs"] == 1  # type: ignore[index]


def test_no_cap_no_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(MAX_EPOCHS_ENV, raising=False)
    transferkit.pretrain("digits8", "mlp", tmp_path / "src", model_kwargs={"hidden": 16}, progress="off",
                         epochs=1)
    assert "train_cap" not in _config(tmp_path / "src") and MAX_EPOCHS_ENV not in capsys.readouterr().err
