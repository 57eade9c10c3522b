"""Typed options: one way to declare them, one parser from strings, one JSON form.

Every configurable thing (a strategy, an adaptation method, a score, an aggregator, a run spec)
declares a dataclass whose fields carry help text (:func:`opt`). Field types may be ``int``,
``float``, ``str``, ``bool``, a ``Literal`` of choices, ``X | None``, a union of those (tried in
order: ``float | Literal["nll", "accuracy"]``), ``tuple[T, ...]`` (lists; a CLI string is
comma-separated) or another options dataclass (nested; a CLI string is ``key=value:key=value``).

- :func:`parse_value` turns one CLI string into a field's type, with a one-line error naming the field;
- :func:`build` makes an options instance from an instance, a dict of typed values or of strings;
- :func:`to_dict` / :func:`from_dict` are the JSON form (tuples become lists and back).

No torch here: the CLI imports this module to build its flags.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from transferkit.errors import ConfigError

T = TypeVar("T")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING,
        flag: bool = True, cli: str | None = None) -> Any:
    """A field with help text; ``flag=False`` keeps it off the command line (e.g. a Python-only object);
    ``cli`` names its flag when that is not the field's name (``model_kwargs`` is ``--model-opt``)."""
    meta: dict[str, Any] = {"help": help, "flag": flag}
    if cli is not None:
        meta["cli"] = cli
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@cache
def hints(cls: type) -> dict[str, Any]:
    """The resolved type of each field of dataclass ``cls`` (annotations may be strings)."""
    return typing.get_type_hints(cls)


def is_options(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if get_origin(tp) in (Union, types.UnionType):
        return get_args(tp)
    return None


def describe(tp: Any) -> str:
    """A short human name of a field type, for help and errors: ``int``, ``one of a, b``, ``list of float``."""
    if tp is type(None):
        return "none"
    if (args := _union_args(tp)) is not None:
        return " or ".join(describe(a) for a in args if a is not type(None))
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(tp))
    if get_origin(tp) is tuple:
        return "comma-separated " + describe(get_args(tp)[0])
    if is_options(tp):
        return "key=value:key=value"
    return getattr(tp, "__name__", str(tp))


def parse_value(tp: Any, text: Any, where: str) -> Any:
    """``text`` (a CLI string, or an already typed value) as type ``tp``; ``where`` names the field in errors."""
    if (args := _union_args(tp)) is not None:
        if type(None) in args and (text is None or (isinstance(text, str) and text.lower() in ("", "none"))):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return parse_value(arg, text, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}={text!r} is not {describe(tp)}")
    if get_origin(tp) is Literal:
        choices = get_args(tp)
        if text in choices:
            return text
        for c in choices:  # numbers given as strings
            if isinstance(text, str) and str(c) == text.strip():
                return c
        raise ConfigError(f"{where}={text!r} is not one of {', '.join(str(c) for c in choices)}")
    if get_origin(tp) is tuple:
        item = get_args(tp)[0]
        parts = [p.strip() for p in text.split(",") if p.strip()] if isinstance(text, str) else list(text)
        return tuple(parse_value(item, p, where) for p in parts)
    if get_origin(tp) in (dict, Mapping):
        if isinstance(text, str) and text.strip().startswith("{"):  # a JSON object
            try:
                text = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where}={text!r} is not valid JSON ({e.msg})") from None
        if isinstance(text, str):
            return split_pairs(text, where)
        if not isinstance(text, Mapping):
            raise ConfigError(f"{where}={text!r} is not a set of key=value pairs")
        return dict(text)
    if is_options(tp):
        if isinstance(text, tp):
            return text
        raw = split_pairs(text, where, sep=":") if isinstance(text, str) else dict(text)
        return build(tp, raw, where)
    return _scalar(tp, text, where)


def _scalar(tp: Any, text: Any, where: str) -> Any:
    if tp is Any or tp is object:
        return text
    if tp is bool:
        if isinstance(text, bool):
            return text
        low = str(text).strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ConfigError(f"{where}={text!r} is not a boolean (true/false, yes/no, 1/0)")
    if tp in (int, float):
        if isinstance(text, bool):
            raise ConfigError(f"{where}={text!r} is not a valid {tp.__name__}")
        if isinstance(text, (int, float)) and (tp is float or float(text).is_integer()):
            return tp(text)
        try:
            return tp(str(text).strip())
        except ValueError:
            raise ConfigError(f"{where}={text!r} is not a valid {tp.__name__}") from None
    if tp is str:
        if isinstance(text, str):
            return text
        raise ConfigError(f"{where}={text!r} is not a string")
    if isinstance(tp, type) and isinstance(text, tp):
        return text
    raise ConfigError(f"{where}: cannot read {text!r} as {describe(tp)}")


def split_pairs(text: str, where: str, sep: str = ",") -> dict[str, str]:
    """``"k=v<sep>k=v"`` -> ``{"k": "v"}`` (an empty string gives ``{}``); a part without ``=`` is an error."""
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(sep))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{where}: expected key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def build(cls: type[T], raw: T | Mapping[str, Any] | None, kind: str = "option") -> T:
    """An instance of options dataclass ``cls`` from ``raw``: an instance (returned as is), ``None``
    (the defaults) or a mapping of field names to typed values or CLI strings. An unknown key, a bad
    value or a value ``__post_init__`` refuses is a one-line :class:`ConfigError` naming it."""
    if raw is None:
        raw = {}
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{kind}: expected {cls.__name__} or a dict, got {type(raw).__name__}")
    types_ = hints(typing.cast(type, cls))
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"unknown {kind} option '{key}' (options: {', '.join(sorted(known)) or 'none'})")
        kwargs[key] = parse_value(types_[key], value, f"{kind} option {key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{kind}: {e}") from None


def to_dict(obj: Any) -> Any:
    """The JSON form of an options dataclass (nested ones too; tuples as lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type[T], data: Mapping[str, Any], kind: str = "option") -> T:
    """The inverse of :func:`to_dict` (unknown keys are errors)."""
    return build(cls, data, kind)


def field_help(cls: type) -> dict[str, str]:
    """``{field: help}`` of an options dataclass (what ``--help`` and ``transferkit strategies`` show)."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
