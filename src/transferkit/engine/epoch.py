"""One epoch of the training loop: the optimizer steps (one process, or a global batch sharded over ranks),
BatchNorm statistics of frozen layers, validation and the best weights. :func:`transferkit.engine.loop.fit` drives
it epoch by epoch over a :class:`FitState`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from transferkit.engine import distributed
from transferkit.engine.config import TrainConfig
from transferkit.engine.global_batch import global_batch
from transferkit.engine.optim import lr_factor
from transferkit.engine.phase import DivergenceError, Phase
from transferkit.engine.precision import Placement, predict_logits, predict_sharded
from transferkit.engine.progress import EpochProgress


@dataclass
class FitState:
    """One :func:`fit` call's state: the data on its device, the optimizer, the generator, the counters."""

    phase: Phase
    cfg: TrainConfig
    place: Placement
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
    bs: int
    steps: int
    epochs: int
    opt: torch.optim.Optimizer
    gen: torch.Generator
    loop: dict[str, Any]
    best: dict[str, torch.Tensor] | None = None
    validated: bool = False
    world: int = 1


def freeze_bn_stats(module: nn.Module, every: bool = False) -> None:
    """BatchNorm layers whose affine parameters are frozen keep their running statistics too.

    A BatchNorm without affine parameters follows the nearest enclosing module that has some.
    ``every``: all BatchNorm layers normalise with their running statistics (``batchnorm=frozen``):
    statistics of a few-sample batch from a new domain would overwrite a pretrained backbone's.
    """
    named = dict(module.named_modules())
    for name, m in named.items():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if every:
                m.eval()
                continue
            params = list(m.parameters())
            while not params and name:
                name = name.rpartition(".")[0]
                params = list(named[name].parameters())
            if params and not any(p.requires_grad for p in params):
                m.eval()


def evaluate_arrays(module: nn.Module, x: torch.Tensor, y: torch.Tensor, place: Placement) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``module`` on ``(x, y)``."""
    return accuracy_and_loss(predict_logits(module, x, place), y)


def accuracy_and_loss(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits, y.cpu()).item()
    acc = (logits.argmax(1) == y.cpu()).float().mean().item()
    return acc, loss


def distributed_step(phase: Phase, module: nn.Module, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
                      idx: torch.Tensor, gen: torch.Generator, place: Placement, opt: torch.optim.Optimizer,
                      clip_params: list[torch.nn.Parameter], cfg: TrainConfig, epoch: int, step: int) -> torch.Tensor:
    """One optimizer step of a global batch ``idx`` with this rank holding rows ``[lo, hi)`` of it.

    The local loss is this shard's share of the global objective, ``sum_i CE_i / B`` (a custom
    ``step_loss``, a mean over the shard, is weighted by ``n_local / B``; an ``extra_loss`` on the
    weights by ``1 / W``); summing the gradients over ranks then gives the one-process gradient.
    Gradients are all-reduced by hand after ``backward`` rather than through
    ``DistributedDataParallel``: strategies change which parameters train between epochs
    (gradual unfreezing) and domain-adaptation losses call sub-modules directly, which DDP's
    fixed parameter set and forward hook do not follow. BatchNorm and Dropout see the global
    batch (:mod:`transferkit.engine.global_batch`). Returns the global loss (same on all ranks).
    """
    x, y, xt = data
    world, r = distributed.world_size(), distributed.rank()
    lo, hi = distributed.shard_bounds(len(idx), world, r)
    local = idx[lo:hi]
    xb = x[local] if phase.augment is None else phase.augment(x[idx], gen)[lo:hi]  # drawn for the global batch
    xu_idx = None  # drawn for the global batch, as in one process, so ``gen`` stays in step
    if phase.step_loss is not None and xt is not None:
        xu_idx = torch.randint(len(xt), (len(idx),), generator=gen).to(place.device)
    opt.zero_grad(set_to_none=True)
    with global_batch(module, hi - lo, lo, len(idx)):
        if phase.step_loss is not None:
            xu = None if xt is None or xu_idx is None else xt[xu_idx[lo:hi]]
            with place.autocast():
                loss = phase.step_loss(module, xb, y[local], xu).float() * ((hi - lo) / len(idx))
        else:
            with place.autocast():
                out = module(xb)
            loss = nn.functional.cross_entropy(out.float(), y[local], reduction="sum") / len(idx)
        if phase.extra_loss is not None:
            loss = loss + phase.extra_loss() / world
    loss.backward()
    total = distributed.sync_gradients(clip_params, loss.detach())
    if not torch.isfinite(total):
        raise DivergenceError(f"phase '{phase.name}': loss became {total.item()} at epoch {epoch} step {step}")
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(clip_params, cfg.grad_clip)
    opt.step()
    return total


def local_step(st: FitState, idx: torch.Tensor, clip_params: list[torch.nn.Parameter], epoch: int,
                i: int) -> torch.Tensor:
    """One optimizer step of one process on batch ``idx``; returns the (detached) loss."""
    phase, module, place, cfg = st.phase, st.phase.module, st.place, st.cfg
    x, y, xt = st.data
    xb = x[idx] if phase.augment is None else phase.augment(x[idx], st.gen)
    if phase.step_loss is not None:
        xu = None if xt is None else xt[torch.randint(len(xt), (len(idx),), generator=st.gen).to(place.device)]
        with place.autocast():
            loss = phase.step_loss(module, xb, y[idx], xu).float()
    else:
        with place.autocast():
            out = module(xb)
        loss = nn.functional.cross_entropy(out.float(), y[idx])
    if phase.extra_loss is not None:
        loss = loss + phase.extra_loss()
    if not torch.isfinite(loss):
        raise DivergenceError(f"phase '{phase.name}': loss became {loss.item()} at epoch {epoch} step {i}")
    st.opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(clip_params, cfg.grad_clip)
    st.opt.step()
    return loss.detach()


def train_epoch(st: FitState, epoch: int, bar: EpochProgress) -> tuple[torch.Tensor, float]:
    """One epoch of optimizer steps; returns the summed loss and the last learning-rate factor."""
    phase, module, place, loop = st.phase, st.phase.module, st.place, st.loop
    if phase.on_epoch_start is not None:
        phase.on_epoch_start(epoch)
    module.train()
    freeze_bn_stats(module, every=st.cfg.batchnorm == "frozen")
    clip_params = [p for g in st.opt.param_groups for p in g["params"]]
    total = st.steps * st.epochs
    perm = torch.randperm(len(st.data[0]), generator=st.gen).to(place.device)
    run_loss = torch.zeros((), device=place.device)
    f = 1.0
    for i in range(st.steps):
        idx = perm[i * st.bs : (i + 1) * st.bs] if i < st.steps - 1 else perm[i * st.bs :]
        f = lr_factor(st.cfg.schedule, loop["step"], total)
        for g in st.opt.param_groups:
            g["lr"] = g["peak_lr"] * f
        if st.world > 1:
            run_loss += distributed_step(phase, module, st.data, idx, st.gen, place, st.opt, clip_params, st.cfg,
                                          epoch, i)
        else:
            run_loss += local_step(st, idx, clip_params, epoch, i)
        loop["step"] += 1
        bar.step()
    if st.world > 1:  # buffers of layers that global_batch does not cover (custom norms) follow rank 0
        distributed.broadcast_module_(module, parameters=False)
    return run_loss, f


def validate(st: FitState, epoch: int, rec: dict[str, float]) -> None:
    """Score the epoch on validation (labelled, or the phase's ``val_score``); keep the best weights."""
    phase, module, loop = st.phase, st.phase.module, st.loop
    if phase.val_score is not None:
        acc, vloss = phase.val_score()
    elif st.world > 1:  # each rank scores its share; all ranks get every logit
        acc, vloss = accuracy_and_loss(predict_sharded(module, phase.val[0], st.place), phase.val[1])  # type: ignore[index]
    else:
        acc, vloss = evaluate_arrays(module, phase.val[0], phase.val[1], st.place)  # type: ignore[index]
    rec.update(val_acc=acc, val_loss=vloss)
    if phase.val_score is not None:
        rec["val_score"] = acc  # the progress line shows it as a score, not a percentage
    saturated = phase.saturates_at is not None and acc >= phase.saturates_at
    if acc > loop["best_acc"] or (acc == loop["best_acc"] and vloss < loop["best_loss"] and not saturated):
        loop.update(best_acc=acc, best_loss=vloss, bad=0, best_epoch=epoch)
        st.best = {k: v.detach().clone() for k, v in module.state_dict().items()}
    else:
        loop["bad"] += 1


__all__ = ["FitState", "accuracy_and_loss", "distributed_step", "evaluate_arrays", "freeze_bn_stats", "local_step",
           "train_epoch", "validate"]
