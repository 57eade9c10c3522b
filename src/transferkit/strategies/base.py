"""What every fine-tuning strategy shares: the context it reads and the phases it yields.

A strategy says *what* to train (parameter groups, learning rates, phases, extra loss terms);
:func:`~transferkit.strategies.runner.run_strategy` hands each phase to the one runner
(:func:`transferkit.engine.plugin.run_plugin`). :class:`Strategy` is the one plug-in base
(:class:`~transferkit.engine.plugin.Plugin`) with a :class:`TransferContext`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.engine.config import TrainConfig
from transferkit.engine.features import FeatureCache
from transferkit.engine.loop import Phase, PhaseResult
from transferkit.engine.plugin import NoOptions, Plugin, RunContext
from transferkit.engine.precision import resolve_placement
from transferkit.models.base import TransferModel

log = logging.getLogger("transferkit")

__all__ = ["NoOptions", "Strategy", "TransferContext", "finetune_phase", "group_params", "head_scale",
           "probe_phase", "set_trainable"]


@dataclass
class TransferContext(RunContext):
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

    def labelled_train(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.train


class Strategy(Plugin[TransferContext]):
    """Base class: subclasses set ``name``, ``Options`` (a dataclass of :func:`~transferkit.options.opt`
    fields) and implement :meth:`phases`; see :class:`~transferkit.engine.plugin.Plugin`."""

    @classmethod
    def option_kind(cls) -> str:
        return "strategy"  # "unknown strategy option 'kk'", as the CLI has always said

    def recipe_strategy(self) -> str:
        """The strategy whose backbone recipe this one trains with (its own name; ``self_train``: its student's)."""
        return self.name

    def trained_groups(self, model: TransferModel) -> list[str]:
        """Names of the layer groups this strategy may change (all by default)."""
        return [n for n, _ in model.layer_groups()]


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
