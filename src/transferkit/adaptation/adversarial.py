"""Adversarial alignment: DANN and CDAN(+E), a domain discriminator behind gradient reversal."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.adaptation.base import (
    AdaptContext,
    AdaptModule,
    Method,
    adapt_phase,
    domain_discriminator,
    joint_forward,
)
from transferkit.adaptation.functional import (
    GradientReversal,
    domain_adversarial_loss,
    entropy_weights,
    multilinear_map,
    randomized_multilinear_map,
)
from transferkit.engine.loop import Phase
from transferkit.errors import ConfigError
from transferkit.options import opt


@dataclass
class AdversarialOptions:
    trade_off: float = opt(1.0, "weight of the domain loss (scaled by the GRL schedule)")
    hidden: int = opt(256, "width of the domain discriminator")
    dropout: float = opt(0.5, "dropout in the domain discriminator")

    def __post_init__(self) -> None:
        if not self.trade_off >= 0:
            raise ConfigError(f"trade_off must be zero or positive, got {self.trade_off}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.hidden < 1:
            raise ConfigError(f"hidden must be at least 1, got {self.hidden}")


def dann_loss(module: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor | None,
              trade_off: float) -> torch.Tensor:
    """``CE(source) + trade_off * L_dom(D(GRL(f_s)), D(GRL(f_t)))`` (Ganin et al., JMLR 2016, eq. 9)."""
    m = cast(AdaptModule, module)
    fs, zs, ft, _ = joint_forward(m.model, xs, xt)
    cls = F.cross_entropy(zs.float(), ys)
    if ft is None:
        return cls
    assert m.discriminator is not None and m.grl is not None
    d = m.discriminator(m.grl(torch.cat([fs, ft])))
    return cls + trade_off * domain_adversarial_loss(d[: len(fs)], d[len(fs) :])


class DANN(Method):
    """DANN (Ganin et al., JMLR 2016): a domain classifier on the features through gradient reversal.

    The reversal coefficient follows ``lambda_p = 2 / (1 + exp(-10 p)) - 1`` over the phase; its
    step counter is a buffer of the phase module (saved with checkpoints).
    """

    name = "dann"
    Options = AdversarialOptions

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        disc = domain_discriminator(ctx.model.feature_dim, self.options.hidden, self.options.dropout)
        grl = GradientReversal(max_steps=ctx.total_steps())
        w = self.options.trade_off
        yield adapt_phase(ctx, lambda m, xs, ys, xt: dann_loss(m, xs, ys, xt, w), "dann", discriminator=disc, grl=grl)


@dataclass
class CDANOptions(AdversarialOptions):
    entropy: bool = opt(True, "CDAN+E: weight examples by 1 + exp(-entropy)")
    max_map_dim: int = opt(4096, "use the randomized multilinear map (output this size) when features x classes "
                                 "exceeds it")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_map_dim < 1:
            raise ConfigError(f"max_map_dim must be at least 1, got {self.max_map_dim}")


class RandomMap(nn.Module):
    """The fixed random matrices of :func:`randomized_multilinear_map`, kept as buffers (saved, moved)."""

    r_features: torch.Tensor
    r_probs: torch.Tensor

    def __init__(self, feature_dim: int, num_classes: int, out_dim: int) -> None:
        super().__init__()
        self.register_buffer("r_features", torch.randn(feature_dim, out_dim))
        self.register_buffer("r_probs", torch.randn(num_classes, out_dim))

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return randomized_multilinear_map(f, g, self.r_features, self.r_probs)


def cdan_loss(module: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor | None,
              trade_off: float, use_entropy: bool = True) -> torch.Tensor:
    """``CE(source) + trade_off * L_dom`` on ``GRL(g ⊗ f)`` (Long et al., NeurIPS 2018, eqs. 4-8).

    When the module carries a ``random_map`` (:class:`RandomMap`) its randomized map replaces ``g ⊗ f``.
    """
    m = cast(AdaptModule, module)
    fs, zs, ft, zt = joint_forward(m.model, xs, xt)
    cls = F.cross_entropy(zs.float(), ys)
    if ft is None or zt is None:
        return cls
    f, z = torch.cat([fs, ft]).float(), torch.cat([zs, zt]).float()
    g = F.softmax(z, dim=1).detach()
    rmap = getattr(module, "random_map", None)
    h = multilinear_map(f, g) if rmap is None else rmap(f, g)
    assert m.discriminator is not None and m.grl is not None
    d = m.discriminator(m.grl(h))
    ns = len(fs)
    ws = wt = None
    if use_entropy:
        ws, wt = entropy_weights(zs), entropy_weights(zt)
    return cls + trade_off * domain_adversarial_loss(d[:ns], d[ns:], ws, wt)


class CDAN(Method):
    """CDAN(+E) (Long et al., NeurIPS 2018): the discriminator sees features conditioned on predictions.

    Above ``max_map_dim`` (features x classes) the randomized multilinear map of that size is used.
    """

    name = "cdan"
    Options = CDANOptions

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        dim = ctx.model.feature_dim * ctx.model.num_classes
        rmap = None
        if dim > self.options.max_map_dim:
            rmap = RandomMap(ctx.model.feature_dim, ctx.model.num_classes, self.options.max_map_dim)
            dim = self.options.max_map_dim
        disc = domain_discriminator(dim, self.options.hidden, self.options.dropout)
        grl = GradientReversal(max_steps=ctx.total_steps())
        w, e = self.options.trade_off, self.options.entropy
        phase = adapt_phase(ctx, lambda m, xs, ys, xt: cdan_loss(m, xs, ys, xt, w, e), "cdan",
                            discriminator=disc, grl=grl)
        if rmap is not None:
            phase.module.random_map = rmap  # a buffer-only submodule: saved and moved with the phase
        yield phase
