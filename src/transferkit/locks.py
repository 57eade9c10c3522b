"""An exclusive, crash-safe lock on a folder: ``flock`` on a lock file inside it.

The operating system releases the lock when its holder exits, however it exits (``kill -9``
included), so a dead holder never blocks anyone and two processes that start at the same instant
cannot both hold it. The lock file stays in the folder (deleting it would let a third process
lock a fresh file while the second still holds the old one); it holds the holder's pid, for the
error message. One process may lock a folder it already holds again: that is a no-op. On a file
system without ``flock`` (some NFS, CIFS or FUSE mounts answer ``ENOLCK`` or ``EOPNOTSUPP``) the
command runs unlocked, with a one-line warning naming the folder.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

from transferkit.errors import CheckpointError

#: The lock file's name inside a locked folder.
LOCK_NAME = ".transferkit.lock"

#: Folders this process holds: resolved path -> the open lock file's descriptor.
_HELD: dict[str, int] = {}

#: What ``flock`` answers when another process holds the lock; any other error: no locking here.
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN)

log = logging.getLogger("transferkit")


def _key(folder: Path) -> str:
    return str(folder.resolve())


def holds(folder: Path) -> bool:
    """Whether this process holds ``folder``'s lock."""
    return _key(folder) in _HELD


def acquire(folder: Path) -> bool:
    """Lock ``folder`` (which exists) for this process, or raise :class:`CheckpointError` naming the holder.

    Returns ``False`` when this process held it already (so the caller should not release it).
    """
    try:
        import fcntl
    except ImportError:  # no flock on this platform (Windows): run unlocked, as before
        return False
    key = _key(folder)
    if key in _HELD:
        return False
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in _BUSY:
            os.close(fd)
            _warn_unlocked(folder, e)
            return False
        holder = _read_pid(fd)
        os.close(fd)
        raise _in_use(folder, holder) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = fd
    return True


def refuse_held(folder: Path) -> None:
    """Raise :class:`CheckpointError` when another process holds ``folder``'s lock now; creates nothing
    (a cheap early look, before any data loads; :func:`acquire` decides)."""
    try:
        import fcntl
    except ImportError:
        return
    if holds(folder):
        return
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR)
    except OSError:  # no lock file (a missing or new folder), or unreadable: acquire will tell
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in _BUSY:
            raise _in_use(folder, _read_pid(fd)) from None
    finally:
        os.close(fd)  # closing drops the probe's lock, if it got it


def _in_use(folder: Path, holder: int | None) -> CheckpointError:
    who = f"pid {holder}" if holder else "another process"
    return CheckpointError(f"{folder}: in use by a running transferkit command ({who}); wait for it to "
                           "finish or pick another --out")


def _warn_unlocked(folder: Path, err: OSError) -> None:
    log.warning(f"{folder}: this file system cannot lock it ({err.strerror or err}); running unlocked: "
                "do not start a second command on this --out until this one ends")


def release(folder: Path) -> None:
    """Release ``folder``'s lock if this process holds it."""
    fd = _HELD.pop(_key(folder), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


def _read_pid(fd: int) -> int | None:
    """The holder's pid; a holder that has just locked writes it a moment later, so wait a little for it."""
    for _ in range(5):
        try:
            text = os.pread(fd, 32, 0).decode().strip()
        except (OSError, UnicodeDecodeError):
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.02)
    return None
