"""``--config FILE``: flags from TOML/JSON, typed flags win, nothing imported, paths stay inside."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from transferkit.cli import build_parser, main
from transferkit.configfile import expand_config
from transferkit.data import load_dataset
from transferkit.io import read_json


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A user's folder: real digits8 data as .npz next to the config."""
    ds = load_dataset("digits8")
    idx = np.concatenate([np.flatnonzero(ds.y == c)[:12] for c in range(10)])
    np.savez(tmp_path / "target.npz", x=ds.x[idx], y=ds.y[idx])
    return tmp_path


def test_config_flags_run_and_typed_flags_win(project: Path, source_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(source_run, project / "src")
    (project / "run.toml").write_text(
        'source = "src"\ndata = "target.npz"\nstrategy = "linear_probe"\nepochs = 9\nout = "runs/a"\n'
        'option = {}\ncompare-scratch = false\n')
    code, err = _run(["transfer", "--config", str(project / "run.toml"), "--epochs", "2"], capsys)
    assert code == 0, err
    cfg = read_json(project / "runs" / "a" / "config.json")
    assert cfg["strategy"] == "linear_probe" and cfg["train"]["epochs"] == 2  # typed flag overrides the file
    assert cfg["data"] == str((project / "target.npz").resolve())


def test_json_config_and_registered_names(project: Path) -> None:
    (project / "c.json").write_text(json.dumps({"data": "mnist5k", "model": "mlp", "model_opt": {"hidden": 8},
                                                "out": "o"}))
    argv = expand_config(build_parser(), ["pretrain", "--config", str(project / "c.json")])
    assert argv[:5] == ["pretrain", "--data", "mnist5k", "--model", "mlp"]  # names are not paths
    assert ["--model-opt", "hidden=8"] == argv[5:7] and argv[-1] == str((project / "o").resolve())


@pytest.mark.parametrize(("body", "message"), [
    ('data = "../elsewhere.npz"', "escapes the config's folder"),
    ('data = "/etc/passwd"', "is absolute"),
    ('out = "~/runs"', "is absolute"),
    ('epoch = 3', "unknown key 'epoch' for `transfer` (did you mean 'epochs'?)"),
    ('strategy = ["full"]', "takes one value, not a list"),
    ('compare_scratch = "yes"', "must be true or false"),
    ('data = = 1', "not valid TOML"),
])
def test_bad_config_is_one_line(project: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "bad.toml").write_text(body + "\n")
    code, err = _run(["transfer", "--config", str(project / "bad.toml"), "--source", "x", "--data", "y", "--out", "z"],
                     capsys)
    assert code != 0 and message in err and len(err.splitlines()) == 1, err


def test_symlink_out_of_the_folder_is_refused(project: Path, tmp_path_factory: pytest.TempPathFactory,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path_factory.mktemp("outside")
    os.symlink(outside, project / "link")
    (project / "c.toml").write_text('data = "link/x.npz"\n')
    code, err = _run(["transfer", "--config", str(project / "c.toml"), "--source", "s", "--out", "o"], capsys)
    assert code == 2 and "escapes the config's folder" in err


def test_a_config_cannot_import_modules(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Names go through registries only: a module path as a model name is an unknown model."""
    assert "antigravity" not in sys.modules
    (project / "c.toml").write_text('data = "mnist5k"\nmodel = "antigravity"\nout = "o"\n')
    code, err = _run(["pretrain", "--config", str(project / "c.toml")], capsys)
    assert code == 2 and "unknown model 'antigravity'" in err
    assert "antigravity" not in sys.modules and not (project / "o" / "model.safetensors").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["transfer", "--config", "missing.toml"], "no such config file"),
    (["--config", "x.toml"], "needs a sub-command"),
])
def test_config_argument_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.toml").write_text("")
    code, err = _run(argv, capsys)
    assert code == 2 and message in err
