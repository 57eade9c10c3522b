"""The loop's optimizer and schedule: parameter groups -> optimizer, the learning-rate factor per step, and how
many steps an epoch takes."""

from __future__ import annotations

import math
from typing import Any

import torch

from transferkit.engine.config import TrainConfig


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the peak learning rate at optimizer ``step`` of ``total``."""
    t = step / max(1, total)
    if schedule == "constant":
        return 1.0
    if schedule == "onecycle":  # 30% cosine warm-up from 1/25, then cosine down to 1/1e4
        if t < 0.3:
            return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * t / 0.3)) / 2
        return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * (t - 0.3) / 0.7)) / 2
    warm = 0.05
    if t < warm:
        return (step + 1) / max(1, warm * total)
    return 0.5 * (1 + math.cos(math.pi * (t - warm) / (1 - warm)))


def make_optimizer(groups: list[dict[str, Any]], cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    pg = []
    for g in groups:
        params = [p for p in g["params"] if p.requires_grad or g.get("toggled", False)]
        if params:
            pg.append({"params": params, "lr": lr * g.get("lr_scale", 1.0),
                       "weight_decay": g.get("weight_decay", cfg.weight_decay), "peak_lr": lr * g.get("lr_scale", 1.0)})
    if not pg:
        raise ValueError("phase has no trainable parameters")
    # the fused kernels update every tensor of a group in one pass instead of a chain of for-each ops
    fused = True if _fusable(pg) else None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(pg, lr=lr, momentum=0.9, nesterov=True, fused=fused)
    return torch.optim.AdamW(pg, lr=lr, fused=fused)


def _fusable(groups: list[dict[str, Any]]) -> bool:
    """Fused optimiser kernels exist for floating-point parameters on the CPU and CUDA, all on one device."""
    params = [p for g in groups for p in g["params"]]
    return (all(p.is_floating_point() for p in params) and len({p.device for p in params}) == 1
            and params[0].device.type in ("cpu", "cuda"))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps :func:`fit` takes per epoch over ``n`` examples at ``batch_size`` (capped at ``n``):
    ``ceil(n / bs)``, except that a last batch of one example is folded into the one before (never a
    batch of one: BatchNorm cannot normalise it)."""
    bs = min(batch_size, n)
    return n // bs if n % bs == 1 else math.ceil(n / bs)


def epochs_for_steps(steps: int, n: int, batch_size: int) -> int:
    """The fewest epochs (at least one) over ``n`` examples that give at least ``steps`` optimizer steps."""
    return max(1, math.ceil(steps / steps_per_epoch(n, batch_size)))


__all__ = ["epochs_for_steps", "lr_factor", "make_optimizer", "steps_per_epoch"]
