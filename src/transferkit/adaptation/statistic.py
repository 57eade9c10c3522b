"""Statistic matching: MK-MMD (DAN) and Deep CORAL on the backbone features."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.adaptation.base import AdaptContext, AdaptModule, Method, adapt_phase, joint_forward
from transferkit.adaptation.functional import coral, mk_mmd
from transferkit.engine.loop import Phase
from transferkit.errors import ConfigError
from transferkit.options import opt


@dataclass
class WeightOptions:
    trade_off: float = opt(1.0, "weight of the alignment loss")

    def __post_init__(self) -> None:
        if not self.trade_off >= 0:
            raise ConfigError(f"trade_off must be zero or positive, got {self.trade_off}")


def aligned_loss(module: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor | None, trade_off: float,
                 distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``CE(source) + trade_off * distance(f_s, f_t)`` on the backbone features."""
    fs, zs, ft, _ = joint_forward(cast(AdaptModule, module).model, xs, xt)
    cls = F.cross_entropy(zs.float(), ys)
    if ft is None:
        return cls
    return cls + trade_off * distance(fs.float(), ft.float())


class MMD(Method):
    """DAN (Long et al., ICML 2015): multi-kernel Gaussian MMD between source and target features."""

    name = "mmd"
    Options = WeightOptions

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        w = self.options.trade_off
        yield adapt_phase(ctx, lambda m, xs, ys, xt: aligned_loss(m, xs, ys, xt, w, mk_mmd), "mmd")


class CORAL(Method):
    """Deep CORAL (Sun & Saenko, 2016): match the feature covariances of source and target."""

    name = "coral"
    Options = WeightOptions

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        w = self.options.trade_off
        yield adapt_phase(ctx, lambda m, xs, ys, xt: aligned_loss(m, xs, ys, xt, w, coral), "coral")
