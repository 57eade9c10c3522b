"""Target-output regularisers: MCC and confidence-thresholded self-training."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.adaptation.base import AdaptContext, Method, adapt_phase, joint_forward
from transferkit.adaptation.functional import minimum_class_confusion, pseudo_label_loss
from transferkit.engine.loop import Phase
from transferkit.errors import ConfigError
from transferkit.models.base import TransferModel


@dataclass
class MCCOptions:
    trade_off: float = field(default=1.0, metadata={"help": "weight of the class-confusion loss"})
    temperature: float = field(default=2.5, metadata={"help": "softmax temperature of the confusion estimate"})

    def __post_init__(self) -> None:
        if not self.trade_off >= 0 or not self.temperature > 0:
            raise ConfigError(f"mcc: trade_off must be >= 0 and temperature > 0, got {self.trade_off}, {self.temperature}")


def mcc_loss(module: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor | None,
             trade_off: float, temperature: float) -> torch.Tensor:
    """``CE(source) + trade_off * MCC(z_t)`` (Jin et al., ECCV 2020, eq. 7)."""
    _, zs, _, zt = joint_forward(module.model, xs, xt)
    cls = F.cross_entropy(zs.float(), ys)
    return cls if zt is None else cls + trade_off * minimum_class_confusion(zt, temperature)


class MCC(Method):
    """Minimum Class Confusion (Jin et al., ECCV 2020): penalise between-class confusion on the target."""

    name = "mcc"
    Options = MCCOptions

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        w, t = self.options.trade_off, self.options.temperature
        yield adapt_phase(ctx, lambda m, xs, ys, xt: mcc_loss(m, xs, ys, xt, w, t), "mcc")


@dataclass
class SelfTrainingOptions:
    base: str = field(default="source_only", metadata={"help": "method to run first (e.g. dann, mcc)"})
    threshold: float = field(default=0.9, metadata={"help": "confidence needed for a pseudo-label"})
    trade_off: float = field(default=1.0, metadata={"help": "weight of the pseudo-label loss"})

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"self_training: threshold must be in (0, 1], got {self.threshold}")
        if self.base == "self_training":
            raise ConfigError("self_training: base cannot be self_training itself")


def self_training_loss(module: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor | None,
                       trade_off: float, threshold: float) -> torch.Tensor:
    """``CE(source) + trade_off * 1/N sum_i 1[conf_i >= tau] CE(z_t,i, pseudo_i)``."""
    _, zs, _, zt = joint_forward(module.model, xs, xt)
    cls = F.cross_entropy(zs.float(), ys)
    return cls if zt is None else cls + trade_off * pseudo_label_loss(zt, threshold)[0]


class SelfTraining(Method):
    """Self-training with confidence-thresholded pseudo-labels, optionally after another method."""

    name = "self_training"
    Options = SelfTrainingOptions

    def _base(self) -> Method:
        from transferkit.adaptation.methods import make_method

        return make_method(self.options.base)

    def check(self, model: TransferModel) -> None:
        self._base().check(model)

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        base = self._base()
        yield from base.phases(ctx)
        base.finish(ctx)
        w, tau = self.options.trade_off, self.options.threshold
        yield adapt_phase(ctx, lambda m, xs, ys, xt: self_training_loss(m, xs, ys, xt, w, tau), "self_training")
