"""Stages every run function shares: training tensors, phase summaries and the finished run directory
(weights, history, metrics, report). A run's training settings are resolved by
:func:`transferkit.strategies.recipes.resolve_settings`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.data import ArrayDataset
from transferkit.engine.loop import PhaseResult
from transferkit.models import TransferModel
from transferkit.report import write_report
from transferkit.runs import RunDir


@dataclass
class RunResult:
    """What :func:`~transferkit.pretrain`, :func:`~transferkit.transfer` and :func:`~transferkit.adapt` return."""

    model: TransferModel
    metrics: dict[str, Any]
    run_dir: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def labelled_tensors(ds: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of a labelled data set as the tensors training takes (``y`` int64; refuses unlabelled data)."""
    return torch.from_numpy(np.ascontiguousarray(ds.x)), torch.from_numpy(ds.require_labels().astype(np.int64))


def phase_summary(r: PhaseResult) -> dict[str, Any]:
    """One phase of training as ``metrics.json`` lists it (rollbacks and warnings only where divergence happened)."""
    return {"name": r.name, "epochs": r.epochs_run, "best_epoch": r.best_epoch, "best_val_acc": r.best_val_acc,
            "seconds": r.seconds, **r.placement,  # rollbacks / warnings only where divergence happened
            **{k: v for k, v in (("rollbacks", r.rollbacks), ("warnings", r.warnings)) if v}}


def finish_run(run: RunDir | None, model: TransferModel, metrics: dict[str, Any], history: list[dict[str, Any]],
               extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write the run's weights, ``history.json``, ``metrics.json`` and report, then mark it complete.

    Nothing happens without a run directory, or on a torchrun rank other than 0 (only rank 0 writes).
    """
    from transferkit.engine import distributed

    if run is None or not distributed.is_main():  # under torchrun only rank 0 writes
        return
    run.save_model(model, extra)
    run.write("history.json", history)
    run.write("metrics.json", metrics)
    run.adopt("report.md")
    write_report(run.path)
    run.complete()
