"""AdaptSpec: typed fields, auto's typed options, settings resolved once with provenance, config.json as the
serialised spec (a replay gives bit-identical weights), and the source-free path (no --source-data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from transferkit.adaptation import adapt
from transferkit.adaptation.api import spec_of
from transferkit.adaptation.candidates import auto_options, method_candidates
from transferkit.adaptation.simple import AdaBN
from transferkit.adaptation.spec import DEFAULT_ITERATIONS, AdaptSpec, AutoOptions
from transferkit.adaptation.stages import resolve
from transferkit.errors import ConfigError

TINY = {"max_source": 200, "max_target": 100, "batch_size": 64, "precision": "fp32", "progress": "off"}


def test_the_spec_module_loads_no_torch() -> None:
    code = "import sys, transferkit.adaptation.spec; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spec_round_trip_and_one_line_errors() -> None:
    spec = AdaptSpec(source="runs/src", source_data="mnist5k", target_data="digits8", method="auto",
                     options={"candidates": "dann:trade_off=1,mcc", "trade_offs": "0.3,1"}, iterations=40,
                     train={"lr": 0.02})
    assert AdaptSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.to_dict()["target_split"] == {"val": 0.15, "test": 0.3, "seed": None, "kind": "unlabelled"}
    with pytest.raises(ConfigError, match="iterations must be at least 1, got 0"):
        AdaptSpec(source="s", target_data="t", iterations=0)
    with pytest.raises(ConfigError, match="unknown adapt option 'iteration'"):
        AdaptSpec.from_dict({"source": "s", "target_data": "t", "iteration": 5})
    with pytest.raises(ConfigError, match="adapt option max_target='many' is not int"):
        AdaptSpec.from_dict({"source": "s", "target_data": "t", "max_target": "many"})


def test_auto_options_are_typed_and_the_cli_strings_still_work() -> None:
    auto = auto_options({"candidates": "dann:trade_off=1,mcc", "trade_offs": "0.3,1"})
    assert auto == AutoOptions(candidates=("dann:trade_off=1", "mcc"), trade_offs=(0.3, 1.0))
    labels = [c[0] for c in method_candidates("auto", auto)]
    assert labels == ["dann(trade_off=1)", "mcc(trade_off=0.3)", "mcc(trade_off=1.0)"]
    assert method_candidates("auto", {"candidates": "dann:trade_off=1,mcc", "trade_offs": "0.3,1"}) == \
        method_candidates("auto", auto)
    with pytest.raises(ConfigError, match="auto option trade_offs='x' is not a valid float"):
        auto_options({"trade_offs": "x"})
    with pytest.raises(ConfigError, match="unknown auto option 'candidate'"):
        auto_options({"candidate": "dann"})
    with pytest.raises(ConfigError, match="unknown mcc option 'temp'"):  # typed against mcc's Options, before loading
        resolve(AdaptSpec(source="s", source_data="mnist5k", target_data="t", method="auto",
                          options={"candidates": "dann,mcc:temp=2"}))


def test_settings_resolved_once_with_provenance() -> None:
    plan = resolve(AdaptSpec(source="s", source_data="mnist5k", target_data="digits8"))
    assert (plan.iterations, plan.restyle_source) == (DEFAULT_ITERATIONS, True)
    assert (plan.cfg.optimizer, plan.cfg.lr, plan.cfg.grad_clip) == ("sgd", 0.01, 0.0)
    prov = plan.provenance
    assert prov["iterations"].startswith("adapt default") and prov["restyle_source"].startswith("recipe (mnist5k")
    assert prov["optimizer"].startswith("adapt default") and prov["lr"].startswith("adapt default")
    assert prov["weight_decay"] == "default" and prov["seed"] == "run seed"
    given = resolve(spec_of("s", "wine", "t", epochs=3, optimizer="adamw", restyle_source=False))
    assert given.iterations is None and given.cfg.epochs == 3 and given.restyle_source is False
    assert (given.cfg.lr, given.cfg.grad_clip) == (1e-3, 1.0)  # TrainConfig's: the SGD defaults are for SGD
    assert given.provenance["epochs"] == given.provenance["restyle_source"] == "user"
    other = resolve(AdaptSpec(source="s", source_data="wine", target_data="t"))
    assert other.restyle_source is False and other.provenance["restyle_source"].startswith("default")


def test_config_json_replays_to_bit_identical_weights(source_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Through the API (AdaptSpec.from_dict) and the CLI (`adapt --config RUN/config.json --out DIR`)."""
    from transferkit.cli import main

    first, second, third = tmp_path / "x", tmp_path / "y", tmp_path / "z"
    adapt(source_run, "mnist5k", "digits8", method="dann", out=first, iterations=6, seed=3, **TINY)
    config = json.loads((first / "config.json").read_text())
    assert config["provenance"]["restyle_source"].startswith("recipe") and config["restyle_source"] is True
    assert config["provenance"]["iterations"] == "user" and config["provenance"]["lr"].startswith("adapt default")
    assert set(config["versions"]) >= {"transferkit", "torch", "numpy", "python"}
    spec = AdaptSpec.from_dict(config)
    assert spec.restyle_source is None and set(spec.train) == set(TINY) - {"max_source", "max_target"}
    adapt(spec, out=second)
    assert json.loads((second / "config.json").read_text()) == config
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert main(["adapt", "--config", str(first / "config.json"), "--out", str(third)]) == 0
    assert "run: " in capsys.readouterr().out
    replayed = json.loads((third / "config.json").read_text())
    assert {k: v for k, v in replayed.items() if k != "cwd"} == {k: v for k, v in config.items() if k != "cwd"}
    assert (first / "model.safetensors").read_bytes() == (third / "model.safetensors").read_bytes()


def test_source_free_needs_a_method_that_reads_no_source(source_run: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="method 'dann' trains on labelled source data: pass --source-data"):
        adapt(source_run, target_data="digits8", method="dann", out=tmp_path / "no")
    assert not (tmp_path / "no").exists()
    monkeypatch.setattr(AdaBN, "needs_source", False, raising=False)  # statistics only: no source batch read
    plan = resolve(AdaptSpec(source="s", target_data="digits8", method="auto"))  # auto: the source-free methods
    assert "adabn" in [c.name for c in plan.candidates]
    assert all(not getattr(c.method, "needs_source", True) for c in plan.candidates)
    res = adapt(source_run, target_data="digits8", method="adabn", target_labels_for_eval="digits8",
                out=tmp_path / "sf", **TINY)
    m = res.metrics
    assert "source_before" not in m and "a_distance" not in m and "dev" not in m["validators"]
    assert any("no source data" in n for n in m["notes"]) and "target" in m
    assert json.loads((tmp_path / "sf" / "config.json").read_text())["source_data"] is None


def test_cli_flags_come_from_the_spec_and_restyle_source_takes_off() -> None:
    import argparse

    from transferkit.adaptation import cli as adapt_cli
    from transferkit.spec import spec_from_args

    p = argparse.ArgumentParser(prog="transferkit")
    adapt_cli.add_parsers(p.add_subparsers(dest="command", required=True))
    base = ["adapt", "--source", "s", "--target-data", "digits8", "--out", "o"]
    for extra, want in (([], None), (["--restyle-source"], True), (["--restyle-source", "off"], False)):
        spec = spec_from_args(AdaptSpec, p.parse_args([*base, *extra]), train={})
        assert spec.restyle_source is want and spec.source_data is None
    spec = spec_from_args(AdaptSpec, p.parse_args([*base, "--option", "candidates=dann:trade_off=1,mcc",
                                                   "--method", "auto", "--max-target", "50"]), train={})
    assert spec.max_target == 50 and auto_options(spec.options).candidates == ("dann:trade_off=1", "mcc")
