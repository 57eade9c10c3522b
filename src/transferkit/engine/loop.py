"""The one training loop. Strategies describe a :class:`Phase`; :func:`fit` runs it."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.engine import distributed
from transferkit.engine.checkpoint import load_checkpoint, save_checkpoint
from transferkit.engine.config import TrainConfig, capped_epochs
from transferkit.engine.global_batch import global_batch
from transferkit.engine.precision import (
    Placement,
    flush_denormals,
    predict_logits,
    predict_sharded,
    resolve_placement,
    set_memory_format,
)
from transferkit.engine.progress import EpochProgress, Stopwatch
from transferkit.engine.runlog import MetricsLog
from transferkit.errors import ConfigError, TransferkitError

log = logging.getLogger("transferkit")


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


def _freeze_bn_stats(module: nn.Module, every: bool = False) -> None:
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
    return _scores(predict_logits(module, x, place), y)


def _scores(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits, y.cpu()).item()
    acc = (logits.argmax(1) == y.cpu()).float().mean().item()
    return acc, loss


def _save(path: Path, module: nn.Module, opt: torch.optim.Optimizer, best: dict[str, torch.Tensor] | None,
          gen: torch.Generator, loop: dict[str, Any]) -> None:
    """Rank 0 writes the checkpoint; every rank waits for it (so a resume finds a whole one)."""
    if distributed.is_main():
        save_checkpoint(path, module, opt, best, gen, loop)
    distributed.barrier()


def _distributed_step(phase: Phase, module: nn.Module, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
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


def fit(phase: Phase, cfg: TrainConfig, checkpoint: Path | None = None) -> PhaseResult:
    """Train ``phase.module`` on ``phase.train``; early-stop on ``phase.val``; restore the best weights.

    With ``checkpoint`` set, the state is saved after every epoch and a phase that finds a valid
    checkpoint there resumes from it.

    Under torchrun (``W`` processes) ``batch_size`` stays the global batch: every rank shuffles
    with the same seed and takes its slice of each global batch (:func:`_distributed_step`), so
    the run follows the one-process one. Validation is sharded and gathered, so early stopping
    decides identically on every rank; only rank 0 writes checkpoints.
    """
    place = phase.placement or resolve_placement(phase.module, cfg.precision, cfg.channels_last, cfg.device)
    with flush_denormals(place):
        return _fit(phase, cfg, checkpoint, place)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps :func:`fit` takes per epoch over ``n`` examples at ``batch_size`` (capped at ``n``):
    ``ceil(n / bs)``, except that a last batch of one example is folded into the one before (never a
    batch of one: BatchNorm cannot normalise it)."""
    bs = min(batch_size, n)
    return n // bs if n % bs == 1 else math.ceil(n / bs)


def epochs_for_steps(steps: int, n: int, batch_size: int) -> int:
    """The fewest epochs (at least one) over ``n`` examples that give at least ``steps`` optimizer steps."""
    return max(1, math.ceil(steps / steps_per_epoch(n, batch_size)))


@dataclass
class _Fit:
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


def _setup(phase: Phase, cfg: TrainConfig, checkpoint: Path | None, place: Placement) -> _Fit:
    """Move the module and data to the device, build the optimizer, seed, and resume from ``checkpoint``."""
    module = phase.module.to(place.device)
    if place.channels_last:
        set_memory_format(module, torch.channels_last)
    epochs = capped_epochs(phase.epochs or cfg.epochs)
    x, y = place.to_input(phase.train[0]), phase.train[1].to(place.device)
    xt = None if phase.unlabelled is None else place.to_input(phase.unlabelled)
    n, bs = len(x), min(phase.batch_size or cfg.batch_size, len(x))
    steps = steps_per_epoch(n, bs)
    world = distributed.world_size()
    if world > 1:
        smallest = min(bs, n - (steps - 1) * bs)
        if smallest < world:
            raise ConfigError(f"phase '{phase.name}': a batch of {smallest} samples cannot be split over {world} "
                              f"processes; use a batch_size and data of at least {world} samples per batch")
        distributed.broadcast_module_(module)
    opt = make_optimizer(phase.param_groups, cfg, phase.lr or cfg.lr)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    loop = {"epoch": 0, "step": 0, "best_acc": -1.0, "best_loss": math.inf, "bad": 0, "best_epoch": -1, "history": [],
            "seconds": 0.0}
    st = _Fit(phase, cfg, place, (x, y, xt), bs, steps, epochs, opt, gen, loop, world=world,
              validated=phase.val is not None or phase.val_score is not None)
    resume = checkpoint is not None and checkpoint.with_suffix(".json").exists()
    if checkpoint is not None and distributed.broadcast_object(resume):  # rank 0's view decides
        st.loop, st.best = load_checkpoint(checkpoint, module, opt, gen)
        log.info("phase '%s': resuming from %s after epoch %d", phase.name, checkpoint.name, st.loop["epoch"])
    return st


def _local_step(st: _Fit, idx: torch.Tensor, clip_params: list[torch.nn.Parameter], epoch: int,
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


def _train_epoch(st: _Fit, epoch: int, bar: EpochProgress) -> tuple[torch.Tensor, float]:
    """One epoch of optimizer steps; returns the summed loss and the last learning-rate factor."""
    phase, module, place, loop = st.phase, st.phase.module, st.place, st.loop
    if phase.on_epoch_start is not None:
        phase.on_epoch_start(epoch)
    module.train()
    _freeze_bn_stats(module, every=st.cfg.batchnorm == "frozen")
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
            run_loss += _distributed_step(phase, module, st.data, idx, st.gen, place, st.opt, clip_params, st.cfg,
                                          epoch, i)
        else:
            run_loss += _local_step(st, idx, clip_params, epoch, i)
        loop["step"] += 1
        bar.step()
    if st.world > 1:  # buffers of layers that global_batch does not cover (custom norms) follow rank 0
        distributed.broadcast_module_(module, parameters=False)
    return run_loss, f


def _validate(st: _Fit, epoch: int, rec: dict[str, float]) -> None:
    """Score the epoch on validation (labelled, or the phase's ``val_score``); keep the best weights."""
    phase, module, loop = st.phase, st.phase.module, st.loop
    if phase.val_score is not None:
        acc, vloss = phase.val_score()
    elif st.world > 1:  # each rank scores its share; all ranks get every logit
        acc, vloss = _scores(predict_sharded(module, phase.val[0], st.place), phase.val[1])  # type: ignore[index]
    else:
        acc, vloss = evaluate_arrays(module, phase.val[0], phase.val[1], st.place)  # type: ignore[index]
    rec.update(val_acc=acc, val_loss=vloss)
    if phase.val_score is not None:
        rec["val_score"] = acc  # the progress line shows it as a score, not a percentage
    if acc > loop["best_acc"] or (acc == loop["best_acc"] and vloss < loop["best_loss"]):
        loop.update(best_acc=acc, best_loss=vloss, bad=0, best_epoch=epoch)
        st.best = {k: v.detach().clone() for k, v in module.state_dict().items()}
    else:
        loop["bad"] += 1


def _fit(phase: Phase, cfg: TrainConfig, checkpoint: Path | None, place: Placement) -> PhaseResult:
    st = _setup(phase, cfg, checkpoint, place)
    module, loop, lr = phase.module, st.loop, phase.lr or cfg.lr
    res = PhaseResult(phase.name, placement=place.describe())
    bar = EpochProgress(cfg.progress, phase.name, st.epochs, st.steps, loop["epoch"])
    metrics_log = MetricsLog.for_checkpoint(checkpoint)
    if metrics_log is not None:
        metrics_log.begin(loop)
    watch = Stopwatch()
    start = time.perf_counter() - loop["seconds"]
    for epoch in range(loop["epoch"], st.epochs if not loop.get("done") else 0):
        run_loss, f = _train_epoch(st, epoch, bar)
        rec: dict[str, float] = {"epoch": epoch, "train_loss": run_loss.item() / st.steps, "lr": f * lr}
        if st.validated:
            _validate(st, epoch, rec)
        loop["history"].append(rec)
        loop.setdefault("times", []).append(watch.lap())  # seconds per epoch (history.csv), kept on resume
        loop["epoch"] = epoch + 1
        loop["seconds"] = time.perf_counter() - start
        if checkpoint is not None:
            _save(checkpoint, module, st.opt, st.best, st.gen, loop)
        if metrics_log is not None:  # after the checkpoint: a resume rewrites the log from it (no duplicate rows)
            metrics_log.append(rec, loop["times"][-1])
        bar.epoch(rec, loop["times"][-1])
        if st.validated and cfg.patience and loop["bad"] >= cfg.patience:
            break
    bar.close()
    if metrics_log is not None:
        metrics_log.close()
    if checkpoint is not None and not loop.get("done"):
        loop["done"] = True  # a resumed run skips a finished (or early-stopped) phase
        _save(checkpoint, module, st.opt, st.best, st.gen, loop)
    if st.best is not None:
        module.load_state_dict(st.best)
    res.history, res.best_epoch, res.epochs_run = loop["history"], loop["best_epoch"], loop["epoch"]
    res.best_val_acc = loop["best_acc"] if st.validated else float("nan")
    res.seconds = time.perf_counter() - start
    if place.channels_last:
        set_memory_format(module, torch.contiguous_format)
    return res
