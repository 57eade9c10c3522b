"""The runner of a strategy: its settings resolved once, then :func:`~transferkit.engine.plugin.run_plugin`
with the augmentation policy.

It sits above :mod:`~transferkit.strategies.base` (the plug-in contract) and
:mod:`~transferkit.strategies.recipes` (which reads a :class:`~transferkit.strategies.base.TransferContext`),
so neither of those needs the other's module at import time.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from transferkit.engine.loop import PhaseResult
from transferkit.engine.plugin import run_plugin
from transferkit.strategies.base import Strategy, TransferContext
from transferkit.strategies.recipes import Settings, attach_augment, resolve_settings


def settle(strategy: str, ctx: TransferContext) -> Settings | None:
    """Resolve the training settings ``strategy`` trains with on ``ctx``'s backbone, once, before it trains
    (:func:`~transferkit.strategies.recipes.resolve_settings`: the settings the user gave, named in
    ``ctx.user_set``, over the backbone's recipe for ``strategy``, over the rest of ``ctx.cfg``), and start
    ``ctx`` from them: ``ctx.cfg``, ``ctx.head_lr_scale`` and, when the recipe filled some,
    ``ctx.info["recipe"]``. A context built by hand (``user_set`` None) keeps exactly its settings."""
    if ctx.user_set is None:
        return None
    given: dict[str, Any] = {k: getattr(ctx.cfg, k) for k in ctx.user_set if hasattr(ctx.cfg, k)}
    if "head_lr_scale" in ctx.user_set:
        given["head_lr_scale"] = ctx.head_lr_scale
    base = {**asdict(ctx.cfg), "head_lr_scale": ctx.head_lr_scale}
    settings = resolve_settings(ctx.model.spec.name, strategy, given, ctx.cfg.seed, command_defaults=base,
                                new_run=False)
    ctx.cfg, ctx.head_lr_scale = settings.cfg, settings.head_lr_scale
    record = settings.recipe_record(ctx.model.spec.name, strategy)
    if record is not None:
        ctx.info["recipe"] = record
    return settings


def run_strategy(strategy: Strategy, ctx: TransferContext, checkpoint_dir: Path | None = None,
                 max_retries: int = 2, lr_backoff: float = 0.1) -> list[PhaseResult]:
    """:func:`~transferkit.engine.plugin.run_plugin` for a strategy (checkpoints and resume, NaN rollback
    and retry: see there). The settings are resolved first (:func:`settle`, with the recipe of
    ``strategy.recipe_strategy()``: ``self_train``'s student's); nothing changes them while it trains. With
    ``augment`` on, each phase that trains the model on its image inputs gets the augmentation policy."""
    settle(strategy.recipe_strategy(), ctx)
    return run_plugin(strategy, ctx, checkpoint_dir, max_retries=max_retries, lr_backoff=lr_backoff,
                      prepare=lambda phase: attach_augment(phase, ctx))
