"""The plug-in contract, read from the registries: every strategy, adaptation method and transferability score.

Each registered plug-in is a :class:`~transferkit.engine.plugin.Plugin` with a typed ``Options``
dataclass (help text on every field); it is built the same from a dict of typed values, a dict of CLI
strings, its ``Options`` instance or a configured instance, and its options round-trip through
``to_dict``; a bad value or an unknown option is a one-line ``ConfigError`` naming the field. A new
plug-in (one file plus one registration) is covered here with no other edit. Training through the one
runner is checked per registry by tests/strategies/test_contract.py and tests/adaptation/. A score's
``Options`` are its function's keyword parameters (checked against its signature).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

import numpy as np
import pytest

from transferkit.adaptation.methods import METHODS, make_method
from transferkit.engine.plugin import Plugin, make_plugin
from transferkit.errors import ConfigError
from transferkit.options import build, hints, to_dict
from transferkit.strategies import STRATEGIES, make_strategy
from transferkit.transferability import SCORES

REGISTRIES = {"strategy": (STRATEGIES, make_strategy), "method": (METHODS, make_method)}
PLUGINS = [(kind, name) for kind, (reg, _) in REGISTRIES.items() for name in reg]
IDS = [f"{kind}:{name}" for kind, name in PLUGINS]


def _cls(kind: str, name: str) -> type[Plugin[Any]]:
    return REGISTRIES[kind][0].get(name)


def _make(kind: str, name: Any, options: Any = None) -> Plugin[Any]:
    return REGISTRIES[kind][1](name, options)


def cli_text(value: Any) -> str:
    """How a user writes ``value`` on the command line (``--option key=TEXT``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        return repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return ":".join(f"{f.name}={cli_text(getattr(value, f.name))}" for f in dataclasses.fields(value))
    if isinstance(value, Mapping):
        return ",".join(f"{k}={cli_text(v)}" for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return ",".join(cli_text(v) for v in value)
    return str(value)


def _free_text(tp: Any) -> bool:
    """Whether any string is a value of type ``tp`` (so no string is a bad value)."""
    if tp in (str, Any, object):
        return True
    if get_origin(tp) in (Union, types.UnionType):
        return any(_free_text(a) for a in get_args(tp))
    if get_origin(tp) is tuple:
        return _free_text(get_args(tp)[0])
    return False


@pytest.mark.parametrize("kind, name", PLUGINS, ids=IDS)
def test_options_are_a_dataclass_with_help_on_every_field(kind: str, name: str) -> None:
    cls = _cls(kind, name)
    assert issubclass(cls, Plugin) and cls.name == name
    assert "phases" not in getattr(cls, "__abstractmethods__", ()), f"{name} does not implement phases"
    assert (cls.__doc__ or "").strip(), f"{name} has no docstring (its listing's summary)"
    opts = cls.Options
    assert dataclasses.is_dataclass(opts) and isinstance(opts, type)
    types_ = hints(opts)
    for f in dataclasses.fields(opts):
        assert f.metadata.get("help", "").strip(), f"{name}: option {f.name} has no help text"
        tp = types_[f.name]
        assert get_origin(tp) is not list, f"{name}: option {f.name} is a list; lists are tuples"
        if get_origin(tp) is Literal:
            assert getattr(opts(), f.name) in get_args(tp)


@pytest.mark.parametrize("kind, name", PLUGINS, ids=IDS)
def test_every_form_builds_the_same_options(kind: str, name: str) -> None:
    cls = _cls(kind, name)
    defaults = cls.Options()
    plugin = _make(kind, name)
    assert plugin.options == defaults and type(plugin) is cls
    as_json = to_dict(defaults)
    assert _make(kind, name, as_json).options == defaults  # the JSON form (config.json)
    assert _make(kind, name, {k: cli_text(getattr(defaults, k)) for k in as_json}).options == defaults  # CLI strings
    assert build(cls.Options, plugin.options_dict(), name) == defaults
    assert _make(kind, name, defaults).options is defaults  # an Options instance
    assert _make(kind, plugin) is plugin  # a configured plug-in
    assert cls(as_json).options == defaults


@pytest.mark.parametrize("kind, name", PLUGINS, ids=IDS)
def test_bad_options_are_one_line_errors_naming_the_field(kind: str, name: str) -> None:
    cls = _cls(kind, name)
    with pytest.raises(ConfigError, match=r"unknown .*option 'no_such_option'") as e:
        _make(kind, name, {"no_such_option": "1"})
    assert "\n" not in str(e.value)
    types_ = hints(cls.Options)
    for f in dataclasses.fields(cls.Options):
        if _free_text(types_[f.name]):
            continue
        with pytest.raises(ConfigError) as e:
            _make(kind, name, {f.name: "\0bad"})
        assert f.name in str(e.value) and "\n" not in str(e.value), str(e.value)
    plugin = _make(kind, name)
    with pytest.raises(ConfigError, match="already configured"):
        _make(kind, plugin, {"no_such_option": "1"})


@pytest.mark.parametrize("kind", list(REGISTRIES))
def test_an_options_instance_of_another_plugin_is_refused(kind: str) -> None:
    reg = REGISTRIES[kind][0]
    typed = [n for n in reg if dataclasses.fields(reg.get(n).Options)]
    mine, other = typed[0], next(n for n in typed if reg.get(n).Options is not reg.get(typed[0]).Options)
    with pytest.raises(ConfigError, match=f"'{mine}' takes {reg.get(mine).Options.__name__}"):
        make_plugin(reg, mine, reg.get(other).Options())


def test_summary_lines_default_to_none() -> None:
    assert make_strategy("full").summary_lines({"anything": 1}) == []
    assert make_method("dann").summary_lines({}) == []


@pytest.mark.parametrize("name", list(SCORES))
def test_every_score_declares_its_parameters_as_typed_options(name: str) -> None:
    """A score's Options are its function's keyword parameters, with help; they round-trip and a bad value
    is a one-line error naming the option (a score without parameters has empty Options)."""
    score = SCORES.get(name)
    opts = score.Options
    assert dataclasses.is_dataclass(opts) and isinstance(opts, type)
    assert all(f.metadata.get("help", "").strip() for f in dataclasses.fields(opts)), f"{name}: an option lacks help"
    defaults = opts()
    keyword = {n: p.default for n, p in inspect.signature(score.fn).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert to_dict(defaults) == keyword, f"{name}: Options and the function's keyword parameters differ"
    assert build(opts, to_dict(defaults), name) == defaults
    assert build(opts, {k: cli_text(v) for k, v in to_dict(defaults).items()}, name) == defaults
    x, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    for f in dataclasses.fields(opts):
        if _free_text(hints(opts)[f.name]):
            continue
        with pytest.raises(ConfigError) as e:
            score(x, y, {f.name: "\0bad"})
        assert f.name in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"unknown score option 'no_such_option'"):
        score(x, y, {"no_such_option": 1})
