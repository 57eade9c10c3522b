"""Divergence: roll a phase back and retry it with a lower learning rate, and say when that failed.

:func:`fit_with_retries` runs :func:`transferkit.engine.fit`. An attempt *fails* when

* its loss turns NaN/inf (:class:`DivergenceError`), or
* it is a retry (an earlier attempt failed) and it did not learn: its best validation accuracy is
  near chance (:func:`near_chance`; chance = the share of the most frequent validation class) or
  its last training loss is above ``10 ln K`` (ten times the loss of a uniform guess over ``K``
  classes: still diverging), or
* it is the first attempt and both hold: the loss blew up (above ``10 ln K``) and, with labelled
  validation, accuracy is near chance: a learning rate too high to give NaN still wrecks the model.

A failed attempt is rolled back to the phase's starting weights and retried at ``lr_backoff`` times
its learning rate, at most ``max_retries`` times; each rollback is logged as a warning, recorded
(the returned :class:`~transferkit.engine.loop.PhaseResult`'s ``rollbacks``) and kept beside the
checkpoint (so a resumed run goes on with the retry it was in, and ``history.csv`` keeps the
rolled-back epochs). A phase that recovers carries a one-line warning in ``warnings`` (the learning
rate it trained at). When every retry fails the phase raises a one-line :class:`DivergenceError`
naming the learning rate and a lower one to try.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from transferkit.engine import distributed, runlog
from transferkit.engine.config import TrainConfig
from transferkit.engine.loop import DivergenceError, Phase, PhaseResult, fit
from transferkit.io import atomic_write_bytes

log = logging.getLogger("transferkit")

#: the loss of a uniform guess times this is "blown up"
LOSS_BLOWUP = 10.0
#: near chance: accuracy at most chance + this share of the headroom above chance
CHANCE_MARGIN = 0.1


def chance_level(labels: torch.Tensor) -> float:
    """Accuracy of always predicting the most frequent class of ``labels``."""
    counts = torch.bincount(labels.reshape(-1).long().cpu())
    return float(counts.max()) / max(1, len(labels))


def near_chance(acc: float, labels: torch.Tensor) -> tuple[bool, float]:
    """Whether accuracy ``acc`` on ``labels`` is near chance, and the chance level: at most chance plus
    the larger of 10% of the headroom above chance and two binomial standard errors of chance."""
    chance = chance_level(labels)
    se = math.sqrt(chance * (1 - chance) / max(1, len(labels)))
    return acc <= chance + max(CHANCE_MARGIN * (1 - chance), 2 * se), chance


def did_not_learn(phase: Phase, res: PhaseResult, retry: bool) -> str | None:
    """Why the finished attempt ``res`` of ``phase`` counts as failed (see the module doc), or None."""
    last = res.history[-1]["train_loss"] if res.history else 0.0
    k = max(2, int(phase.train[1].max()) + 1) if len(phase.train[1]) else 2
    blown = phase.step_loss is None and not last <= LOSS_BLOWUP * math.log(k)  # also NaN
    loss = f"training loss {last:.3g} at the last epoch (a uniform guess: {math.log(k):.3g})"
    if phase.val is None or phase.val_score is not None or len(phase.val[1]) == 0:  # no labelled validation
        return loss if blown else None
    near, chance = near_chance(res.best_val_acc, phase.val[1])
    acc = f"validation accuracy {100 * res.best_val_acc:.1f}% (chance {100 * chance:.1f}%)"
    if near and (retry or blown):
        return f"{acc}, {loss}" if blown else f"{acc} is near chance"
    if blown and retry:
        return f"{loss}, {acc}"
    return None


def fit_with_retries(phase: Phase, cfg: TrainConfig, checkpoint: Path | None = None, max_retries: int = 2,
                     lr_backoff: float = 0.1,
                     on_rollback: Callable[[dict[str, Any]], None] | None = None) -> PhaseResult:
    """:func:`~transferkit.engine.fit` with rollbacks (see the module doc); ``on_rollback`` gets each
    rollback record ``{"phase", "error", "lr", "retry_lr"}`` as it happens."""
    start = {k: v.detach().clone() for k, v in phase.module.state_dict().items()}
    base_lr = phase.lr or cfg.lr
    kept = runlog.read_rollbacks(checkpoint) if checkpoint is not None and distributed.is_main() else []
    done = distributed.broadcast_object(kept)  # rank 0's files decide, as for the checkpoint itself
    if done:  # a resumed run goes on with the retry it was in
        phase.lr = float(done[-1]["retry_lr"])
    records = [{k: v for k, v in d.items() if k != "rows"} for d in done]
    if on_rollback is not None:  # the caller's record matches an uninterrupted run's
        for rec in records:
            on_rollback(rec)
    for attempt in range(min(len(done), max_retries), max_retries + 1):
        lr = phase.lr or cfg.lr
        try:
            res = fit(phase, cfg, checkpoint)
            why = did_not_learn(phase, res, retry=attempt > 0)
            if why is None:
                res.rollbacks = records
                if records:
                    res.warnings.append(_recovered(phase, records, lr, res))
                    log.warning("%s", res.warnings[-1])
                return res
            error = f"phase '{phase.name}': {why}"
        except DivergenceError as e:
            error = str(e)
        rec = {"phase": phase.name, "error": error, "lr": lr, "retry_lr": lr * lr_backoff}
        records.append(rec)
        if on_rollback is not None:
            on_rollback(rec)
        _keep_rolled_back(checkpoint, rec)
        if attempt == max_retries:
            raise DivergenceError(_gave_up(phase, cfg, records, base_lr, max_retries, lr_backoff)) from None
        log.warning("%s; restoring the phase's starting weights and retrying with lr %g", error, rec["retry_lr"])
        phase.module.load_state_dict(start)
        phase.lr = rec["retry_lr"]
    raise AssertionError("unreachable")  # the loop returns or raises


def fit_recorded(phase: Phase, cfg: TrainConfig, checkpoint_dir: Path | None, results: list[PhaseResult],
                 info: dict[str, Any], max_retries: int = 2, lr_backoff: float = 0.1) -> PhaseResult:
    """One phase of a strategy or an adaptation method: :func:`fit_with_retries` with its checkpoint in
    ``checkpoint_dir/<index>-<name>``, the result appended to ``results``, every rollback recorded in
    ``info["divergence"]`` and a recovery's warning in ``info["warnings"]``."""
    ckpt = None if checkpoint_dir is None else checkpoint_dir / f"{len(results)}-{phase.name}"
    res = fit_with_retries(phase, cfg, ckpt, max_retries, lr_backoff,
                           on_rollback=lambda r: info.setdefault("divergence", []).append(r))
    results.append(res)
    if res.warnings:
        info.setdefault("warnings", []).extend(res.warnings)
    return res


def _recovered(phase: Phase, records: list[dict[str, Any]], lr: float, res: PhaseResult) -> str:
    tried = ", ".join(f"{r['lr']:g}" for r in records)
    if math.isnan(res.best_val_acc):
        acc = ""
    elif phase.val_score is not None:  # a label-free validator's score, not an accuracy
        acc = f" (validation score {res.best_val_acc:.4g})"
    else:
        acc = f" (validation accuracy {100 * res.best_val_acc:.1f}%)"
    return (f"phase '{phase.name}' trained at lr {lr:g}{acc} after {len(records)} rollback(s): it diverged at lr "
            f"{tried}; pass a lower --lr to start where it converges")


def _gave_up(phase: Phase, cfg: TrainConfig, records: list[dict[str, Any]], base_lr: float, retries: int,
             backoff: float) -> str:
    """The one-line error: the learning rate, what went wrong, and a lower one to try."""
    suggest = min(cfg.lr * backoff ** (retries + 1), float(TrainConfig.default('lr')))
    scale = "" if math.isclose(base_lr, cfg.lr) else f" (this phase runs at {base_lr / cfg.lr:g}x --lr)"
    first, last = records[0]["error"], records[-1]["error"]
    tail = "" if last == first else f"; the last retry: {last.partition(': ')[2] or last}"
    tried = ", ".join(f"{r['lr']:g}" for r in records[1:])
    return (f"training diverged at --lr {cfg.lr:g}{scale}: {first}; gave up after {retries} retries with lower "
            f"learning rates ({tried}){tail}; pass a lower --lr, e.g. --lr {suggest:g}")


def _keep_rolled_back(checkpoint: Path | None, rec: dict[str, Any]) -> None:
    """Record a rolled-back attempt beside ``checkpoint`` (its epochs' rows, for ``history.csv``), then
    delete the attempt's checkpoint so the retry starts afresh. Rank 0 owns the files."""
    if checkpoint is None or not distributed.is_main():
        return
    found = runlog.locate(checkpoint)
    rows: list[dict[str, Any]] = []
    if found is not None:
        loop = runlog.checkpoint_loop(checkpoint)
        rows = runlog.loop_rows(found[2], loop)
        if loop.get("done") and rows:  # finished without learning: its last epoch carries the reason
            rows[-1]["event"] = rec["error"]
        else:  # the epoch whose loss turned NaN/inf, never checkpointed
            nan = {"epoch": len(loop.get("history", [])), "train_loss": math.nan, "lr": rec["lr"]}
            rows.append(runlog.row(found[2], nan, None, event=rec["error"]))
        rows = [{**r, "rolled_back": 1} for r in rows]
    kept = [*runlog.read_rollbacks(checkpoint), {**rec, "rows": rows}]
    atomic_write_bytes(runlog.rollbacks_file(checkpoint), json.dumps(kept).encode())
    for f in (checkpoint.with_suffix(".json"), checkpoint.with_suffix(".safetensors")):
        f.unlink(missing_ok=True)
    if found is not None:  # the log shows the attempt as rolled back now, also when no retry follows
        runlog.MetricsLog(*found).rewrite({})
