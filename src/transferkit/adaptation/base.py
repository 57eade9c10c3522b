"""What every domain-adaptation method shares: the context it reads and the phases it yields.

A method says *what* to train and *which extra loss terms* apply, through the training loop's
UDA hooks (:class:`~transferkit.engine.loop.Phase` ``unlabelled``, ``step_loss``, ``val_score``).
:class:`Method` is the one plug-in base (:class:`~transferkit.engine.plugin.Plugin`) with an
:class:`AdaptContext`, and :func:`run_method` is the one runner
(:func:`~transferkit.engine.plugin.run_plugin`: checkpoints and resume, NaN rollback and retry).
Target labels never reach a method: the context holds target *inputs* only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.adaptation.validators import ValidationData, score
from transferkit.engine.config import TrainConfig
from transferkit.engine.features import extract_features
from transferkit.engine.loop import Phase, PhaseResult
from transferkit.engine.plugin import Plugin, RunContext, run_plugin
from transferkit.engine.precision import Placement, predict_logits
from transferkit.models.base import TransferModel
from transferkit.strategies.base import set_trainable

Tensors = tuple[torch.Tensor, torch.Tensor]
StepLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass
class AdaptContext(RunContext):
    """Everything a method may read: labelled source data and *unlabelled* target inputs.

    ``validator`` names the label-free score (see :mod:`transferkit.adaptation.validators`)
    that picks the checkpoint (early stopping on the target validation inputs); ``augment``
    re-styles every *source* batch with :func:`~transferkit.adaptation.augment.augment_glyphs`.
    """

    model: TransferModel
    source_train: Tensors
    source_val: Tensors | None
    target_train: torch.Tensor
    target_val: torch.Tensor | None
    cfg: TrainConfig
    validator: str = "im"
    disc_lr_scale: float = 1.0
    augment: bool = False
    results: list[PhaseResult] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def labelled_train(self) -> Tensors:
        return self.source_train


class AdaptModule(nn.Module):
    """The module a phase trains: the model plus the method's extra parts (discriminator, GRL).

    Its forward is the model's, so evaluation works unchanged; the extras live in its
    ``state_dict`` so phase checkpoints (and resume) carry them. A ``teacher`` (a frozen copy of
    the model updated by the method, e.g. a mean teacher) is never trained by the optimizer.
    """

    def __init__(self, model: TransferModel, discriminator: nn.Module | None = None,
                 grl: nn.Module | None = None, teacher: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.discriminator = discriminator
        self.grl = grl
        self.teacher = teacher

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def domain_discriminator(in_features: int, hidden: int = 256, dropout: float = 0.5) -> nn.Sequential:
    """The usual two-hidden-layer domain classifier (one logit: source vs target).

    Shape: ``[N, in_features]`` -> ``[N, 1]``.
    """
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


def joint_forward(model: TransferModel, xs: torch.Tensor, xt: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One pass over source and target together (one BatchNorm batch, as in DANN/TLlib).

    Returns ``(f_s, z_s, f_t, z_t)``: features ``[N, D]`` and logits ``[N, C]`` per domain.
    """
    if xt is None:
        f = model.forward_features(xs)
        return f, model.head(f), None, None
    ns = xs.shape[0]
    f = model.forward_features(torch.cat([xs, xt]))
    z = model.head(f)
    return f[:ns], z[:ns], f[ns:], z[ns:]


class Method(Plugin[AdaptContext]):
    """Base class: subclasses set ``name``, ``Options`` (a dataclass of :func:`~transferkit.options.opt`
    fields) and implement :meth:`phases`; see :class:`~transferkit.engine.plugin.Plugin`."""


def with_augmentation(step_loss: StepLoss) -> StepLoss:
    """``step_loss`` applied to a randomly re-styled source batch (the target batch is untouched)."""
    from transferkit.adaptation.augment import augment_glyphs

    def loss(m: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            xa = augment_glyphs(xs)
        return step_loss(m, xa, ys, xt)

    return loss


def adapt_phase(ctx: AdaptContext, step_loss: StepLoss, name: str, *, discriminator: nn.Module | None = None,
                grl: nn.Module | None = None, uses_target: bool = True, epochs: int | None = None,
                teacher: nn.Module | None = None) -> Phase:
    """A phase training the whole model (and the method's extras) on source + unlabelled target.

    The checkpoint is chosen by ``ctx.validator`` on the target validation inputs; ``epochs``
    overrides the context's budget (e.g. a method of two phases splits it).
    """
    if ctx.augment:
        step_loss = with_augmentation(step_loss)
    module = AdaptModule(ctx.model, discriminator, grl, teacher)
    set_trainable(module, [p for n, p in module.named_parameters() if not n.startswith("teacher.")])
    groups: list[dict[str, Any]] = [{"params": ctx.model.backbone_parameters()},
                                    {"params": list(ctx.model.head.parameters())}]
    if discriminator is not None:
        groups.append({"params": list(discriminator.parameters()), "lr_scale": ctx.disc_lr_scale})
    place = ctx.placement(module)
    return Phase(name=name, module=module, train=ctx.source_train, val=None, param_groups=groups, epochs=epochs,
                 placement=place, unlabelled=ctx.target_train if uses_target else None, step_loss=step_loss,
                 val_score=make_val_score(ctx) if ctx.target_val is not None else None)


def validation_data(model: TransferModel, place: Placement, target_x: torch.Tensor,
                    source: Tensors | None = None) -> ValidationData:
    """Features and logits of ``model`` on target inputs (and on labelled source validation data)."""
    head_place = Placement(place.device, place.bf16, False)
    ft = extract_features(model, target_x, place)
    zt = predict_logits(model.head, ft, head_place)
    if source is None:
        return ValidationData(zt.numpy(), ft.numpy())
    fs = extract_features(model, source[0], place)
    zs = predict_logits(model.head, fs, head_place)
    return ValidationData(zt.numpy(), ft.numpy(), zs.numpy(), source[1].numpy(), fs.numpy())


def make_val_score(ctx: AdaptContext) -> Callable[[], tuple[float, float]]:
    """``val_score`` hook: ``(validator score, -score)`` of the current model, label-free on the target."""
    place = ctx.placement()

    def val_score() -> tuple[float, float]:
        assert ctx.target_val is not None
        s = score(ctx.validator, validation_data(ctx.model, place, ctx.target_val, ctx.source_val))
        return s, -s

    return val_score


def run_method(method: Method, ctx: AdaptContext, checkpoint_dir: Path | None = None, max_retries: int = 2,
               lr_backoff: float = 0.1) -> list[PhaseResult]:
    """:func:`~transferkit.engine.plugin.run_plugin` for an adaptation method: ``method.check`` first, every
    phase checkpointed under ``checkpoint_dir`` (a killed run resumes), a phase whose loss turns NaN/inf
    rolled back and retried at a tenth of the learning rate (twice at most), each retry recorded in
    ``ctx.info["divergence"]`` and a recovery's warning in ``ctx.info["warnings"]``."""
    return run_plugin(method, ctx, checkpoint_dir, max_retries=max_retries, lr_backoff=lr_backoff)
