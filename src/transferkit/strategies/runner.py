"""The runner: a strategy's phases through the training loop, with its backbone's recipe and the divergence guard.

It sits above :mod:`~transferkit.strategies.base` (the plug-in contract) and
:mod:`~transferkit.strategies.recipes` (which reads a :class:`~transferkit.strategies.base.TransferContext`),
so neither of those needs the other's module at import time.
"""

from __future__ import annotations

from pathlib import Path

from transferkit.engine import progress
from transferkit.engine.divergence import fit_recorded
from transferkit.engine.loop import PhaseResult
from transferkit.strategies.base import Strategy, TransferContext
from transferkit.strategies.recipes import apply_recipe, attach_augment


def run_strategy(strategy: Strategy, ctx: TransferContext, checkpoint_dir: Path | None = None,
                 max_retries: int = 2, lr_backoff: float = 0.1) -> list[PhaseResult]:
    """Run every phase of ``strategy`` through the training loop, then its ``finish`` step.

    A phase whose loss turns NaN/inf, or that does not learn after such a rollback, is rolled back to
    its starting weights and retried with the learning rate times ``lr_backoff`` (at most
    ``max_retries`` times; :func:`~transferkit.engine.divergence.fit_recorded`); every retry is
    recorded in ``ctx.info["divergence"]``, a recovery's warning in ``ctx.info["warnings"]``. When
    the retries are spent a one-line :class:`DivergenceError` names the learning rate to lower.
    The backbone's recipe for the strategy (strategies/recipes.py) is applied first; with ``augment``
    on, each phase that trains the model on its image inputs gets the augmentation policy.
    """
    apply_recipe(strategy.name, ctx)
    for phase in progress.following(ctx.cfg.progress, strategy.phases(ctx)):  # feature bars follow --progress
        attach_augment(phase, ctx)  # training batches of the model's own inputs, when augment is on
        fit_recorded(phase, ctx.cfg, checkpoint_dir, ctx.results, ctx.info, max_retries, lr_backoff)
    strategy.finish(ctx)
    for p in ctx.model.parameters():
        p.requires_grad_(True)
    return ctx.results
