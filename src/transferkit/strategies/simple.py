"""The plain strategies: scratch, linear_probe, full, partial, lp_ft, layerwise_lr."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from transferkit.engine.loop import Phase
from transferkit.errors import ConfigError
from transferkit.models.base import TransferModel
from transferkit.options import opt
from transferkit.strategies.base import Strategy, TransferContext, finetune_phase, head_scale, probe_phase


def _all_groups(ctx: TransferContext) -> list[tuple[str, float]]:
    return [(n, head_scale(ctx, n)) for n, _ in ctx.model.layer_groups()]


class Scratch(Strategy):
    """Baseline: the same architecture, randomly initialised, trained on the target alone."""

    name = "scratch"

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        ctx.model = ctx.fresh_model()
        yield finetune_phase(ctx, [(n, 1.0) for n, _ in ctx.model.layer_groups()], name="scratch")


class LinearProbe(Strategy):
    """Frozen backbone; the head is trained on features computed once and cached."""

    name = "linear_probe"

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        yield probe_phase(ctx)

    def trained_groups(self, model: TransferModel) -> list[str]:
        return ["head"]


class Full(Strategy):
    """Fine-tune every layer (head at a higher learning rate)."""

    name = "full"

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        yield finetune_phase(ctx, _all_groups(ctx))


@dataclass
class PartialOptions:
    k: int = opt(2, "number of layer groups to train, counted from the output (head included)")

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"partial: k must be at least 1, got {self.k}")


class Partial(Strategy):
    """Fine-tune only the last ``k`` layer groups (the head counts as one); the rest stay frozen."""

    name = "partial"
    Options = PartialOptions

    def trained_groups(self, model: TransferModel) -> list[str]:
        names = [n for n, _ in model.layer_groups()]
        if self.options.k > len(names):
            raise ConfigError(
                f"partial: k={self.options.k} but {model.spec.name} has {len(names)} layer groups "
                f"({', '.join(names)}); use k=1..{len(names)} (k={len(names)} trains all of them, as --strategy full "
                "does)"
            )
        return names[-self.options.k :]

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        yield finetune_phase(ctx, [(n, head_scale(ctx, n)) for n in self.trained_groups(ctx.model)])


@dataclass
class LPFTOptions:
    ft_lr_scale: float = opt(0.5, "fine-tuning learning rate relative to --lr")


class LPFT(Strategy):
    """LP-FT (Kumar et al., ICLR 2022): linear probe first, then fine-tune everything from the probed head.

    Starting fine-tuning from a trained head distorts the pretrained features less than starting
    from a random one.
    """

    name = "lp_ft"
    Options = LPFTOptions

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        yield probe_phase(ctx)
        s = self.options.ft_lr_scale
        yield finetune_phase(ctx, [(n, s) for n, _ in ctx.model.layer_groups()])


@dataclass
class LayerwiseOptions:
    decay: float = opt(0.5, "learning-rate factor per layer group toward the input")

    def __post_init__(self) -> None:
        if not 0 < self.decay <= 1:
            raise ConfigError(f"layerwise_lr: decay must be in (0, 1], got {self.decay}")


class LayerwiseLR(Strategy):
    """Discriminative learning rates (ULMFiT; layer-wise decay as in BEiT/ELECTRA).

    Group ``i`` of ``L`` (0 = input) trains at ``lr * decay ** (L - 1 - i)``; the head at ``lr``
    times the head scale.
    """

    name = "layerwise_lr"
    Options = LayerwiseOptions

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        names = [n for n, _ in ctx.model.layer_groups()]
        body = names[:-1]
        groups = [(n, self.options.decay ** (len(body) - i)) for i, n in enumerate(body)]
        yield finetune_phase(ctx, [*groups, ("head", ctx.head_lr_scale)])
