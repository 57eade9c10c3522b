"""``adapt --method auto --budget``: successive halving on the label-free validator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from transferkit.adaptation.api import adapt
from transferkit.adaptation.halving import rung_epochs
from transferkit.adaptation.spec import AdaptSpec, parse_budget
from transferkit.cli import main
from transferkit.errors import ConfigError


def test_budget_parses_seconds_and_durations() -> None:
    assert [parse_budget(v) for v in ("300", "300s", "5m", "0.5h", 12)] == [300, 300, 300, 1800, 12]
    for bad in ("5 minutes", "-3", "0", "m", "nan"):
        with pytest.raises(ConfigError, match="budget"):
            parse_budget(bad)
    with pytest.raises(ConfigError, match="only --method auto"):
        AdaptSpec(source="s", target_data="t", method="dann", budget="5m")


def test_bad_budget_on_the_cli_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["adapt", "--source", "x", "--source-data", "mnist5k", "--target-data", "digits8", "--method",
                 "auto", "--budget", "5 minutes", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "budget" in err and len(err.splitlines()) == 1


def test_rungs_halve_to_the_full_epochs() -> None:
    assert rung_epochs(8, 7) == [1, 2, 4, 8]
    assert rung_epochs(8, 2) == [4, 8]
    assert rung_epochs(3, 1) == [3]


def test_auto_with_a_budget_prunes_records_rungs_and_keeps_time(source_run: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from transferkit.engine import loop

    resumed: list[int] = []  # the epoch each resumed phase continues after (a restart would resume none)
    real = loop.load_checkpoint

    def spy(*a: Any, **kw: Any) -> Any:
        counters, best = real(*a, **kw)
        resumed.append(int(counters["epoch"]))
        return counters, best

    monkeypatch.setattr(loop, "load_checkpoint", spy)
    t0 = time.perf_counter()
    res = adapt(source_run, "mnist5k", "digits8", method="auto", budget="60s", out=tmp_path / "run",
                options={"candidates": "source_only,coral,mmd,dann", "trade_offs": "1"}, epochs=4,
                batch_size=64, precision="fp32", progress="off", max_source=300, max_target=200)
    assert time.perf_counter() - t0 < 60 + 30
    rungs = res.metrics["rungs"]
    trained = [r for r in rungs if "scores" in r]
    assert len(trained[0]["scores"]) == 4 and len(trained[0]["kept"]) == 2
    assert [r["epochs"] for r in trained] == [1, 2, 4][: len(trained)] and len(trained) >= 2
    assert set(trained[1]["scores"]) == set(trained[0]["kept"])
    assert res.metrics["chosen"] in trained[-1]["kept"]
    err = capsys.readouterr().err
    assert "[auto rung 0] coral(trade_off=1.0): epoch 1/4 im " in err
    assert "[auto rung 1]" in err
    # rung 1 resumes its 2 survivors after their epoch 1, rung 2 (if trained) its survivor after epoch 2
    assert resumed[:2] == [1, 1] and resumed[2:] in ([], [2])
