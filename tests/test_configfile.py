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


OUTSIDE = "/tmp/outside.npz"

#: Every path-valued key of every command, with a value that leaves the config's folder.
ESCAPES = [
    ("pretrain", "data", OUTSIDE), ("pretrain", "out", "../o"),
    ("transfer", "source", OUTSIDE), ("transfer", "data", "../x.npz"), ("transfer", "source_data", OUTSIDE),
    ("transfer", "unlabelled", "/abs/outside.jsonl"), ("transfer", "unlabelled", "rest+/abs/outside.jsonl"),
    ("transfer", "unlabelled", "vader-tweets+../u.jsonl"), ("transfer", "out", "~/o"),
    ("evaluate", "data", OUTSIDE), ("evaluate", "source_data", "../s.npz"),
    ("predict", "out", "/tmp/p.csv"),
    ("rank", "data", OUTSIDE), ("rank", "candidates", ["mnist_cnn", "/abs/run"]), ("rank", "candidates", "../run"),
    ("rank", "json", "/tmp/r.json"),
    ("demo", "out", "/tmp/demo"),
    ("adapt", "source", OUTSIDE), ("adapt", "source_data", OUTSIDE), ("adapt", "target_data", "../t.npz"),
    ("adapt", "eval_data", OUTSIDE), ("adapt", "out", "/tmp/o"),
    ("report", "out", "/tmp/report.html"),
    ("federate", "source", "../src"), ("federate", "data", OUTSIDE), ("federate", "clients_from", "/abs/a.npz"),
    ("federate", "clients_from", "digits8,/abs/outside.npz"), ("federate", "clients_from", "digits8, ../b.npz"),
    ("federate", "out", "/tmp/fed"),
    ("zeroshot", "source", "/abs/hf_model"), ("zeroshot", "data", OUTSIDE), ("zeroshot", "json", "../z.json"),
]


@pytest.mark.parametrize(("command", "key", "value"), ESCAPES, ids=lambda v: str(v))
def test_every_path_key_stays_in_the_folder(command: str, key: str, value: str | list[str], tmp_path: Path) -> None:
    from transferkit.errors import ConfigError

    (tmp_path / "c.json").write_text(json.dumps({key: value}))
    with pytest.raises(ConfigError) as e:
        expand_config(build_parser(), [command, "--config", str(tmp_path / "c.json")])
    msg = str(e.value)
    bad = next(v for v in ([value] if isinstance(value, str) else value) if "/abs" in v or ".." in v or "/tmp" in v
               or v.startswith("~"))
    assert len(msg.splitlines()) == 1 and f"{key} = " in msg and ("is absolute" in msg or "escapes" in msg), msg
    assert repr(bad.split(",")[-1].split("+")[-1].strip()) in msg, msg


def test_outside_path_via_the_cli_is_one_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "c.toml").write_text('source = "minilm"\ndata = "vader-movies"\nunlabelled = "/abs/outside.jsonl"\n'
                                    'strategy = "self_train"\nout = "o"\n')
    code, err = _run(["transfer", "--config", str(project / "c.toml")], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "unlabelled = '/abs/outside.jsonl' is absolute" in err, err


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("clients_from", "digits8, a.npz", "digits8,{root}/a.npz"),
    ("clients_from", "spoken-digits:voices=A", "spoken-digits:voices=A"),
    ("unlabelled", "rest", "rest"),
    ("unlabelled", "rest+vader-tweets", "rest+vader-tweets"),
    ("unlabelled", "rest+u.jsonl", "rest+{root}/u.jsonl"),
    ("unlabelled", "a+b.jsonl", "{root}/a+b.jsonl"),  # an existing file whose name holds '+' is one path
])
def test_multi_path_values_inside_the_folder(key: str, value: str, expected: str, tmp_path: Path) -> None:
    (tmp_path / "a+b.jsonl").write_text('{"text": "x"}\n')
    command = "federate" if key == "clients_from" else "transfer"
    (tmp_path / "c.json").write_text(json.dumps({key: value}))
    argv = expand_config(build_parser(), [command, "--config", str(tmp_path / "c.json")])
    assert argv[-1] == expected.format(root=tmp_path.resolve())


def test_a_folder_name_holding_the_separator_is_refused(tmp_path: Path) -> None:
    from transferkit.errors import ConfigError

    root = tmp_path / "a,b"
    root.mkdir()
    (root / "c.json").write_text(json.dumps({"clients_from": "x.npz,digits8"}))
    with pytest.raises(ConfigError, match="holds ','"):
        expand_config(build_parser(), ["federate", "--config", str(root / "c.json")])


def test_positional_paths_cannot_come_from_a_config(tmp_path: Path) -> None:
    from transferkit.errors import ConfigError

    (tmp_path / "c.json").write_text(json.dumps({"run": "/etc"}))
    with pytest.raises(ConfigError, match="unknown key 'run'"):
        expand_config(build_parser(), ["evaluate", "--config", str(tmp_path / "c.json")])


def test_every_flag_that_takes_a_path_is_a_path_key() -> None:
    """A flag named ``*data`` or whose help speaks of files or folders must obey the folder rule
    (add it to PATH_KEYS); switches and ``*_column`` names are not paths."""
    import argparse
    import re

    from transferkit.configfile import PATH_KEYS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    def key(a: argparse.Action) -> str:  # a config's key is the flag's name (``model_opt``, ``label_column``)
        return a.option_strings[-1].lstrip("-").replace("-", "_")

    missed = {(name, key(a)) for name, p in sub.choices.items() for a in p._actions
              if a.option_strings and key(a) not in PATH_KEYS and a.nargs != 0 and not key(a).endswith("_column")
              and (key(a).endswith("data") or re.search(r"\b(path|file|folder|director)", a.help or "", re.I))}
    assert not missed, f"path-valued flags outside PATH_KEYS: {sorted(missed)}"


@pytest.mark.parametrize("model_opt", [["path=/etc"], {"path": "/etc"}, ["path=../x"], ["max_length=64", "path=~/m"]],
                         ids=str)
@pytest.mark.parametrize("command", ["transfer", "pretrain", "zeroshot"])
def test_model_opt_paths_stay_in_the_folder(command: str, model_opt: list[str] | dict[str, str],
                                            tmp_path: Path) -> None:
    """``model_opt = ["path=/etc"]`` with ``source = "hf"`` would let the hf backbone read any folder."""
    from transferkit.errors import ConfigError

    (tmp_path / "c.json").write_text(json.dumps({"model_opt": model_opt}))
    with pytest.raises(ConfigError) as e:
        expand_config(build_parser(), [command, "--config", str(tmp_path / "c.json")])
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and "model_opt path = " in msg and ("is absolute" in msg or "escapes" in msg)


def test_model_opt_paths_inside_the_folder_resolve(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({"source": "hf", "model_opt": ["path=m", "max_length=64"]}))
    argv = expand_config(build_parser(), ["transfer", "--config", str(tmp_path / "c.json")])
    assert f"path={tmp_path.resolve() / 'm'}" in argv and "max_length=64" in argv
