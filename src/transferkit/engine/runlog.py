"""The metrics log of a run folder: ``history.csv`` (one row per epoch per phase) and, when the
``tensorboard`` package is importable, TensorBoard event files under ``tensorboard/<phase>/``.

Rows are appended as training goes (each after its epoch's checkpoint), so a killed run keeps what
it logged. The checkpoints stay the source of truth: when a phase starts (fresh or resumed) the CSV
is rewritten, atomically, from the run's checkpoints (every phase's epoch records, which a resume
restores) and the records of rolled-back attempts (``<checkpoint>.rollbacks.json``, written by
:mod:`transferkit.engine.divergence`). A row lost to a ``kill -9`` between a checkpoint and its
append comes back, a row of an epoch that is run again is not doubled, and the rows of a job whose
checkpoints were discarded go: the rows of the attempt that finished (``rolled_back`` 0) equal
``history.json``'s records, and rolled-back attempts keep theirs with ``rolled_back`` 1. A phase's
TensorBoard folder is likewise rewritten when the phase starts: the events written before are
hidden (``purge_step``) and its checkpointed epochs logged again, so each epoch shows once (the
rolled-back attempts are in the CSV only).

Each file is listed in the run's manifest (``run.json`` ``files``) just before it is first written.
A phase is logged when its checkpoint lies in the ``checkpoints/`` folder of a run folder (one
holding ``run.json``: the layout of :mod:`transferkit.runs`); ``phase_id`` is the checkpoint's
path inside that folder (``1-finetune``), unique within the run.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
from pathlib import Path
from typing import Any

from transferkit.engine import distributed
from transferkit.io import atomic_write_bytes

FILE = "history.csv"
TENSORBOARD = "tensorboard"
COLUMNS = ("phase_id", "phase", "epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds", "rolled_back",
           "event")
#: history-record key -> CSV column
_FIELDS = {"epoch": "epoch", "train_loss": "train_loss", "val_loss": "val_loss", "val_acc": "val_accuracy", "lr": "lr"}
ROLLBACKS = ".rollbacks.json"


def locate(checkpoint: Path) -> tuple[Path, Path, str] | None:
    """(run folder, its checkpoints folder, phase id) of a checkpoint path inside a run folder, else None."""
    for parent in checkpoint.parents:
        if parent.name == "checkpoints" and (parent.parent / "run.json").is_file():
            return parent.parent, parent, checkpoint.relative_to(parent).as_posix()
    return None


def rollbacks_file(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ROLLBACKS)


def read_rollbacks(checkpoint: Path) -> list[dict[str, Any]]:
    """The rolled-back attempts recorded for ``checkpoint`` (oldest first; empty when none)."""
    f = rollbacks_file(checkpoint)
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def row(phase_id: str, rec: dict[str, Any], seconds: float | None, rolled_back: bool = False,
        event: str = "") -> dict[str, Any]:
    """One CSV row from a loop history record (``{"epoch", "train_loss", "lr", "val_acc", "val_loss"}``)."""
    out: dict[str, Any] = dict.fromkeys(COLUMNS, "")
    out.update(phase_id=phase_id, phase=phase_id.rsplit("/", 1)[-1].partition("-")[2] or phase_id,
               rolled_back=int(rolled_back), event=event)
    for key, col in _FIELDS.items():
        if key in rec and rec[key] is not None:
            out[col] = int(rec[key]) if key == "epoch" else float(rec[key])
    if seconds is not None:
        out["seconds"] = round(float(seconds), 4)
    return out


def loop_rows(phase_id: str, loop: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a phase's loop counters (as checkpointed): one per finished epoch."""
    times = loop.get("times") or []
    return [row(phase_id, rec, times[i] if i < len(times) else None) for i, rec in enumerate(loop.get("history", []))]


def _natural(phase_id: str) -> list[tuple[int, str]]:
    """Sort key: ``0-probe`` < ``1-finetune`` < ``10-x``, per path part."""
    key = []
    for part in phase_id.split("/"):
        head, _, tail = part.partition("-")
        key.append((int(head), tail) if head.isdigit() else (-1, part))
    return key


class MetricsLog:
    """The log of one phase of a run: :meth:`begin`, then :meth:`append` per epoch, then :meth:`close`."""

    def __init__(self, folder: Path, checkpoints: Path, phase_id: str) -> None:
        self.folder, self.checkpoints, self.phase_id = folder, checkpoints, phase_id
        self.path = folder / FILE
        self.writer: Any = None

    @classmethod
    def for_checkpoint(cls, checkpoint: Path | None) -> MetricsLog | None:
        """The log of the phase checkpointed at ``checkpoint`` (None: not in a run folder, or not rank 0)."""
        if checkpoint is None or not distributed.is_main():
            return None
        found = locate(checkpoint)
        return None if found is None else cls(*found)

    def begin(self, loop: dict[str, Any]) -> None:
        """Rewrite the CSV from the checkpoints (this phase: ``loop``) and open its TensorBoard writer."""
        self.rewrite(loop)
        if tensorboard_available():
            self.adopt(TENSORBOARD)
        self.writer = tensorboard_writer(self.folder / TENSORBOARD / self.phase_id)
        if self.writer is not None and loop.get("history"):  # the checkpointed epochs, again: each once
            for r in loop_rows(self.phase_id, loop):
                self._scalars(r)
            self.writer.flush()

    def rewrite(self, loop: dict[str, Any]) -> None:
        """Write the CSV (atomically) from the run's checkpoints and rolled-back attempts; this phase's
        epochs from ``loop`` (its counters in memory)."""
        ids = {self.phase_id}
        for f in self.checkpoints.rglob("*.json") if self.checkpoints.is_dir() else []:
            rel = f.relative_to(self.checkpoints).as_posix()
            ids.add(rel[: -len(ROLLBACKS)] if rel.endswith(ROLLBACKS) else rel[: -len(".json")])
        rows: list[dict[str, Any]] = []
        for pid in sorted(ids, key=_natural):
            for attempt in read_rollbacks(self.checkpoints / pid):
                rows += [{**r, "rolled_back": 1} for r in attempt.get("rows", [])]
            rows += loop_rows(pid, loop if pid == self.phase_id else checkpoint_loop(self.checkpoints / pid))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        self.adopt(FILE)
        atomic_write_bytes(self.path, buf.getvalue().encode())

    def adopt(self, name: str) -> None:
        """List ``name`` in the run's manifest (``run.json`` ``files``) before writing it: ``--overwrite``
        then removes it, and only what the run wrote is listed."""
        from transferkit.runs import RunDir  # runs builds models, whose training loop logs here

        RunDir(self.folder).adopt(name)

    def append(self, rec: dict[str, Any], seconds: float) -> None:
        """Log a finished epoch: one CSV row (appended) and its TensorBoard scalars."""
        r = row(self.phase_id, rec, seconds)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n").writerow(r)
        if self.writer is not None:
            self._scalars(r)
            self.writer.flush()  # a killed run keeps its events too

    def _scalars(self, r: dict[str, Any]) -> None:
        for col in ("train_loss", "val_loss", "val_accuracy", "lr", "seconds"):
            if r[col] != "" and math.isfinite(r[col]):
                self.writer.add_scalar(col, r[col], int(r["epoch"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def checkpoint_loop(checkpoint: Path) -> dict[str, Any]:
    """The loop counters saved in ``checkpoint``'s JSON (empty when there is none)."""
    try:
        loop = json.loads(checkpoint.with_suffix(".json").read_text()).get("loop", {})
    except (OSError, ValueError):
        return {}
    return loop if isinstance(loop, dict) else {}


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def tensorboard_writer(folder: Path) -> Any:
    """A ``SummaryWriter`` on ``folder`` that hides the events written there before (``purge_step=0``:
    a resumed phase logs its checkpointed epochs again, a restarted one starts over); None when the
    ``tensorboard`` package is not installed."""
    if not tensorboard_available():
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder), purge_step=0)


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a ``history.csv`` as strings (for tests and tools)."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
