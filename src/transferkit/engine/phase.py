"""What the training loop runs and what it returns: :class:`Phase`, :class:`PhaseResult`, :class:`DivergenceError`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from transferkit.engine.precision import Placement
from transferkit.errors import TransferkitError


class DivergenceError(TransferkitError):
    """The loss became NaN or infinite."""


@dataclass
class Phase:
    """What to train: the module, its data, parameter groups and optional hooks.

    ``param_groups`` are dicts with ``params`` and an optional ``lr_scale`` (multiplied into the
    phase's learning rate) and ``weight_decay``. Parameters outside them are not updated.

    Domain adaptation plugs in through three optional hooks: ``unlabelled`` inputs (a batch of
    them, drawn with replacement, accompanies every labelled batch), ``step_loss(module, x, y,
    x_unlabelled)`` which replaces the default cross-entropy (it runs under autocast), and
    ``val_score()`` returning ``(score, loss)`` for early stopping when target labels are absent.
    """

    name: str
    module: nn.Module
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    param_groups: list[dict[str, Any]]
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    extra_loss: Callable[[], torch.Tensor] | None = None
    on_epoch_start: Callable[[int], None] | None = None
    placement: Placement | None = None
    unlabelled: torch.Tensor | None = None
    step_loss: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None
    val_score: Callable[[], tuple[float, float]] | None = None
    #: a validation score at which early stopping stops telling epochs apart: an epoch that ties the best score
    #: there is no improvement, whatever its loss (a saturated score, e.g. accuracy 1.0, carries no more
    #: information, and the loss alone would keep improving every epoch); None: ties are broken by the loss
    saturates_at: float | None = None
    #: ``augment(x_batch, generator) -> x_batch``: applied to every training batch (never to validation
    #: inputs), drawing from the loop's generator, whose state the checkpoints keep (a resume draws the same)
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None


@dataclass
class PhaseResult:
    name: str
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_acc: float = float("nan")
    seconds: float = 0.0
    epochs_run: int = 0
    placement: dict[str, object] = field(default_factory=dict)
    #: attempts rolled back before this one (:mod:`transferkit.engine.divergence`): phase, error, lr, retry_lr
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    #: one-line warnings about how the phase trained (e.g. the learning rate it recovered at)
    warnings: list[str] = field(default_factory=list)


__all__ = ["DivergenceError", "Phase", "PhaseResult"]
