"""Run specs: what a run was asked to do, as typed, keyword-only dataclasses.

A spec (``TransferSpec``, ``AdaptSpec``, ``FederateSpec``, ``PretrainSpec``) subclasses :class:`Spec`.
Its fields carry help text (:func:`~transferkit.options.opt`); the CLI's flags are generated from
them (:func:`add_spec_args`, :func:`spec_from_args`), so each default is stated once. A run's
``config.json`` holds the spec's :meth:`Spec.to_dict` (plus the settings resolved from it and the
versions), and :meth:`Spec.from_dict` reads it back.

:class:`SplitSpec` is the one definition of how a run splits its data; every run saves it, and
``evaluate`` rebuilds a run's held-out part from it.

No torch here: ``transferkit --help`` imports this module.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, TypeVar, get_origin

from transferkit import options
from transferkit.errors import ConfigError
from transferkit.options import opt

S = TypeVar("S", bound="Spec")


@dataclasses.dataclass(kw_only=True)
class Spec:
    """Base of the run specs: JSON round trip and CLI flags from the fields."""

    #: the sub-command (and ``config.json["command"]``) this spec describes
    command: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (nested specs and options as dicts, tuples as lists)."""
        out: dict[str, Any] = options.to_dict(self)
        return out

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any], *, ignore_unknown: bool = False) -> S:
        """The spec ``data`` describes; ``ignore_unknown`` skips keys that are not fields (a run's
        ``config.json`` also holds resolved settings and versions). Bad values are one-line errors."""
        names = {f.name for f in dataclasses.fields(cls)}
        if ignore_unknown:
            data = {k: v for k, v in data.items() if k in names}
        return options.build(cls, data, cls.command or cls.__name__)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return options.field_help(cls)


@dataclasses.dataclass(kw_only=True, frozen=True)
class SplitSpec:
    """How a run splits its data into train / validation / test: fractions, seed and kind.

    ``stratified``: labelled data, per class (``pretrain``, ``transfer``); ``unlabelled``: a seeded
    permutation that reads no label (``adapt``'s target). ``seed=None``: the run's seed.
    """

    val: float = opt(0.15, "fraction of the data for validation (early stopping, selection)")
    test: float = opt(0.3, "fraction of the data held out for the test score")
    seed: int | None = opt(None, "seed of the split (default: the run's seed)")
    kind: Literal["stratified", "unlabelled"] = opt("stratified", "stratified (by label) | unlabelled (reads no label)")

    def __post_init__(self) -> None:
        for name in ("val", "test"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ConfigError(f"split {name}={value!r} must be between 0 and 1")
        if self.val + self.test >= 1:
            raise ConfigError(f"split val={self.val} + test={self.test} leaves no training data")

    def with_seed(self, seed: int) -> SplitSpec:
        """This split with its seed fixed (the run's seed when it had none)."""
        return self if self.seed is not None else dataclasses.replace(self, seed=seed)

    def fractions(self) -> dict[str, float]:
        """``{"val": ..., "test": ...}``, the keyword arguments of :func:`transferkit.data.split`."""
        return {"val": self.val, "test": self.test}


# --- the command line, generated from the fields -------------------------------------------------------------------

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_mapping(tp: Any) -> bool:
    return get_origin(tp) in (dict, Mapping) or tp in (dict, Mapping)


def add_spec_args(parser: argparse.ArgumentParser | Any, cls: type, *, skip: Iterable[str] = (),
                  positional: Iterable[str] = ()) -> None:
    """One flag per field of ``cls`` (a spec or an options dataclass) whose metadata allows it.

    A field without a default is required; ``bool`` fields are switches; a mapping field is a repeatable
    ``--name KEY=VALUE``; every value is kept as the string given (``None`` when absent) and typed by
    :func:`spec_from_args`, so an error names the field. The help ends with the default, stated once here.
    """
    types_ = options.hints(cls)
    skipped, pos = set(skip), set(positional)
    for f in dataclasses.fields(cls):
        if f.name in skipped or not f.metadata.get("flag", True):
            continue
        tp, text = types_[f.name], f.metadata.get("help", "")
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if f.name in pos:
            parser.add_argument(f.name, help=text)
        elif tp is bool:
            parser.add_argument(_flag(f.name), action="store_true", default=None, help=text)
        elif _is_mapping(tp):
            parser.add_argument(_flag(f.name.rstrip("s")) if f.name.endswith("s") else _flag(f.name), dest=f.name,
                                action="append", metavar="KEY=VALUE", default=None, help=f"{text} (repeatable)")
        else:
            shown = "" if not has_default or f.default in (None, dataclasses.MISSING) else f" (default: {f.default})"
            parser.add_argument(_flag(f.name), default=None, required=not has_default,
                                metavar=f.name.upper(), help=text + shown)


def spec_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``cls`` the user gave on the command line, typed (mapping fields from ``KEY=VALUE`` items)."""
    types_ = options.hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if _is_mapping(types_[f.name]):
            items: dict[str, str] = {}
            for item in value:
                key, eq, v = item.partition("=")
                if not eq or not key:
                    raise ConfigError(f"{_flag(f.name)} expects KEY=VALUE, got {item!r}")
                items[key] = v
            value = items
        out[f.name] = value
    return out


def spec_from_args(cls: type[S], args: argparse.Namespace, **extra: Any) -> S:
    """The spec the command line describes (``extra``: fields the caller sets itself)."""
    return cls.from_dict({**spec_values(cls, args), **extra})
