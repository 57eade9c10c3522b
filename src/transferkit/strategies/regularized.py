"""Fine-tuning that keeps the source knowledge: L2-SP and WiSE-FT."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from transferkit.engine.loop import Phase, evaluate_arrays
from transferkit.errors import ConfigError
from transferkit.models.base import TransferModel
from transferkit.options import opt
from transferkit.strategies.base import Strategy, TransferContext, finetune_phase, head_scale, probe_phase


class L2SPPenalty(nn.Module):
    """L2-SP (Li, Grandvalet & Davoine, ICML 2018).

    ``Omega(w) = alpha/2 * ||w_S - w_S^0||^2 + beta/2 * ||w_new||^2`` where ``w_S`` are the
    backbone weights, ``w_S^0`` their source values (held as buffers, so ``.to()`` and
    ``state_dict()`` carry them) and ``w_new`` the head's weights.
    """

    def __init__(self, model: TransferModel, alpha: float, beta: float) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta
        self._params = list(model.backbone_parameters())
        self._head = [p for n, p in model.head.named_parameters() if n.endswith("weight")]
        for i, p in enumerate(self._params):
            self.register_buffer(f"anchor_{i}", p.detach().clone())

    def forward(self) -> torch.Tensor:
        sp = sum(((p - getattr(self, f"anchor_{i}")) ** 2).sum() for i, p in enumerate(self._params))
        head = sum((p**2).sum() for p in self._head)
        return 0.5 * self.alpha * sp + 0.5 * self.beta * head


@dataclass
class L2SPOptions:
    alpha: float = opt(0.1, "weight of the distance to the source weights")
    beta: float = opt(0.01, "weight of the L2 penalty on the new head")

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.beta < 0:
            raise ConfigError(f"l2sp: alpha and beta must be >= 0, got {self.alpha}, {self.beta}")


class L2SP(Strategy):
    """Fine-tune everything with a penalty pulling the backbone toward its source weights (L2-SP)."""

    name = "l2sp"
    Options = L2SPOptions

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        pen = L2SPPenalty(ctx.model, self.options.alpha, self.options.beta).to(next(ctx.model.parameters()).device)
        ctx.info["l2sp"] = {"alpha": self.options.alpha, "beta": self.options.beta}
        names = [n for n, _ in ctx.model.layer_groups()]
        no_wd = dict.fromkeys(names, 0.0)  # the penalty replaces weight decay toward zero
        yield finetune_phase(ctx, [(n, head_scale(ctx, n)) for n in names], extra_loss=pen, weight_decay=no_wd)


@dataclass
class WiseFTOptions:
    steps: int = opt(10, "alpha grid size: alpha in {0, 1/steps, ..., 1}")

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"wise_ft: steps must be >= 1, got {self.steps}")


class WiseFT(Strategy):
    """WiSE-FT (Wortsman et al., CVPR 2022): interpolate weights between start and fine-tuned.

    ``theta(alpha) = (1 - alpha) * theta_0 + alpha * theta_ft``. Here ``theta_0`` is the source
    backbone with a linear-probed head (so alpha = 0 is a working classifier), ``theta_ft`` the
    result of fine-tuning from it; alpha is chosen on the validation split, preferring the
    smaller alpha (closer to the source) on ties.
    """

    name = "wise_ft"
    Options = WiseFTOptions

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        yield probe_phase(ctx)
        self._start = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        yield finetune_phase(ctx, [(n, head_scale(ctx, n)) for n, _ in ctx.model.layer_groups()])

    def finish(self, ctx: TransferContext) -> None:
        model = ctx.model
        end = {k: v.detach().clone() for k, v in model.state_dict().items()}
        n = self.options.steps
        scores: list[tuple[float, float]] = []
        for i in range(n + 1):
            alpha = i / n
            model.load_state_dict(interpolate(self._start, end, alpha))
            if ctx.val is None:
                scores.append((alpha, 0.0 if i < n else 1.0))
                continue
            acc, _ = evaluate_arrays(model, ctx.val[0], ctx.val[1], ctx.placement())
            scores.append((alpha, acc))
        best_alpha = max(scores, key=lambda s: (s[1], -s[0]))[0]
        model.load_state_dict(interpolate(self._start, end, best_alpha))
        ctx.info["wise_ft"] = {"alpha": best_alpha, "val_acc_by_alpha": {f"{a:.2f}": s for a, s in scores}}


def interpolate(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * a + alpha * b`` for floating tensors; integer buffers (BN counters) from ``b``."""
    return {k: (1 - alpha) * a[k] + alpha * b[k] if a[k].is_floating_point() else b[k] for k in a}
