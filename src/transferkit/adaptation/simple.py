"""The baseline and the statistics-only method: ``source_only`` and ``adabn``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.adaptation.base import AdaptContext, AdaptModule, Method, adapt_phase
from transferkit.engine.loop import Phase
from transferkit.engine.precision import Placement
from transferkit.errors import ConfigError
from transferkit.models.base import TransferModel
from transferkit.options import opt


def source_loss(module: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy on the labelled source batch; the target batch is ignored."""
    return F.cross_entropy(cast(AdaptModule, module).model(xs).float(), ys)


class SourceOnly(Method):
    """Baseline: keep training on the labelled source alone (checkpoint still picked label-free)."""

    name = "source_only"

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        yield adapt_phase(ctx, source_loss, "source_only", uses_target=False)


@dataclass
class AdaBNOptions:
    finetune: bool = opt(False, "train source_only first, then re-estimate the statistics")


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, x: torch.Tensor, place: Placement, batch_size: int = 256) -> int:
    """AdaBN (Li et al., 2016): replace every BatchNorm's running mean/var by target statistics.

    Statistics are cumulative averages over ``x`` in batches (momentum ``None``); other layers
    stay in eval mode (dropout off). Returns the number of BatchNorm layers updated.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    was = model.training
    model.to(place.device).eval()
    saved = []
    for bn in bns:
        saved.append(bn.momentum)
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        for i in range(0, len(x), batch_size):
            with place.autocast():
                model(place.to_input(x[i : i + batch_size]))
    finally:
        for bn, mom in zip(bns, saved, strict=True):
            bn.momentum = mom
        model.train(was)
    return len(bns)


class AdaBN(Method):
    """AdaBN (Li et al., 2016): re-estimate BatchNorm statistics on the target; no gradient steps.

    Needs a backbone with BatchNorm (``small_cnn`` has it, ``mlp`` does not).
    """

    name = "adabn"
    Options = AdaBNOptions

    def check(self, model: TransferModel) -> None:
        if not model.has_batchnorm():
            raise ConfigError(f"adabn needs a backbone with BatchNorm layers; '{model.spec.name}' has none "
                              "(use small_cnn, or another method such as coral or dann)")

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        if self.options.finetune:
            yield adapt_phase(ctx, source_loss, "source_only", uses_target=False)

    def finish(self, ctx: AdaptContext) -> None:
        n = recompute_batchnorm(ctx.model, ctx.target_train, ctx.placement(), ctx.cfg.batch_size * 4)
        ctx.info["adabn_layers"] = n
