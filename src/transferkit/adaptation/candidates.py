"""The methods an ``adapt`` run trains: one for a named method, a grid for ``auto`` (:class:`AutoOptions`).

Each candidate's options are typed against its method's ``Options`` here, before anything loads, so a
bad option of the third candidate is a one-line error at once, not after two candidates trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from transferkit import options as typed
from transferkit.adaptation.base import Method
from transferkit.adaptation.methods import METHODS, make_method
from transferkit.adaptation.spec import AutoOptions
from transferkit.errors import ConfigError


@dataclass
class Candidate:
    """One method to train: its label in ``metrics.json``, registered name, options as given, instance."""

    label: str
    name: str
    options: dict[str, str]
    method: Method


def auto_options(raw: Mapping[str, Any] | AutoOptions) -> AutoOptions:
    """``auto``'s options from an instance or ``key=value`` strings (``candidates=dann,mcc``,
    ``trade_offs=0.3,1``); an unknown key or bad value is a one-line error naming it."""
    return typed.build(AutoOptions, raw, "auto")


def _weight(w: float) -> str:
    return str(w)


def parse_candidate(entry: str) -> tuple[str, dict[str, str]]:
    """``"name"`` or ``"name:key=value:key=value"`` -> (name, fixed options as strings)."""
    name, *kvs = entry.split(":")
    fixed: dict[str, str] = {}
    for kv in kvs:
        k, sep, v = kv.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"auto candidate '{entry}': options must be key=value, got '{kv}'")
        fixed[k.strip()] = v.strip()
    return name.strip(), fixed


def source_free_methods() -> tuple[str, ...]:
    """The registered methods that read no source data (``needs_source = False``)."""
    return tuple(n for n in METHODS if not getattr(METHODS.get(n), "needs_source", True))


def method_candidates(method: str, options: Mapping[str, Any] | AutoOptions | None, *, source_free: bool = False
                      ) -> list[tuple[str, str, dict[str, str]]]:
    """(label, method name, options) to run: one for a named method, a grid for ``auto``. ``source_free``
    (no source data): ``auto``'s default candidates are the methods that read none."""
    if method != "auto":
        if isinstance(options, AutoOptions):
            raise ConfigError(f"AutoOptions are the options of method 'auto', not of {method!r}")
        return [(method, method, {k: str(v) for k, v in (options or {}).items()})]
    auto = auto_options(options or {})
    named = isinstance(options, AutoOptions) or "candidates" in (options or {})
    if source_free and not named:
        if not source_free_methods():
            raise ConfigError("auto without --source-data: no registered method reads no source data")
        auto = replace(auto, candidates=source_free_methods())
    out = []
    for entry in auto.candidates:
        name, fixed = parse_candidate(entry)
        cls = METHODS.get(name)
        has_w = "trade_off" in getattr(cls.Options, "__dataclass_fields__", {}) and "trade_off" not in fixed
        for w in auto.trade_offs if has_w else [None]:
            o = dict(fixed) if w is None else {**fixed, "trade_off": _weight(w)}
            label = name if not o else f"{name}({', '.join(f'{k}={v}' for k, v in o.items())})"
            out.append((label, name, o))
    return out


def candidates(method: str, options: Mapping[str, Any] | AutoOptions | None, *, source_free: bool = False
               ) -> list[Candidate]:
    """The candidates of a run, each method built with its typed options (one-line errors naming the option)."""
    return [Candidate(label, name, opts, make_method(name, opts))
            for label, name, opts in method_candidates(method, options, source_free=source_free)]


def needs_source(cands: list[Candidate]) -> bool:
    """Whether any candidate reads source data (a method says it does not with ``needs_source = False``)."""
    return any(getattr(c.method, "needs_source", True) for c in cands)
