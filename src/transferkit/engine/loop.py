"""The one training loop. Strategies describe a :class:`Phase`; :func:`fit` runs it.

The loop is split by concern: :mod:`~transferkit.engine.phase` (what runs and what it returns),
:mod:`~transferkit.engine.optim` (optimizer, learning-rate schedule, steps per epoch) and
:mod:`~transferkit.engine.epoch` (the steps and the validation of one epoch); this module sets a phase up,
resumes it from its checkpoint and runs its epochs. Their public names are importable from here too.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.engine import distributed
from transferkit.engine.checkpoint import load_checkpoint, save_checkpoint
from transferkit.engine.config import TrainConfig, capped_epochs
from transferkit.engine.epoch import FitState, evaluate_arrays, train_epoch, validate
from transferkit.engine.optim import epochs_for_steps, lr_factor, make_optimizer, steps_per_epoch
from transferkit.engine.phase import DivergenceError, Phase, PhaseResult
from transferkit.engine.precision import Placement, flush_denormals, resolve_placement, set_memory_format
from transferkit.engine.progress import EpochProgress, Stopwatch
from transferkit.engine.runlog import MetricsLog
from transferkit.errors import ConfigError

log = logging.getLogger("transferkit")


def _save(path: Path, module: nn.Module, opt: torch.optim.Optimizer, best: dict[str, torch.Tensor] | None,
          gen: torch.Generator, loop: dict[str, Any]) -> None:
    """Rank 0 writes the checkpoint; every rank waits for it (so a resume finds a whole one)."""
    if distributed.is_main():
        save_checkpoint(path, module, opt, best, gen, loop)
    distributed.barrier()


def fit(phase: Phase, cfg: TrainConfig, checkpoint: Path | None = None) -> PhaseResult:
    """Train ``phase.module`` on ``phase.train``; early-stop on ``phase.val``; restore the best weights.

    With ``checkpoint`` set, the state is saved after every epoch and a phase that finds a valid
    checkpoint there resumes from it.

    Under torchrun (``W`` processes) ``batch_size`` stays the global batch: every rank shuffles
    with the same seed and takes its slice of each global batch (:func:`~transferkit.engine.epoch.distributed_step`), so
    the run follows the one-process one. Validation is sharded and gathered, so early stopping
    decides identically on every rank; only rank 0 writes checkpoints.
    """
    place = phase.placement or resolve_placement(phase.module, cfg.precision, cfg.channels_last, cfg.device)
    with flush_denormals(place):
        return _fit(phase, cfg, checkpoint, place)


def _setup(phase: Phase, cfg: TrainConfig, checkpoint: Path | None, place: Placement) -> FitState:
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
    st = FitState(phase, cfg, place, (x, y, xt), bs, steps, epochs, opt, gen, loop, world=world,
              validated=phase.val is not None or phase.val_score is not None)
    resume = checkpoint is not None and checkpoint.with_suffix(".json").exists()
    if checkpoint is not None and distributed.broadcast_object(resume):  # rank 0's view decides
        st.loop, st.best = load_checkpoint(checkpoint, module, opt, gen)
        log.info("phase '%s': resuming from %s after epoch %d", phase.name, checkpoint.name, st.loop["epoch"])
    return st


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
        run_loss, f = train_epoch(st, epoch, bar)
        rec: dict[str, float] = {"epoch": epoch, "train_loss": run_loss.item() / st.steps, "lr": f * lr}
        if st.validated:
            validate(st, epoch, rec)
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


__all__ = ["DivergenceError", "Phase", "PhaseResult", "epochs_for_steps", "evaluate_arrays", "fit", "lr_factor",
           "make_optimizer", "steps_per_epoch"]
