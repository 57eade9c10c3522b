"""Target-output regularisers: MCC and confidence-thresholded self-training."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.adaptation.base import AdaptContext, Method, adapt_phase, joint_forward
from transferkit.adaptation.functional import (
    class_balanced_pseudo_label_loss,
    minimum_class_confusion,
    pseudo_label_loss,
)
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
    balanced: bool = field(default=True, metadata={"help": "class-balanced pseudo-labels (each class weighs the same)"})
    mcc: float = field(default=0.0, metadata={"help": "weight of an MCC term kept during self-training (0 = none)"})
    consistency: bool = field(default=False, metadata={
        "help": "FixMatch-style: pseudo-labels from the clean target batch, loss on a re-styled copy"})
    base_fraction: float = field(default=1.0, metadata={
        "help": "share of the epoch budget for the base phase; self-training gets the rest (1 = each gets all)"})

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"self_training: threshold must be in (0, 1], got {self.threshold}")
        if self.base == "self_training":
            raise ConfigError("self_training: base cannot be self_training itself")
        if not 0 < self.base_fraction <= 1:
            raise ConfigError(f"self_training: base_fraction must be in (0, 1], got {self.base_fraction}")
        if not self.trade_off >= 0 or not self.mcc >= 0:
            raise ConfigError(f"self_training: trade_off and mcc must be >= 0, got {self.trade_off}, {self.mcc}")


def self_training_loss(module: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor | None,
                       trade_off: float, threshold: float, balanced: bool = False, mcc: float = 0.0,
                       temperature: float = 2.5, consistency: bool = False) -> torch.Tensor:
    """``CE(source) + trade_off * PL(z_t) + mcc * MCC(z_t)``.

    ``PL`` is :func:`pseudo_label_loss` (``1/N sum_i 1[conf_i >= tau] CE(z_t,i, pseudo_i)``) or,
    with ``balanced``, :func:`class_balanced_pseudo_label_loss`. With ``consistency`` the
    pseudo-labels come from the clean target batch and the loss is taken on a re-styled copy of it
    (:func:`~transferkit.adaptation.augment.augment_glyphs`; FixMatch, Sohn et al., NeurIPS 2020).
    """
    xa = None
    if consistency and xt is not None:
        from transferkit.adaptation.augment import augment_glyphs

        with torch.no_grad():
            xa = augment_glyphs(xt)
        xt = torch.cat([xt, xa])
    _, zs, _, zt = joint_forward(module.model, xs, xt)
    cls = F.cross_entropy(zs.float(), ys)
    if zt is None:
        return cls
    fn = class_balanced_pseudo_label_loss if balanced else pseudo_label_loss
    if xa is not None:
        zt, za = zt[: len(xa)], zt[len(xa) :]
        pl = fn(za, threshold, zt.detach())[0]
    else:
        pl = fn(zt, threshold)[0]
    out = cls + trade_off * pl
    return out + mcc * minimum_class_confusion(zt, temperature) if mcc > 0 else out


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
        o = self.options
        base = self._base()
        total = ctx.cfg.epochs
        first = max(1, round(total * o.base_fraction)) if o.base_fraction < 1 else total
        second = max(1, total - first) if o.base_fraction < 1 else total
        for phase in base.phases(ctx):
            phase.epochs = first
            yield phase
        base.finish(ctx)
        w, tau, bal, mu, cons = o.trade_off, o.threshold, o.balanced, o.mcc, o.consistency
        yield adapt_phase(ctx, lambda m, xs, ys, xt: self_training_loss(m, xs, ys, xt, w, tau, bal, mu, consistency=cons),
                          "self_training", epochs=second)
