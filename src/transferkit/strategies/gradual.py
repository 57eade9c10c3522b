"""Gradual unfreezing (Howard & Ruder, ULMFiT, ACL 2018)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from transferkit.engine.loop import Phase
from transferkit.errors import ConfigError
from transferkit.options import opt
from transferkit.strategies.base import Strategy, TransferContext, finetune_phase, group_params, head_scale


@dataclass
class GradualOptions:
    every: int = opt(1, "epochs between unfreezing steps (ULMFiT: one group per epoch)")

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"gradual_unfreeze: every must be >= 1, got {self.every}")


class GradualUnfreeze(Strategy):
    """Start with the head trainable; unfreeze one more layer group (output -> input) every few epochs.

    All groups sit in the optimizer from the start; frozen ones get no gradient, so the optimizer
    skips them until they thaw.
    """

    name = "gradual_unfreeze"
    Options = GradualOptions

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        names = [n for n, _ in ctx.model.layer_groups()]
        phase = finetune_phase(ctx, [(n, head_scale(ctx, n)) for n in names], name="unfreeze")
        for g in phase.param_groups:
            g["toggled"] = True
        every = self.options.every
        model = ctx.model

        def thaw(epoch: int) -> None:
            n_open = min(len(names), 1 + epoch // every)
            open_ = set(names[-n_open:])
            for n in names:
                for p in group_params(model, [n]):
                    p.requires_grad_(n in open_)

        thaw(0)
        phase.on_epoch_start = thaw
        yield phase
