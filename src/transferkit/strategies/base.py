"""What every fine-tuning strategy shares: the context it reads and the phases it yields.

A strategy says *what* to train (parameter groups, learning rates, phases, extra loss terms);
:func:`run_strategy` hands each phase to the one training loop (:func:`transferkit.engine.fit`).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from transferkit.engine.config import TrainConfig
from transferkit.engine.features import FeatureCache
from transferkit.engine.loop import Phase, PhaseResult
from transferkit.engine.precision import Placement, resolve_placement
from transferkit.errors import ConfigError
from transferkit.models.base import TransferModel


log = logging.getLogger("transferkit")


@dataclass
class NoOptions:
    """This strategy takes no options."""


@dataclass
class TransferContext:
    """Everything a strategy may read. Strategies replace ``model`` (scratch) or record ``info``."""

    model: TransferModel
    source_state: dict[str, torch.Tensor]
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    cfg: TrainConfig
    fresh_model: Callable[[], TransferModel]
    cache: FeatureCache = field(default_factory=FeatureCache)
    head_lr_scale: float = 10.0
    #: training settings the user gave explicitly; a backbone recipe (strategies/recipes.py) fills in the
    #: others. None (a context built by hand): no recipe is applied.
    user_set: frozenset[str] | None = None
    #: unlabelled inputs of the target task (``--unlabelled``), for strategies that learn from them
    unlabelled: torch.Tensor | None = None
    #: the source (0, 1, ...) of each unlabelled input when ``--unlabelled`` pools several (``rest+DATA``)
    unlabelled_groups: np.ndarray | None = None
    probe_epochs: int = 100
    probe_batch_size: int = 256
    results: list[PhaseResult] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def placement(self, module: nn.Module | None = None) -> Placement:
        m = self.model if module is None else module
        return resolve_placement(m, self.cfg.precision, self.cfg.channels_last, self.cfg.device)


class Strategy(abc.ABC):
    """Base class: subclasses set ``name``, ``Options`` and implement :meth:`phases`."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    @abc.abstractmethod
    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        """Yield the phases to train, in order; each is run before the next is requested."""

    def finish(self, ctx: TransferContext) -> None:
        """Called after the last phase (e.g. weight-space interpolation). Default: nothing."""

    def trained_groups(self, model: TransferModel) -> list[str]:
        """Names of the layer groups this strategy may change (all by default)."""
        return [n for n, _ in model.layer_groups()]

    def save_artifacts(self, directory: Path) -> list[Path]:
        """Strategy-specific files of the finished run (e.g. a LoRA adapter). Default: none."""
        return []


def set_trainable(model: nn.Module, params: list[nn.Parameter]) -> None:
    """Make exactly ``params`` trainable in ``model``."""
    keep = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def group_params(model: TransferModel, names: list[str]) -> list[nn.Parameter]:
    groups = dict(model.layer_groups())
    return [p for n in names for p in groups[n].parameters()]


def probe_phase(ctx: TransferContext, name: str = "probe") -> Phase:
    """Train the head alone on cached frozen features (one backbone pass per sample)."""
    model = ctx.model
    place = ctx.placement()
    x_tr = ctx.cache.features(model, ctx.train[0], place)
    val = None if ctx.val is None else (ctx.cache.features(model, ctx.val[0], place), ctx.val[1])
    set_trainable(model, list(model.head.parameters()))
    head_place = resolve_placement(model.head, ctx.cfg.precision, ctx.cfg.channels_last, ctx.cfg.device)
    return Phase(
        name=name, module=model.head, train=(x_tr, ctx.train[1]), val=val,
        param_groups=[{"params": list(model.head.parameters())}],
        epochs=ctx.probe_epochs, lr=ctx.cfg.lr * ctx.head_lr_scale, placement=head_place,
        batch_size=max(ctx.cfg.batch_size, ctx.probe_batch_size),  # a linear head on cached features:
    )  # larger batches cut the per-step overhead that dominates such tiny steps


def finetune_phase(
    ctx: TransferContext,
    groups: list[tuple[str, float]],
    name: str = "finetune",
    extra_loss: Callable[[], torch.Tensor] | None = None,
    weight_decay: dict[str, float] | None = None,
) -> Phase:
    """Fine-tune the named layer groups, each with its learning-rate scale."""
    model = ctx.model
    wd = weight_decay or {}
    pgs = []
    for gname, scale in groups:
        g: dict[str, Any] = {"params": group_params(model, [gname]), "lr_scale": scale}
        if gname in wd:
            g["weight_decay"] = wd[gname]
        pgs.append(g)
    set_trainable(model, [p for g in pgs for p in g["params"]])
    return Phase(name=name, module=model, train=ctx.train, val=ctx.val, param_groups=pgs,
                 extra_loss=extra_loss, placement=ctx.placement())


def head_scale(ctx: TransferContext, gname: str) -> float:
    return ctx.head_lr_scale if gname == "head" else 1.0


def _as_bool(value: str) -> bool:
    low = str(value).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def parse_kv(text: str, what: str) -> dict[str, str]:
    """``"k=v,k=v"`` -> ``{"k": "v", ...}`` (an empty string gives ``{}``); ``what`` names it in errors."""
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what}: expected key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
_PARSERS: dict[type, Any] = {bool: _as_bool}


def parse_options(cls: type, raw: dict[str, str], kind: str = "strategy") -> Any:
    """Build an options dataclass from ``key=value`` strings, converting to the field types
    (``true``/``false``, ``yes``/``no``, ``1``/``0`` for booleans); ``kind`` names them in errors."""
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            names = ", ".join(known) or "none"
            raise ConfigError(f"unknown {kind} option '{key}' (options: {names})")
        declared = known[key].type
        typ: type = declared if isinstance(declared, type) else _TYPES.get(str(declared), str)
        try:
            kwargs[key] = value if isinstance(value, typ) else _PARSERS.get(typ, typ)(value)
        except ValueError:
            raise ConfigError(f"{kind} option {key}={value!r} is not a valid {typ.__name__}") from None
    return cls(**kwargs)
