"""A run's config.json is its spec: ``--config runs/x/config.json --out runs/y`` replays the run with
bit-identical weights, its relative paths resolved against the folder the run started in; the keyword form
and the spec form of the Python API are one run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import transferkit
from transferkit.cli import main
from transferkit.errors import ConfigError
from transferkit.io import load_tensors
from transferkit.spec import PretrainSpec, SplitSpec, TransferSpec
from transferkit.strategies import make_strategy

FAST = ["--batch-size", "64", "--precision", "fp32", "--progress", "off"]


def _same_weights(a: Path, b: Path) -> None:
    ta, tb = load_tensors(a / "model.safetensors"), load_tensors(b / "model.safetensors")
    assert ta.keys() == tb.keys() and ta
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def _config(run: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((run / "config.json").read_text())


def test_a_transfer_run_replays_bit_identically_from_its_config(source_run: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    shutil.copytree(source_run, work / "src")  # the source named by a path relative to the run's folder
    monkeypatch.chdir(work)
    argv = ["transfer", "--source", "src", "--data", "digits8", "--strategy", "lp_ft", "--option", "ft_lr_scale=0.25",
            "--shots", "5", "--seed", "3", "--epochs", "2", "--lr", "0.002", "--out", "runs/x", *FAST]
    assert main(argv) == 0, capsys.readouterr().err
    config = _config(work / "runs" / "x")
    assert config["cwd"] == str(work) and config["source"] == "src" and config["split"]["seed"] == 3
    assert config["provenance"]["epochs"] == "user" and config["provenance"]["weight_decay"] == "default"
    assert config["train"]["epochs"] == 2 and config["options"] == {"ft_lr_scale": 0.25}
    spec = TransferSpec.from_run_config(config)
    assert spec.train == {"epochs": 2, "lr": 0.002, "batch_size": 64, "precision": "fp32", "progress": "off"}
    assert (spec.shots, spec.seed, spec.split) == (5, 3, SplitSpec(seed=3))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the replay runs from another folder: "src" is the run's, not this one's
    assert main(["transfer", "--config", str(work / "runs" / "x" / "config.json"), "--out", "y"]) == 0, \
        capsys.readouterr().err
    assert not (work / "runs" / "y").exists() and (elsewhere / "y" / "model.safetensors").exists()
    _same_weights(work / "runs" / "x", elsewhere / "y")
    replayed = _config(elsewhere / "y")
    assert replayed["source"] == str(work / "src") and replayed["train"] == config["train"]
    assert replayed["provenance"] == config["provenance"] and replayed["options"] == config["options"]

    # typed flags override the replayed spec; a run config of another command is refused in one line
    assert main(["transfer", "--config", str(work / "runs" / "x" / "config.json"), "--out", "z", "--shots", "3",
                 "--epochs", "1"]) == 0
    assert (_config(elsewhere / "z")["shots"], _config(elsewhere / "z")["train"]["epochs"]) == (3, 1)
    capsys.readouterr()
    assert main(["pretrain", "--config", str(work / "runs" / "x" / "config.json"), "--out", "w"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the config of a 'transfer' run" in err and not (elsewhere / "w").exists()


def test_a_pretrain_run_replays_bit_identically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "--data", "digits8", "--model", "mlp", "--model-opt", "hidden=16", "--epochs", "2",
                 "--out", "a", *FAST]) == 0, capsys.readouterr().err
    assert main(["pretrain", "--config", "a/config.json", "--out", "b"]) == 0, capsys.readouterr().err
    _same_weights(tmp_path / "a", tmp_path / "b")
    config = _config(tmp_path / "a")
    assert PretrainSpec.from_run_config(config) == PretrainSpec.from_run_config(_config(tmp_path / "b"))
    assert config["provenance"]["epochs"] == "user" and config["provenance"]["optimizer"] == "default"


def test_spec_keyword_and_configured_strategy_forms_are_one_run(source_run: Path) -> None:
    kw: dict[str, Any] = {"shots": 3, "seed": 1, "epochs": 1, "batch_size": 64, "precision": "fp32", "progress": "off"}
    a = transferkit.transfer(source_run, "digits8", strategy="lp_ft", options={"ft_lr_scale": 0.25}, **kw)
    b = transferkit.transfer(TransferSpec(source=str(source_run), data="digits8", options={"ft_lr_scale": "0.25"},
                                          shots=3, seed=1, train={k: kw[k] for k in ("epochs", "batch_size",
                                                                                     "precision", "progress")}))
    c = transferkit.transfer(source_run, "digits8", strategy=make_strategy("lp_ft", {"ft_lr_scale": 0.25}), **kw)
    options = type(make_strategy("lp_ft").options)(ft_lr_scale=0.25)  # the strategy's Options instance
    d = transferkit.transfer(source_run, "digits8", options=options, **kw)
    for other in (b, c, d):
        for k, v in a.model.state_dict().items():
            assert torch.equal(v, other.model.state_dict()[k]), k
    with pytest.raises(ConfigError, match="transfer option head='old'"):
        transferkit.transfer(source_run, "digits8", head="old")


def test_an_older_run_config_and_the_path_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run older than provenance replays with every setting it trained with; without a recorded cwd its
    relative paths are the current folder's; names stay names, absolute paths stay, '+' parts each resolve."""
    from transferkit.configfile import RunConfig

    old = {"command": "transfer", "transferkit_version": "0.1.0", "source": "runs/src", "data": "digits8",
           "strategy": "full", "options": {}, "shots": 5, "seed": 2, "split": {"val": 0.15, "test": 0.3, "seed": 2},
           "unlabelled": "rest+extra.npz", "train": {"epochs": 3, "lr": 0.01, "seed": 2}, "recipe": None}
    spec = TransferSpec.from_run_config(old)
    assert spec.train == {"epochs": 3, "lr": 0.01} and spec.split == SplitSpec(seed=2)
    monkeypatch.chdir(tmp_path)
    values = RunConfig(tmp_path / "config.json", old).spec_values(TransferSpec)
    assert values["source"] == str(tmp_path / "runs" / "src") and values["data"] == "digits8"
    assert values["unlabelled"] == f"rest+{tmp_path / 'extra.npz'}"
    recorded = RunConfig(tmp_path / "config.json", {**old, "cwd": "/data/team", "source": "/abs/src"})
    assert recorded.spec_values(TransferSpec)["source"] == "/abs/src"
    assert recorded.resolve("source_data", "mnist5k") == "mnist5k"
    assert recorded.resolve("data", "x.csv") == "/data/team/x.csv"


def test_only_a_complete_runs_config_json_is_replayed(source_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A hand-made JSON file with a run config's keys is read as hand-written flags, under the path rule
    (no absolute paths), never as a replay; a run's config.json replays only with pretrain / transfer / adapt."""
    monkeypatch.chdir(tmp_path)
    forged = tmp_path / "evil" / "config.json"
    forged.parent.mkdir()
    forged.write_text(json.dumps({"transferkit_version": "0", "command": "transfer", "cwd": "/",
                                  "source": str(source_run), "data": "digits8"}))
    assert main(["transfer", "--config", str(forged), "--out", "o"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown key 'transferkit_version'" in err, err  # not a replay
    assert not (tmp_path / "o").exists()
    run = tmp_path / "t"
    assert main(["transfer", "--source", str(source_run), "--data", "digits8", "--strategy", "l2sp", "--option",
                 "alpha=0.01", "--shots", "2", "--epochs", "1", "--out", str(run), *FAST]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--config", str(run / "config.json"), str(run), "--data", "digits8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "replays with pretrain / transfer / adapt, not evaluate" in err, err
    # another strategy on replay: the recorded strategy's options are not carried over to it
    assert main(["transfer", "--config", str(run / "config.json"), "--strategy", "linear_probe", "--out", "lp"]) == 0
    assert _config(tmp_path / "lp")["strategy"] == "linear_probe" and _config(tmp_path / "lp")["options"] == {}


def test_a_users_head_lr_scale_is_part_of_the_replayed_spec() -> None:
    config = {"command": "transfer", "source": "s", "data": "d", "train": {"epochs": 2, "seed": 0},
              "head_lr_scale": 3.0, "provenance": {"epochs": "user", "head_lr_scale": "user", "seed": "run seed"}}
    assert TransferSpec.from_run_config(config).train == {"epochs": 2, "head_lr_scale": 3.0}
    config["provenance"]["head_lr_scale"] = "default"
    assert TransferSpec.from_run_config(config).train == {"epochs": 2}


def test_a_spec_and_keyword_arguments_together_are_refused() -> None:
    spec = TransferSpec(source="s", data="digits8")
    with pytest.raises(ConfigError, match="not both .*also given: strategy, epochs"):
        transferkit.transfer(spec, strategy="l2sp", epochs=7)
    with pytest.raises(ConfigError, match="head='x' is not one of auto, new, keep"):
        TransferSpec(source="s", data="d", head="x")  # type: ignore[arg-type]
