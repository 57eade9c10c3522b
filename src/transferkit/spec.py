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
from typing import Any, ClassVar, Literal, TypeVar, cast, get_args, get_origin

from transferkit import options
from transferkit.errors import ConfigError
from transferkit.options import opt

S = TypeVar("S", bound="Spec")


@dataclasses.dataclass(kw_only=True)
class Spec:
    """Base of the run specs: JSON round trip and CLI flags from the fields."""

    #: the sub-command (and ``config.json["command"]``) this spec describes
    command: ClassVar[str] = ""

    def __post_init__(self) -> None:
        """Every field typed and checked as :meth:`from_dict` would, so a spec built directly
        (``TransferSpec(head="x")``) is refused in one line too; subclasses call this first."""
        types_ = options.hints(cast(type, type(self)))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            typed = options.parse_value(types_[f.name], value, f"{self.command or type(self).__name__} {f.name}")
            if typed is not value:
                object.__setattr__(self, f.name, typed)

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

    def split_args(self, seed: int) -> dict[str, Any]:
        """``{"val", "test", "seed"}``, the keyword arguments of :func:`transferkit.data.split` for a run of
        ``seed`` (used when the split has no seed of its own)."""
        return {"val": self.val, "test": self.test, "seed": seed if self.seed is None else self.seed}

    def fractions(self) -> dict[str, float]:
        """``{"val": ..., "test": ...}``, the keyword arguments of :func:`transferkit.data.split`."""
        return {"val": self.val, "test": self.test}


@dataclasses.dataclass(kw_only=True, frozen=True)
class ColumnSpec:
    """The label and text columns of a ``.csv`` / ``.jsonl`` file (``config.json["columns"]``)."""

    label: str | None = opt(None, "label column of a .csv / .jsonl file (default: 'label', or the one the run "
                                  "was trained with)", cli="label-column")
    text: str | None = opt(None, "text column of a .csv / .jsonl file (default: 'text'; without one the file is a "
                                 "table)", cli="text-column")


_DATA_HELP = "built-in dataset name or a path (image folder, .npz, .csv, .jsonl, IDX, .wav folder)"
_SKIP_HELP = ("in an image or .wav folder, skip files that cannot be read (corrupt, truncated, over the pixel limit) "
              "and list them on stderr, instead of stopping at the first")
_TRAIN_HELP = ("training settings the user gave (TrainConfig fields; the CLI's training group): the backbone's "
               "recipe and the command's defaults fill the others (config.json: train, provenance)")


@dataclasses.dataclass(kw_only=True)
class RunSpec(Spec):
    """The fields every training run shares. A run's ``config.json`` records ``train`` as the resolved
    settings, and ``provenance`` says which of them the user gave: :meth:`from_run_config` reads those back
    as ``train``, so a replay resolves the same settings (a recipe fills the same others)."""

    data: str = opt(help=_DATA_HELP)
    seed: int = opt(0, "random seed (split, shots, initialisation, shuffling)")
    model_kwargs: dict[str, Any] = opt(factory=dict, help="backbone option", cli="model-opt")
    columns: ColumnSpec = opt(factory=ColumnSpec, help="label / text columns of a .csv / .jsonl file")
    skip_bad_files: bool = opt(False, _SKIP_HELP)
    split: SplitSpec = opt(factory=SplitSpec, help="train / validation / test fractions and seed", flag=False)
    train: dict[str, Any] = opt(factory=dict, help=_TRAIN_HELP, flag=False)

    @classmethod
    def from_run_config(cls: type[S], config: Mapping[str, Any]) -> S:
        """The spec a run's ``config.json`` records: its fields, with ``train`` the settings its
        ``provenance`` marks ``user`` (a run older than provenance: every setting it trained with, so
        the replay trains with the same ones)."""
        names = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in config.items() if k in names and k != "train"}
        trained, prov = config.get("train") or {}, config.get("provenance")
        data["train"] = {k: v for k, v in trained.items()
                         if k != "seed" and (prov is None or prov.get(k) == "user")}
        if prov is not None and prov.get("head_lr_scale") == "user" and "head_lr_scale" in config:
            data["train"]["head_lr_scale"] = config["head_lr_scale"]  # recorded beside train, not in it
        return cls.from_dict(data)


@dataclasses.dataclass(kw_only=True)
class PretrainSpec(RunSpec):
    """``transferkit pretrain``: train ``model`` from random weights on ``data`` (the source model)."""

    command: ClassVar[str] = "pretrain"
    model: str = opt("small_cnn", "registered backbone (see `transferkit models`)")


@dataclasses.dataclass(kw_only=True)
class TransferSpec(RunSpec):
    """``transferkit transfer``: initialise from ``source`` and adapt to ``data`` with ``strategy``.

    ``options`` are the strategy's (typed values or CLI strings; built against its ``Options``).
    ``unlabelled``: ``rest`` (the examples ``shots`` left unlabelled), a data set (labels ignored), or
    several joined by ``+`` (``rest+vader-tweets``). ``head``: ``auto`` keeps the source head when the class
    names match, ``new`` always replaces it, ``keep`` insists on keeping it.
    """

    command: ClassVar[str] = "transfer"
    source: str = opt(help="source run directory or a pretrained backbone name (see `transferkit models`)")
    data: str = opt(help="target " + _DATA_HELP)
    strategy: str = opt("lp_ft", "see `transferkit strategies`")
    options: dict[str, Any] = opt(factory=dict, help="strategy option (see `transferkit strategies`)")
    shots: int | None = opt(None, "labelled examples per class (default: all)")
    head: Literal["auto", "new", "keep"] = opt("auto", "auto | new | keep: keep the source head when classes match")
    source_data: str | None = opt(None, "source data: measure source accuracy before/after (forgetting)")
    compare_scratch: bool = opt(False, "also train scratch on the same budget; report the gain")
    unlabelled: str | None = opt(None, "unlabelled target inputs for strategies that learn from them (self_train; "
                                       "auto's search): 'rest' (the examples --shots left unlabelled) or a data set "
                                       "(its labels are ignored); '+' pools several, e.g. rest+vader-tweets")
    model_kwargs: dict[str, Any] = opt(factory=dict, help="option of a pretrained backbone named by --source (e.g. "
                                                          "resolution=96)", cli="model-opt")


# --- the command line, generated from the fields -------------------------------------------------------------------

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_mapping(tp: Any) -> bool:
    return get_origin(tp) in (dict, Mapping) or tp in (dict, Mapping)


def _flag_of(f: dataclasses.Field[Any], tp: Any, prefix: str = "") -> str:
    if "cli" in f.metadata:
        return "--" + f.metadata["cli"]
    name = f.name.rstrip("s") if _is_mapping(tp) and f.name.endswith("s") else f.name
    return _flag(prefix + name)


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def add_spec_args(parser: argparse.ArgumentParser | Any, cls: type, *, skip: Iterable[str] = (),
                  positional: Iterable[str] = (), required: bool = True, prefix: str = "") -> None:
    """One flag per field of ``cls`` (a spec or an options dataclass) whose metadata allows it.

    A field without a default is required (``required=False``: checked by :func:`spec_from_args`
    instead, for a command whose values may come from a run's ``config.json``); ``bool`` fields are
    switches; a mapping field is a repeatable ``--name KEY=VALUE``; a nested dataclass gives one flag per
    field of its own (``columns.label`` is ``--label-column``); every value is kept as the string given
    (``None`` when absent) and typed by :func:`spec_from_args`, so an error names the field. The help ends
    with the default, stated once here.
    """
    types_ = options.hints(cls)
    skipped, pos = set(skip), set(positional)
    for f in dataclasses.fields(cls):
        if f.name in skipped or not f.metadata.get("flag", True):
            continue
        tp, text, dest = types_[f.name], f.metadata.get("help", ""), prefix.replace("-", "_") + f.name
        if options.is_options(tp):
            add_spec_args(parser, tp, required=required, prefix=f"{dest}.")
        elif f.name in pos:
            parser.add_argument(dest, help=text)
        elif tp is bool:
            parser.add_argument(_flag_of(f, tp), dest=dest, action="store_true", default=None, help=text)
        elif _is_mapping(tp):
            parser.add_argument(_flag_of(f, tp), dest=dest, action="append", metavar="KEY=VALUE", default=None,
                                help=f"{text} (repeatable)")
        else:
            shown = "" if not _has_default(f) or f.default in (None, "", (), dataclasses.MISSING) \
                else f" (default: {f.default})"
            choices = get_args(tp) if get_origin(tp) is Literal else None  # argparse names the flag in its error
            parser.add_argument(_flag_of(f, tp), dest=dest, default=None, required=required and not _has_default(f),
                                metavar=None if choices else f.name.upper(), choices=choices, help=text + shown)


def spec_values(cls: type, args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` the user gave on the command line (mapping fields from ``KEY=VALUE`` items;
    a nested dataclass as the dict of its own given fields, absent when none was)."""
    types_ = options.hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = types_[f.name]
        if options.is_options(tp) and f.metadata.get("flag", True):
            if nested := spec_values(tp, args, f"{prefix}{f.name}."):
                out[f.name] = nested
            continue
        value = getattr(args, prefix + f.name, None)
        if value is None:
            continue
        if _is_mapping(tp):
            items: dict[str, str] = {}
            for item in value:
                key, eq, v = item.partition("=")
                if not eq or not key:
                    raise ConfigError(f"{_flag_of(f, tp)} expects key=value, got {item!r}")
                items[key] = v
            value = items
        out[f.name] = value
    return out


def spec_from_args(cls: type[S], args: argparse.Namespace, base: Mapping[str, Any] | None = None,
                   **extra: Any) -> S:
    """The spec the command line describes (``extra``: fields the caller sets itself; ``base``: values
    the flags given override, e.g. a run's recorded spec). A required field left out is a one-line error."""
    given = spec_values(cls, args)
    values = {**(base or {}), **given, **extra}
    for key, sub in given.items():  # a nested spec: the flags given override the base's fields one by one
        if isinstance(sub, dict) and isinstance((base or {}).get(key), Mapping) and key not in extra:
            values[key] = {**base[key], **sub}  # type: ignore[index]
    types_ = options.hints(cast(type, cls))
    for f in dataclasses.fields(cls):
        if not _has_default(f) and f.name not in values:
            raise ConfigError(f"the following arguments are required: {_flag_of(f, types_[f.name])}")
    return cls.from_dict(values)
