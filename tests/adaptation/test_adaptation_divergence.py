"""``adapt`` has the divergence guard ``transfer`` has: a NaN loss rolls the phase back and retries it at a
lower learning rate, recorded in metrics.json; when the retries are spent, one line names ``--lr``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import transferkit

SMALL = {"max_source": 200, "max_target": 100, "epochs": 1, "progress": "off"}


def test_a_nan_phase_is_rolled_back_retried_and_recorded(source_run: Path, tmp_path: Path,
                                                        first_fit_diverges: list[float]) -> None:
    calls = first_fit_diverges
    out = tmp_path / "da"
    transferkit.adapt(source_run, "mnist5k", "digits8", method="dann", out=out, lr=0.01, **SMALL)
    assert calls == pytest.approx([0.01, 0.001])
    metrics = json.loads((out / "metrics.json").read_text())
    [phase] = metrics["phases"]
    assert phase["rollbacks"][0]["retry_lr"] == pytest.approx(0.001)
    assert phase["warnings"] and "\n" not in phase["warnings"][0]


def test_lr_1e4_ends_in_one_line_naming_the_learning_rate(source_run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from transferkit.cli import main

    code = main(["adapt", "--source", str(source_run), "--source-data", "mnist5k", "--target-data", "digits8",
                 "--method", "dann", "--lr", "1e4", "--epochs", "1", "--max-source", "200", "--max-target", "100",
                 "--progress", "off", "--out", str(tmp_path / "nan")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("transferkit: error:")]
    assert code == 2 and len(err) == 1
    assert "--lr 10000" in err[0] and "pass a lower --lr" in err[0]
    assert json.loads((tmp_path / "nan" / "run.json").read_text())["status"] == "failed"


def test_the_cli_records_the_rollback_in_metrics_json(source_run: Path, tmp_path: Path,
                                                     first_fit_diverges: list[float],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The same through `transferkit adapt` with the CLI's defaults (SGD at lr 0.01): retried at 0.001."""
    from transferkit.cli import main

    out = tmp_path / "cli"
    code = main(["adapt", "--source", str(source_run), "--source-data", "mnist5k", "--target-data", "digits8",
                 "--method", "dann", "--iterations", "4", "--max-source", "200", "--max-target", "100",
                 "--progress", "off", "--out", str(out)])
    assert code == 0 and first_fit_diverges == pytest.approx([0.01, 0.001])
    metrics = json.loads((out / "metrics.json").read_text())
    [phase] = metrics["phases"]
    assert phase["rollbacks"][0]["lr"] == pytest.approx(0.01) and "nan" in phase["rollbacks"][0]["error"]
    assert metrics["candidates"][0]["info"]["divergence"][0]["retry_lr"] == pytest.approx(0.001)


def test_a_real_nan_at_lr_3_is_rolled_back_and_recovers(source_run: Path, tmp_path: Path) -> None:
    """No fixture: SGD at lr 3 turns DANN's loss NaN (or inf: which one depends on the kernels) within a few steps; the phase is rolled back, retried at
    a tenth of the rate until it trains, and metrics.json says so."""
    from transferkit.cli import main

    out = tmp_path / "lr3"
    code = main(["adapt", "--source", str(source_run), "--source-data", "mnist5k", "--target-data", "digits8",
                 "--method", "dann", "--lr", "3", "--iterations", "10", "--max-source", "200", "--max-target", "100",
                 "--progress", "off", "--out", str(out)])
    assert code == 0
    [phase] = json.loads((out / "metrics.json").read_text())["phases"]
    assert phase["rollbacks"] and all(" nan " in r["error"] or " inf " in r["error"] for r in phase["rollbacks"])
    assert phase["rollbacks"][0]["lr"] == pytest.approx(3.0)
    assert phase["rollbacks"][-1]["retry_lr"] < 3.0 and len(phase["warnings"]) == 1
