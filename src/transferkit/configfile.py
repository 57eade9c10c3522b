"""``--config FILE``: a TOML or JSON file that stands for command-line flags.

A config file holds the flags of one sub-command as keys (``data = "digits8"``, ``epochs = 5``,
``option = {alpha = "0.1"}``); flags typed on the command line override it. It is data only:

- keys must be flags of that sub-command (an unknown key is an error with a suggestion), so a
  file can only say what the command line could say, and names (models, strategies, datasets)
  are looked up in transferkit's registries: nothing in a config is ever imported;
- path values (``data``, ``source``, ``out``...) are relative to the config file's folder and
  must stay inside it (no absolute paths, no ``..`` or symlink escaping it), so a config shared
  with you can read and write only where you put it. Values that hold several paths obey the
  rule part by part: ``clients_from = "a.npz,b.npz"`` and ``unlabelled = "rest+tweets.jsonl"``
  (``rest`` is not a path); a list (``candidates``) item by item. ``model_opt`` items whose key
  names a folder (``path=...``, read by the ``hf`` backbone) obey the same rule.

A run's own ``config.json`` (it holds ``transferkit_version`` and the run's ``command``) is not a
hand-written config: ``transferkit transfer --config runs/x/config.json --out runs/y`` (or ``pretrain``)
replays that run (:class:`RunConfig`). Its spec is read back (:meth:`transferkit.spec.RunSpec.from_run_config`:
the fields, and the training settings the run's ``provenance`` marks as the user's), and typed flags
override it. The rule for its paths: they were written relative to the folder the run was started in, which
the run records (``cwd``); relative paths are resolved against that folder (a run without ``cwd``, older
than this rule: against the current folder), absolute paths and registered names are kept. ``--out`` and
``--overwrite`` never come from a run's config (it records neither): the replay writes only where the
command line says. Replaying a run's config of another command (an ``adapt`` run's into ``transfer``) is an
error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, published as ``tomli``
    import tomli as tomllib

from transferkit.errors import ConfigError, did_you_mean

#: Flags whose values are files or folders (unless they name a registered dataset or backbone).
PATH_KEYS = frozenset({"data", "source", "source_data", "target_data", "eval_data", "check_data", "out",
                       "candidates", "clients_from", "unlabelled", "inputs", "json", "run", "runs"})

#: Path keys whose one value lists several paths, and the separator between them.
MULTI_PATH_SEPARATORS = {"clients_from": ",", "unlabelled": "+"}

#: Flags of ``KEY=VALUE`` items, and the item keys whose values are paths (``--model-opt path=FOLDER``).
KV_PATH_KEYS = {"model_opt": frozenset({"path"})}

#: Parts of a multi-path value that are words, not paths (``--unlabelled rest``).
NOT_PATHS = {"unlabelled": frozenset({"rest"})}


def split_config_arg(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` without its ``--config FILE`` (or ``--config=FILE``), and the file."""
    out: list[str] = []
    path: str | None = None
    it = iter(range(len(argv)))
    for i in it:
        arg = argv[i]
        if arg == "--":
            out += argv[i:]
            break
        if arg == "--config" or arg.startswith("--config="):
            if path is not None:
                raise ConfigError("--config given twice")
            if arg == "--config":
                if i + 1 >= len(argv):
                    raise ConfigError("--config needs a file")
                path = argv[i + 1]
                next(it, None)
            else:
                path = arg.partition("=")[2]
            continue
        out.append(arg)
    return out, path


def read_config(path: Path) -> dict[str, Any]:
    """The mapping in a ``.toml`` or ``.json`` config file (one-line errors for bad files)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(path.read_text(encoding="utf-8"))
        elif path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            raise ConfigError(f"{path}: config files are .toml or .json, not '{path.suffix or 'no suffix'}'")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()} ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a table of flags, got {type(data).__name__}")
    return data


def _is_registered(value: str) -> bool:
    from transferkit.data import DATASETS
    from transferkit.models import MODELS

    name = value.partition(":")[0]
    return "/" not in value and "\\" not in value and (name in DATASETS or value in MODELS)


def guard_path(value: str, key: str, root: Path, config: Path) -> str:
    """``value`` resolved against ``root``; an error when it is absolute or escapes ``root``."""
    if _is_registered(value):
        return value
    p = Path(value).expanduser()
    if p.is_absolute() or value.startswith("~"):
        raise ConfigError(f"{config}: {key} = {value!r} is absolute; paths in a config are relative to {root}")
    resolved = (root / p).resolve()
    if resolved != root and root not in resolved.parents:
        raise ConfigError(f"{config}: {key} = {value!r} escapes the config's folder {root}")
    return str(resolved)


def guard_value(value: str, key: str, root: Path, config: Path) -> str:
    """``guard_path`` for every path in ``value``: each part of a separated multi-path value
    (``clients_from``, ``unlabelled``), the whole value otherwise; the error names the part."""
    sep = MULTI_PATH_SEPARATORS.get(key)
    if sep is None or (sep not in value and value not in NOT_PATHS.get(key, ())):
        return guard_path(value, key, root, config)
    if not Path(value).is_absolute() and (root / value).exists():
        return guard_path(value, key, root, config)  # one file whose name holds the separator
    out: list[str] = []
    for part in value.split(sep):
        part = part.strip()
        if not part or part in NOT_PATHS.get(key, ()):
            out.append(part)
            continue
        try:
            out.append(guard_path(part, key, root, config))
        except ConfigError as e:
            raise ConfigError(f"{e} (in {key} = {value!r})") from None
        if sep in out[-1] and not _is_registered(part):
            raise ConfigError(f"{config}: {key} = {value!r}: the path {out[-1]!r} holds {sep!r}, "
                              f"which separates the paths of {key}; rename the folder")
    return sep.join(out)


def guard_kv(item: str, key: str, root: Path, config: Path) -> str:
    """A ``KEY=VALUE`` item of ``key`` (``model_opt``) with its value guarded when ``KEY`` names a path."""
    name, eq, value = item.partition("=")
    if not eq or name.strip() not in KV_PATH_KEYS.get(key, ()):
        return item
    try:
        return f"{name}={guard_path(value, f'{key} {name.strip()}', root, config)}"
    except ConfigError as e:
        raise ConfigError(f"{e} (a config's {key} {name.strip()} obeys the path rule)") from None


def _path_guard(key: str, root: Path, config: Path) -> Any:
    """The function that checks one value of ``key`` (identity for keys that are not paths)."""
    if key in PATH_KEYS:
        return lambda v: guard_value(v, key, root, config)
    if key in KV_PATH_KEYS:
        return lambda v: guard_kv(v, key, root, config)
    return lambda v: v


def _actions(parser: argparse.ArgumentParser, command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if command not in sub.choices:
        raise ConfigError(f"--config needs a sub-command, e.g. `transferkit transfer --config {command}`")
    return {a.option_strings[-1].lstrip("-").replace("-", "_"): a for a in sub.choices[command]._actions
            if a.option_strings and a.dest != "help"}


def _flag_tokens(key: str, value: Any, action: argparse.Action, to_path: Any) -> list[str]:
    flag = action.option_strings[-1]
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return [flag] if value else []
    if isinstance(value, dict):
        if not isinstance(action, argparse._AppendAction):
            raise ConfigError(f"{key} takes one value, not a table")
        return [t for k, v in value.items() for t in (flag, to_path(f"{k}={_scalar(key, v)}"))]
    if isinstance(value, list):
        if not (isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*")):
            raise ConfigError(f"{key} takes one value, not a list")
        items = [to_path(_scalar(key, v)) for v in value]
        return [t for v in items for t in (flag, v)] if isinstance(action, argparse._AppendAction) else [flag, *items]
    return [flag, to_path(_scalar(key, value))]


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ConfigError(f"{key} = {value!r}: expected a string or number")


def config_tokens(parser: argparse.ArgumentParser, command: str, path: str) -> list[str]:
    """Command-line tokens equivalent to the config file at ``path`` for ``command``."""
    cfg_path = Path(path).expanduser()
    data = read_config(cfg_path)
    root = cfg_path.resolve().parent
    actions = _actions(parser, command)
    tokens: list[str] = []
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        if key not in actions:
            raise ConfigError(f"{cfg_path}: unknown key '{raw_key}' for `{command}`{did_you_mean(key, actions)}")
        tokens += _flag_tokens(key, value, actions[key], _path_guard(key, root, cfg_path))
    return tokens


def expand_config(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with ``--config FILE`` replaced by its flags, placed before the typed ones."""
    rest, path = split_config_arg(argv)
    if path is None:
        return argv
    pos = next((i for i, a in enumerate(rest) if not a.startswith("-")), None)
    if pos is None:
        raise ConfigError("--config needs a sub-command, e.g. `transferkit transfer --config run.toml`")
    return [*rest[: pos + 1], *config_tokens(parser, rest[pos], path), *rest[pos + 1 :]]


class RunConfig:
    """A run's ``config.json`` given to ``--config``: the spec it records, for a replay (module docstring)."""

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        self.path, self.config = path, config
        cwd = config.get("cwd")
        self.root = Path(cwd) if isinstance(cwd, str) and Path(cwd).is_absolute() else Path.cwd()

    def resolve(self, key: str, value: str) -> str:
        """``value`` of path field ``key`` with each relative path made absolute against the run's folder."""
        sep = MULTI_PATH_SEPARATORS.get(key)
        parts = [value] if sep is None or (self.root / value).exists() else value.split(sep)
        out = []
        for part in parts:
            p = Path(part).expanduser()
            keep = part in NOT_PATHS.get(key, ()) or p.is_absolute() or (_is_registered(part) and not
                                                                           (self.root / p).exists())
            out.append(part if keep else str(self.root / p))
        return (sep or "").join(out)

    def spec_values(self, cls: Any) -> dict[str, Any]:
        """The JSON form of the spec of class ``cls`` the run recorded, its paths resolved (:meth:`resolve`)."""
        command = self.config.get("command")
        if command != cls.command:
            raise ConfigError(f"{self.path}: the config of a '{command}' run; replay it with `transferkit {command} "
                              f"--config {self.path} --out DIR`")
        values: dict[str, Any] = cls.from_run_config(self.config).to_dict()
        for key in PATH_KEYS & values.keys():
            if isinstance(values[key], str):
                values[key] = self.resolve(key, values[key])
        kwargs = values.get("model_kwargs") or {}
        for key in KV_PATH_KEYS["model_opt"] & kwargs.keys():
            if isinstance(kwargs[key], str):
                kwargs[key] = self.resolve("model_opt", kwargs[key])
        return values


def is_run_config(data: dict[str, Any], path: Path | None = None) -> bool:
    """Whether a config file is a run's own ``config.json`` (not flags written by hand): it records
    ``transferkit_version`` and ``command``, and (``path`` given) it is the ``config.json`` of a complete run
    folder whose ``run.json`` lists it among the files the run wrote. A hand-made JSON file that merely has
    those keys is read as hand-written flags, under the path rule."""
    if "transferkit_version" not in data or not isinstance(data.get("command"), str):
        return False
    if path is None:
        return True
    try:
        info = json.loads((path.parent / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (path.name == "config.json" and isinstance(info, dict) and info.get("status") == "complete"
            and "config.json" in (info.get("files") or []))


def split_run_config(argv: list[str]) -> tuple[list[str], RunConfig | None]:
    """``argv`` without ``--config FILE`` and the run it replays when FILE is a run's ``config.json``;
    ``argv`` unchanged otherwise (a hand-written config: :func:`expand_config`)."""
    rest, path = split_config_arg(argv)
    if path is None or Path(path).suffix.lower() != ".json" or not Path(path).expanduser().is_file():
        return argv, None
    data = read_config(Path(path).expanduser())
    if not is_run_config(data, Path(path).expanduser()):
        return argv, None
    return rest, RunConfig(Path(path).expanduser(), data)
