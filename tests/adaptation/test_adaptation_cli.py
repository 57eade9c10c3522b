"""``adapt`` / ``methods`` sub-commands end to end on tiny budgets; the run directory they write."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.adaptation import adapt
from transferkit.adaptation import cli as adapt_cli
from transferkit.data import load_dataset
from transferkit.errors import ConfigError

TINY = ["--epochs", "1", "--batch-size", "64", "--precision", "fp32", "--progress", "off",
        "--max-source", "300", "--max-target", "200"]


def _main(argv: list[str]) -> int | None:
    p = argparse.ArgumentParser(prog="transferkit")
    adapt_cli.add_parsers(p.add_subparsers(dest="command", required=True))
    return adapt_cli.run(p.parse_args(argv))


def test_other_commands_are_not_handled() -> None:
    assert adapt_cli.run(argparse.Namespace(command="pretrain")) is None


def test_methods_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("source_only", "dann", "cdan", "mmd", "coral", "mcc", "adabn", "self_training", "auto", "snd"):
        assert name in out


def test_adapt_cli_happy_path_and_evaluate(source_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "da"
    code = _main(["adapt", "--source", str(source_run), "--source-data", "mnist5k", "--target-data", "digits8",
                  "--method", "dann", "--eval-data", "digits8", "--out", str(out), *TINY])
    assert code == 0
    assert "target accuracy" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    m = json.loads((out / "metrics.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["command"] == "adapt" and cfg["target_split"]["kind"] == "unlabelled"
    for key in ("target", "target_before", "source_before", "source_after", "validators"):
        assert key in m
    assert 0 <= m["a_distance"]["before"] <= 2 and 0 <= m["a_distance"]["after"] <= 2
    assert m["target"]["data"].endswith(":heldout")
    loaded = transferkit.load_run(out)
    assert loaded.source_head() is not None
    ev = transferkit.evaluate(out, "digits8", source_data="mnist5k")
    assert 0 <= ev["target"]["accuracy"] <= 1 and "source" in ev


def test_adapt_without_eval_labels_and_unlabelled_npz(source_run: Path, tmp_path: Path) -> None:
    x = load_dataset("digits8").x[:150]
    f = tmp_path / "target.npz"
    np.savez(f, x=x)
    res = adapt(source_run, "mnist5k", str(f), method="coral", epochs=1, batch_size=64, precision="fp32",
                progress="off", max_source=300)
    assert "target" not in res.metrics and np.isfinite(res.metrics["validators"]["im"])


def test_auto_records_candidates_and_selection(source_run: Path) -> None:
    res = adapt(source_run, "mnist5k", "digits8", method="auto", target_labels_for_eval="digits8",
                options={"candidates": "source_only,coral", "trade_offs": "1"}, epochs=1, batch_size=64,
                precision="fp32", progress="off", max_source=300, max_target=200)
    m = res.metrics
    assert [c["label"] for c in m["candidates"]] == ["source_only", "coral(trade_off=1.0)"]
    assert m["chosen"] in {c["label"] for c in m["candidates"]}
    sel = m["selection"]
    assert set(sel["validators"]) == {"entropy", "im", "snd", "bnm", "dev"} and 0 <= sel["match_rate"] <= 1
    assert all("target_accuracy" in c for c in m["candidates"])
    agr = m["agreement"]
    assert set(agr["picks"]) == set(sel["validators"]) and 0 <= agr["spread"] <= 1
    assert any("suggest-labels" in n for n in res.notes) == agr["disagree"]


def test_adapt_errors_are_clear(source_run: Path) -> None:
    with pytest.raises(ConfigError, match="unknown adaptation method 'dnn'.*did you mean 'dann'"):
        adapt(source_run, "mnist5k", "digits8", method="dnn")
    with pytest.raises(ConfigError, match="unknown validator"):
        adapt(source_run, "mnist5k", "digits8", validator="oracle")


def test_adapt_defaults_to_the_papers_sgd_recipe(source_run: Path, tmp_path: Path) -> None:
    """Unless told otherwise, adaptation trains with SGD at lr 0.01 (DANN/CDAN/MCC papers); choices are kept."""
    kw = {"method": "source_only", "epochs": 1, "batch_size": 64, "precision": "fp32", "progress": "off",
          "max_source": 200, "max_target": 100}
    adapt(source_run, "mnist5k", "digits8", out=tmp_path / "a", **kw)
    train = json.loads((tmp_path / "a" / "config.json").read_text())["train"]
    assert (train["optimizer"], train["lr"]) == ("sgd", 0.01)
    adapt(source_run, "mnist5k", "digits8", out=tmp_path / "b", optimizer="adamw", **kw)
    train = json.loads((tmp_path / "b" / "config.json").read_text())["train"]
    assert train["optimizer"] == "adamw" and train["lr"] == 1e-3


def test_adapt_augment_is_the_training_flag_and_restyle_source_is_adapts(
        source_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: adapt's boolean --augment replaced the training --augment, so `adapt --augment on` was an
    argparse error; now --augment on is refused in one line (adapt's loop never applies the policy)."""
    from transferkit.cli import main

    base = ["adapt", "--source", str(source_run), "--source-data", "mnist5k", "--target-data", "digits8",
            "--method", "source_only", *TINY]
    assert main([*base, "--augment", "on", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--augment on" in err and "--restyle-source" in err, err
    assert not (tmp_path / "a").exists()
    b = tmp_path / "b"
    assert main([*base, "--augment", "off", "--restyle-source", "--max-source", "100", "--out", str(b)]) == 0
    cfg = json.loads((b / "config.json").read_text())
    assert cfg["restyle_source"] is True and cfg["train"]["augment"] == "off"


def test_adapt_augment_bool_is_a_deprecated_alias(source_run: Path) -> None:
    with pytest.warns(DeprecationWarning, match="restyle_source"):
        res = adapt(source_run, "mnist5k", "digits8", method="source_only", epochs=1, batch_size=64,
                    precision="fp32", progress="off", max_source=100, max_target=100, augment=True)
    assert res.metrics["method"] == "source_only"
