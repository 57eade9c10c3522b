"""Target-output regularisers: MCC and confidence-thresholded self-training."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.adaptation.base import AdaptContext, Method, adapt_phase, joint_forward
from transferkit.adaptation.catalog import METHODS, make_method
from transferkit.adaptation.functional import (
    class_balance_loss,
    class_balanced_pseudo_label_loss,
    minimum_class_confusion,
    pseudo_label_loss,
)
from transferkit.adaptation.teacher import domain_bn_forward, ema_update
from transferkit.engine.loop import Phase
from transferkit.errors import ConfigError
from transferkit.models.base import TransferModel
from transferkit.options import opt


@dataclass
class MCCOptions:
    trade_off: float = opt(1.0, "weight of the class-confusion loss")
    temperature: float = opt(2.5, "softmax temperature of the confusion estimate")
    domain_bn: bool = opt(False, "separate source / target BatchNorm batches; running statistics follow the target")
    balance: float = opt(0.0, "weight of the class-balance loss KL(mean target prediction || uniform) (0 = none)")

    def __post_init__(self) -> None:
        if not self.trade_off >= 0 or not self.temperature > 0:
            raise ConfigError(f"mcc: trade_off must be >= 0 and temperature > 0, got {self.trade_off}, "
                              f"{self.temperature}")


def mcc_loss(module: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor | None,
             trade_off: float, temperature: float, domain_bn: bool = False, balance: float = 0.0) -> torch.Tensor:
    """``CE(source) + trade_off * MCC(z_t) + balance * KL(p_bar_t || uniform)`` (Jin et al., ECCV 2020,
    eq. 7; :func:`class_balance_loss`); with ``domain_bn`` the domains go through BatchNorm
    separately (:func:`~transferkit.adaptation.teacher.domain_bn_forward`)."""
    _, zs, _, zt = (domain_bn_forward if domain_bn else joint_forward)(cast(TransferModel, module.model), xs, xt)
    cls = F.cross_entropy(zs.float(), ys)
    if zt is None:
        return cls
    out = cls + trade_off * minimum_class_confusion(zt, temperature)
    return out + balance * class_balance_loss(zt) if balance > 0 else out


class MCC(Method):
    """Minimum Class Confusion (Jin et al., ECCV 2020): penalise between-class confusion on the target."""

    name = "mcc"
    Options = MCCOptions

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        o = self.options
        w, t, dbn, bal = o.trade_off, o.temperature, o.domain_bn, o.balance
        yield adapt_phase(ctx, lambda m, xs, ys, xt: mcc_loss(m, xs, ys, xt, w, t, dbn, bal), "mcc")


@dataclass
class SelfTrainingOptions:
    base: str = opt("source_only", "method to run first (e.g. dann, mcc)")
    threshold: float = opt(0.9, "confidence needed for a pseudo-label")
    trade_off: float = opt(1.0, "weight of the pseudo-label loss")
    balanced: bool = opt(True, "class-balanced pseudo-labels (each class weighs the same)")
    mcc: float = opt(0.0, "weight of an MCC term kept during self-training (0 = none)")
    consistency: bool = opt(False, "FixMatch-style: pseudo-labels from the clean target batch, loss on a re-styled "
                                   "copy")
    base_fraction: float = opt(1.0, "share of the epoch budget for the base phase; self-training gets the rest "
                                    "(1 = each gets all)")
    domain_bn: bool = opt(False, "separate source / target BatchNorm batches (also in the base phase when it "
                                 "supports it)")
    ema: float = opt(0.0, "pseudo-labels from a mean teacher with this EMA decay (e.g. 0.99); 0 = from the model "
                          "itself")
    class_balance: float = opt(0.0, "weight of the class-balance loss KL(mean target prediction || uniform), also in "
                                    "the base phase")

    def __post_init__(self) -> None:
        if not 0 <= self.ema < 1:
            raise ConfigError(f"self_training: ema must be in [0, 1), got {self.ema}")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"self_training: threshold must be in (0, 1], got {self.threshold}")
        if self.base == "self_training":
            raise ConfigError("self_training: base cannot be self_training itself")
        if not 0 < self.base_fraction <= 1:
            raise ConfigError(f"self_training: base_fraction must be in (0, 1], got {self.base_fraction}")
        if not self.trade_off >= 0 or not self.mcc >= 0 or not self.class_balance >= 0:
            raise ConfigError(f"self_training: trade_off and mcc must be >= 0, got {self.trade_off}, {self.mcc}")


def self_training_loss(module: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor | None,
                       trade_off: float, threshold: float, balanced: bool = False, mcc: float = 0.0,
                       temperature: float = 2.5, consistency: bool = False, domain_bn: bool = False,
                       ema: float = 0.0, class_balance: float = 0.0) -> torch.Tensor:
    """``CE(source) + trade_off * PL(z_t) + mcc * MCC(z_t)``.

    ``PL`` is :func:`pseudo_label_loss` (``1/N sum_i 1[conf_i >= tau] CE(z_t,i, pseudo_i)``) or,
    with ``balanced``, :func:`class_balanced_pseudo_label_loss`. With ``consistency`` the
    pseudo-labels come from the clean target batch and the loss is taken on a re-styled copy of it
    (:func:`~transferkit.adaptation.augment.augment_glyphs`; FixMatch, Sohn et al., NeurIPS 2020).
    With ``ema > 0`` and a ``module.teacher``, the teacher is first moved towards the model
    (:func:`~transferkit.adaptation.teacher.ema_update`) and its predictions on the clean target
    batch give the pseudo-labels (mean teacher; French et al., ICLR 2018). ``domain_bn``: see
    :func:`~transferkit.adaptation.teacher.domain_bn_forward`. ``class_balance`` adds
    ``class_balance * KL(p_bar_t || uniform)`` on the clean target batch (:func:`class_balance_loss`).
    """
    teacher = getattr(module, "teacher", None) if ema > 0 else None
    zteach = None
    if teacher is not None and xt is not None:
        ema_update(teacher, cast(nn.Module, module.model), ema)
        teacher.eval()
        with torch.no_grad():
            zteach = teacher(xt).float()
    xa = None
    if consistency and xt is not None:
        from transferkit.adaptation.augment import augment_glyphs

        with torch.no_grad():
            xa = augment_glyphs(xt)
        xt = torch.cat([xt, xa])
    _, zs, _, zt = (domain_bn_forward if domain_bn else joint_forward)(cast(TransferModel, module.model), xs, xt)
    cls = F.cross_entropy(zs.float(), ys)
    if zt is None:
        return cls
    fn = class_balanced_pseudo_label_loss if balanced else pseudo_label_loss
    if xa is not None:
        zt, za = zt[: len(xa)], zt[len(xa) :]
        pl = fn(za, threshold, zt.detach() if zteach is None else zteach)[0]
    else:
        pl = fn(zt, threshold, zteach)[0]
    out = cls + trade_off * pl
    if class_balance > 0:
        out = out + class_balance * class_balance_loss(zt)
    return out + mcc * minimum_class_confusion(zt, temperature) if mcc > 0 else out


class SelfTraining(Method):
    """Self-training with confidence-thresholded pseudo-labels, optionally after another method."""

    name = "self_training"
    Options = SelfTrainingOptions

    def _base(self) -> Method:
        fields = getattr(METHODS.get(self.options.base).Options, "__dataclass_fields__", {})
        opts: dict[str, Any] = {}
        if self.options.domain_bn and "domain_bn" in fields:
            opts["domain_bn"] = True
        if self.options.class_balance > 0 and "balance" in fields:
            opts["balance"] = self.options.class_balance
        return make_method(self.options.base, opts)

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
        w, tau, bal, mu, cons, dbn, ema, cb = (o.trade_off, o.threshold, o.balanced, o.mcc, o.consistency, o.domain_bn,
                                               o.ema, o.class_balance)
        teacher = None
        if ema > 0:
            teacher = copy.deepcopy(ctx.model)
            for p in teacher.parameters():
                p.requires_grad_(False)
        def loss(m: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor | None) -> torch.Tensor:
            return self_training_loss(m, xs, ys, xt, w, tau, bal, mu, consistency=cons, domain_bn=dbn, ema=ema,
                                      class_balance=cb)

        yield adapt_phase(ctx, loss, "self_training", epochs=second, teacher=teacher)
