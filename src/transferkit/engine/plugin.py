"""One plug-in base for fine-tuning strategies and adaptation methods, and the one runner of their phases.

A plug-in (:class:`Plugin`) has a ``name``, a typed ``Options`` dataclass (fields made with
:func:`transferkit.options.opt`), and says *what* to train by yielding :class:`~transferkit.engine.loop.Phase`
objects from :meth:`Plugin.phases`; :meth:`Plugin.finish` runs after the last one. :func:`run_plugin` owns
*how*: each phase goes through :func:`~transferkit.engine.divergence.fit_recorded` (checkpoints and
resume, NaN rollback and retry, DDP and the step count of :func:`~transferkit.engine.loop.fit`).

``transferkit.strategies.Strategy`` and ``transferkit.adaptation.base.Method`` are this base with their
contexts (:class:`RunContext` subclasses); the registries of both are read by the same contract tests.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn

from transferkit import options as typed
from transferkit.engine import progress
from transferkit.engine.config import TrainConfig
from transferkit.engine.divergence import fit_recorded
from transferkit.engine.loop import Phase, PhaseResult, steps_per_epoch
from transferkit.engine.precision import Placement, resolve_placement
from transferkit.errors import ConfigError
from transferkit.models.base import TransferModel
from transferkit.registry import Registry


@dataclass
class NoOptions:
    """This plug-in takes no options."""


class RunContext(abc.ABC):
    """What every plug-in's context holds; :class:`~transferkit.strategies.TransferContext` and
    :class:`~transferkit.adaptation.base.AdaptContext` are dataclasses with these fields and their own."""

    model: TransferModel
    cfg: TrainConfig
    #: the results of the phases run so far, in order
    results: list[PhaseResult]
    #: what the plug-in records about its run (``metrics.json``'s ``strategy_info`` / ``method_info``)
    info: dict[str, Any]

    def placement(self, module: nn.Module | None = None) -> Placement:
        """Device, precision and memory format for ``module`` (default: the model) under ``cfg``."""
        m = self.model if module is None else module
        return resolve_placement(m, self.cfg.precision, self.cfg.channels_last, self.cfg.device)

    @abc.abstractmethod
    def labelled_train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The labelled training set a phase iterates over by default (its epochs count these)."""

    def total_steps(self, epochs: int | None = None) -> int:
        """Optimizer steps of one phase over :meth:`labelled_train` for ``epochs`` (default ``cfg.epochs``),
        as :func:`~transferkit.engine.loop.fit` counts them (:func:`~transferkit.engine.loop.steps_per_epoch`)."""
        return steps_per_epoch(len(self.labelled_train()[0]), self.cfg.batch_size) * (epochs or self.cfg.epochs)


C = TypeVar("C", bound=RunContext)
P = TypeVar("P", bound="Plugin[Any]")


class Plugin(abc.ABC, Generic[C]):
    """Base of strategies and adaptation methods: ``name``, typed ``Options``, :meth:`phases`, :meth:`finish`.

    ``Plugin(options)`` takes an ``Options`` instance, ``None`` (the defaults) or a dict of typed values
    or CLI strings (:func:`transferkit.options.build`: a bad value is a one-line error naming the field).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any = None) -> None:
        self.options: Any = typed.build(self.Options, options, self.option_kind())

    @classmethod
    def option_kind(cls) -> str:
        """How option errors name this plug-in (``unknown <kind> option 'x'``)."""
        return cls.name or cls.__name__

    def options_dict(self) -> dict[str, Any]:
        """The options as JSON (:func:`transferkit.options.to_dict`); ``type(self)(that)`` is the same plug-in."""
        out: dict[str, Any] = typed.to_dict(self.options)
        return out

    def check(self, model: TransferModel) -> None:
        """Raise a :class:`~transferkit.errors.ConfigError` when ``model`` cannot use this plug-in. Default: any can."""

    @abc.abstractmethod
    def phases(self, ctx: C) -> Iterator[Phase]:
        """Yield the phases to train, in order; each is run before the next is requested."""

    def finish(self, ctx: C) -> None:
        """Called after the last phase (e.g. weight-space interpolation, AdaBN's statistics). Default: nothing."""

    def summary_lines(self, info: Mapping[str, Any]) -> list[str]:
        """Lines the CLI prints about this plug-in's run, read from its recorded ``info``. Default: none."""
        return []

    def save_artifacts(self, directory: Path) -> list[Path]:
        """Plug-in-specific files of the finished run (e.g. a LoRA adapter). Default: none."""
        return []


def make_plugin(registry: Registry[type[P]], plugin: str | P, options: Any = None) -> P:
    """A configured plug-in: ``plugin`` a registered name with ``options`` (an ``Options`` instance, or a
    dict of typed values or CLI strings, or None for the defaults), or an already configured instance
    (returned as is; giving ``options`` too is an error)."""
    if isinstance(plugin, Plugin):
        if options is not None and options != {}:
            raise ConfigError(f"{registry.kind} '{plugin.name}' is already configured; pass options to it, "
                              "not beside it")
        return plugin
    if not isinstance(plugin, str):
        raise ConfigError(f"{registry.kind}: expected a name or a configured {registry.kind}, got "
                          f"{type(plugin).__name__}")
    cls = registry.get(plugin)
    if is_dataclass(options) and not isinstance(options, type) and not isinstance(options, cls.Options):
        raise ConfigError(f"{registry.kind} '{plugin}' takes {cls.Options.__name__}, got {type(options).__name__}")
    return cls(options)


def run_plugin(plugin: Plugin[C], ctx: C, checkpoint_dir: Path | None = None, *, max_retries: int = 2,
               lr_backoff: float = 0.1, prepare: Callable[[Phase], None] | None = None) -> list[PhaseResult]:
    """Run every phase of ``plugin`` through the training loop, then its ``finish`` step.

    ``plugin.check(ctx.model)`` runs first. Each phase (made while ``ctx.cfg.progress`` is in force, so a
    phase's feature extraction follows it too) is handed to ``prepare`` (e.g. a strategy's augmentation
    policy), then to :func:`~transferkit.engine.divergence.fit_recorded`: its checkpoint is
    ``checkpoint_dir/<index>-<name>`` (a killed run resumes from it), and a phase whose loss turns NaN/inf,
    or that does not learn after such a rollback, is rolled back to its starting weights and retried at
    ``lr_backoff`` times the learning rate (at most ``max_retries`` times), every retry recorded in
    ``ctx.info["divergence"]`` and a recovery's warning in ``ctx.info["warnings"]``; when the retries are
    spent a one-line :class:`~transferkit.engine.loop.DivergenceError` names the learning rate to lower.
    Every parameter of the model is trainable again afterwards.
    """
    plugin.check(ctx.model)
    for phase in progress.following(ctx.cfg.progress, plugin.phases(ctx)):
        if prepare is not None:
            prepare(phase)
        fit_recorded(phase, ctx.cfg, checkpoint_dir, ctx.results, ctx.info, max_retries, lr_backoff)
    plugin.finish(ctx)
    for p in ctx.model.parameters():
        p.requires_grad_(True)
    return ctx.results
