"""What a simulated federation leaves behind: only what a user needs on stderr, nothing in the temp folder.

Flower logs its strategy banner and every step at INFO on its own handler (``flwr`` logger), and
Ray starts a local cluster whose session folder (``$TMPDIR/ray/session_<date>_<pid>``, logs,
sockets, spilled objects) outlives it. :func:`quiet_simulation` holds Flower to errors (all of its
log with ``transferkit --debug``), silences Ray's start-up ``FutureWarning`` and, afterwards,
removes the Ray session folders *this process* created during the block (any other session, of
another process or from before, stays), plus the ``session_latest`` link and the ``ray`` folder
when they are left pointing at nothing / empty. A failed client is reported once, in one line, by
the ServerApp's tracker (Flower's traceback of it is dropped); an error of the ServerApp itself
propagates from ``run_simulation`` as usual.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

#: Messages of Ray's start-up that are about Ray's future defaults, not about this run.
RAY_NOISE = r".*RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"

#: Flower modules whose errors are a client's failed reply, with the whole traceback: the
#: ServerApp's tracker already reports each failed reply in one line (``round R train: node N ... failed``).
CLIENT_FAILURE_MODULES = frozenset({"vce_api", "raybackend"})


class DropClientTracebacks(logging.Filter):
    """Drops Flower's logs of a failed client message (reported once, by the tracker)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.module not in CLIENT_FAILURE_MODULES


def ray_temp_root() -> Path:
    """Where Ray puts its session folders: ``$RAY_TMPDIR/ray``, else ``$TMPDIR/ray`` (Linux), else ``/tmp/ray``."""
    if "RAY_TMPDIR" in os.environ:
        base = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        base = os.environ["TMPDIR"]
    else:
        base = "/tmp"
    return Path(base) / "ray"


def own_sessions(root: Path, pid: int | None = None) -> set[Path]:
    """Ray session folders under ``root`` started by process ``pid`` (default: this one)."""
    suffix = f"_{os.getpid() if pid is None else pid}"
    if not root.is_dir():
        return set()
    return {p for p in root.glob("session_*") if p.is_dir() and not p.is_symlink() and p.name.endswith(suffix)}


def remove_new_sessions(root: Path, before: set[Path], root_existed: bool) -> list[Path]:
    """Remove this process's sessions that are not in ``before``; tidy ``session_latest`` and ``root``."""
    removed = sorted(own_sessions(root) - before)
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    latest = root / "session_latest"
    if latest.is_symlink() and not latest.exists():
        latest.unlink(missing_ok=True)
    if not root_existed and root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    return removed


def verbose() -> bool:
    """Whether Flower and Ray may speak: the ``transferkit`` logger is at DEBUG (``transferkit --debug``)."""
    return logging.getLogger("transferkit").isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def quiet_simulation() -> Iterator[None]:
    """Flower's logger at ERROR (unless :func:`verbose`) and Ray's start-up warning off during the
    block; the Ray session folders this process created during it are removed at its end, whatever
    happens."""
    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    root = ray_temp_root()
    root_existed = root.exists()
    before = own_sessions(root)
    drop = DropClientTracebacks()
    if not verbose():
        flwr_log.setLevel(logging.ERROR)
        flwr_log.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=RAY_NOISE, category=FutureWarning)
            yield
    finally:
        flwr_log.setLevel(level)
        flwr_log.removeFilter(drop)
        remove_new_sessions(root, before, root_existed)
