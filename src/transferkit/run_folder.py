"""Which folders may hold a run, and what a run wrote there (its manifest in ``run.json``).

A run is created only in a missing or empty folder or a transferkit run; ``--overwrite`` removes
only what the run listed as its own (or, for runs older than the manifest, :data:`LEGACY_FILES`).
:mod:`transferkit.runs` builds on this (and re-exports its public names).
"""

from __future__ import annotations

import glob
import shutil
from pathlib import Path
from typing import Any

from transferkit import locks
from transferkit.errors import CheckpointError
from transferkit.io import read_json

#: Statuses a transferkit ``run.json`` holds; a ``run.json`` without one is not ours.
STATUSES = ("running", "complete", "failed")

#: What every run writes from its start (its manifest grows from this: ``checkpoints/`` while it runs, the
#: metrics log (history.csv, tensorboard/: transferkit.engine.runlog) when it first writes it, and so on).
BASE_FILES = ("run.json", "config.json")

#: The run's training state while it runs; removed (and left out of the manifest) when it completes.
CHECKPOINTS = "checkpoints"

#: What runs wrote before ``run.json`` listed its files: all ``--overwrite`` removes from such a run.
LEGACY_FILES = (*BASE_FILES, CHECKPOINTS, "model.json", "model.safetensors", "metrics.json", "history.json",
                "report.md", "adapter.safetensors", "adapter.json", "payloads.json", "federation")


def read_or_none(path: Path) -> Any:
    """The JSON in ``path``; ``None`` when it is unreadable or not JSON."""
    try:
        return read_json(path)
    except CheckpointError:
        return None


def run_info(path: Path) -> dict[str, Any] | None:
    """``path/run.json`` when transferkit wrote it (a status and a kind); ``None`` when absent or foreign."""
    f = path / "run.json"
    info = read_or_none(f) if f.is_file() else None
    if isinstance(info, dict) and info.get("status") in STATUSES and isinstance(info.get("kind"), str):
        return info
    return None


def foreign_entries(path: Path) -> list[str]:
    """What keeps ``path`` from being a run folder: nothing for a run, an empty or a missing folder."""
    if not path.is_dir() or run_info(path) is not None:
        return []
    return sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir() if not _starting(p.name))


def _starting(name: str) -> bool:
    """The lock file, or ``run.json`` half-written: what a run being created holds before its ``run.json``."""
    return name == locks.LOCK_NAME or (name.startswith(".run.json.") and name.endswith(".tmp"))


def refuse_foreign(path: Path) -> None:
    """Raise unless ``path`` may hold a run: missing, empty, or a transferkit run (whatever else it holds)."""
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path}: exists and is not a directory")
    found = foreign_entries(path)
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise CheckpointError(f"{path}: exists and is not a transferkit run (holds {shown}); pick another --out")


def check_out(path: str | Path, overwrite: bool = False) -> None:
    """The early look at an ``--out`` (before any data loads), raising :class:`CheckpointError` for a
    folder that is not a run, one a live command writes, a complete run without ``overwrite``, or a
    ``checkpoints/`` the run did not write. :meth:`RunDir.create` checks again (another command may
    start in between)."""
    p = Path(path)
    refuse_foreign(p)
    info = run_info(p)
    if info is None:
        return
    if is_writer():  # torchrun: rank 0 alone looks at the lock (it creates the run)
        locks.refuse_held(p)
    if info["status"] == "complete" and not overwrite:
        raise complete_error(p)
    refuse_user_checkpoints(p, written_by(p, info))


def complete_error(path: Path) -> CheckpointError:
    """The error for a complete run in ``path`` without ``--overwrite``."""
    return CheckpointError(f"{path}: already holds a complete run; pick another --out or pass --overwrite")


def refuse_user_checkpoints(path: Path, files: list[str] | set[str]) -> None:
    """Raise when ``path/checkpoints`` exists but the run there did not write it (a user's folder): a run
    keeps its training state in it and removes it when complete."""
    if (path / CHECKPOINTS).exists() and CHECKPOINTS not in files:
        raise CheckpointError(f"{path / CHECKPOINTS}: not written by this run, and a run keeps its training "
                              f"state there and removes it when complete; move it out of {path} or pick another --out")


def written_by(path: Path, info: dict[str, Any]) -> list[str]:
    """The top-level names the run in ``path`` wrote: its manifest, or the known names of an older run.
    A complete run's ``checkpoints/`` is never its own (completing removed it)."""
    if isinstance(info.get("files"), list):
        names = [str(n) for n in info["files"]]
    else:
        metrics = read_or_none(path / "metrics.json")
        artifacts = metrics.get("artifacts", []) if isinstance(metrics, dict) else []
        names = [*LEGACY_FILES, *(str(a) for a in artifacts if isinstance(a, str))]
    return [n for n in names if n != CHECKPOINTS or info.get("status") != "complete"]


def remove_written(path: Path, names: list[str]) -> None:
    """Remove the run's own ``names`` (and temporary files left while writing them) from ``path``."""
    for name in names:
        if name in ("", ".", "..", "run.json", locks.LOCK_NAME) or Path(name).name != name:
            continue  # only plain top-level names; run.json is rewritten, the lock file is kept
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        for tmp in path.glob(f".{glob.escape(name)}.*.tmp"):
            tmp.unlink(missing_ok=True)


def is_writer() -> bool:
    """Whether this process writes run directories: always, except on torchrun ranks other than 0."""
    from transferkit.engine import distributed

    return distributed.is_main()
