"""Where a dataset's array lives: in RAM when it fits a memory budget, else a memory-mapped file.

An image folder larger than ``$TRANSFERKIT_DATA_MEMORY`` (bytes, ``K``/``M``/``G`` suffixes
allowed; default 4 GiB) is decoded one file at a time straight into a memory-mapped array on
disk, so loading never holds more than one decoded image plus what the OS pages in. Splits and
k-shot subsets of such an array stay on disk too. The backing files are unlinked as soon as they
are mapped: the OS frees them when the last mapping closes, even after a kill.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from transferkit.errors import ConfigError

DEFAULT_DATA_MEMORY = 4 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str, what: str) -> int:
    """``"512M"`` -> 536870912; a plain integer is bytes. Raises a one-line ConfigError."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1] if t and t[-1] in _UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise ConfigError(f"{what}={text!r} is not a size in bytes (e.g. 512M, 4G)") from None
    if value < 0:
        raise ConfigError(f"{what}={text!r} must not be negative")
    return int(value)


def data_memory_budget() -> int:
    """Bytes a loaded dataset may occupy in RAM before it goes to a memory-mapped file."""
    env = os.environ.get("TRANSFERKIT_DATA_MEMORY")
    return parse_bytes(env, "TRANSFERKIT_DATA_MEMORY") if env else DEFAULT_DATA_MEMORY


def spill_dir() -> Path:
    """Folder for memory-mapped data (``$TRANSFERKIT_CACHE/data``, else the system temp folder)."""
    root = os.environ.get("TRANSFERKIT_CACHE")
    path = Path(root) / "data" if root else Path(tempfile.gettempdir())
    path.mkdir(parents=True, exist_ok=True)
    return path


def allocate(shape: tuple[int, ...], dtype: np.dtype | type = np.float32, *, budget: int | None = None) -> np.ndarray:
    """An uninitialised array of ``shape``: in RAM within ``budget`` bytes, else memory-mapped."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes <= (data_memory_budget() if budget is None else budget):
        return np.empty(shape, dtype=dtype)
    fd, name = tempfile.mkstemp(prefix="transferkit-data-", suffix=".npy", dir=spill_dir())
    os.close(fd)
    try:
        return np.lib.format.open_memmap(name, mode="w+", dtype=dtype, shape=shape)
    finally:
        os.unlink(name)  # the mapping keeps the data; the disk space is freed with it


def is_mapped(x: np.ndarray) -> bool:
    return isinstance(x, np.memmap) or isinstance(getattr(x, "base", None), np.memmap)


def take_rows(x: np.ndarray, idx: np.ndarray, *, chunk: int = 1024) -> np.ndarray:
    """``x[idx]`` that keeps a memory-mapped ``x`` on disk (copied in chunks into a new mapping)."""
    if not is_mapped(x):
        return x[idx]
    out = allocate((len(idx), *x.shape[1:]), x.dtype)
    for i in range(0, len(idx), chunk):
        out[i : i + chunk] = x[idx[i : i + chunk]]
    return out


def all_finite(x: np.ndarray, *, chunk_bytes: int = 1 << 20) -> bool:
    """``np.isfinite(x).all()`` in chunks of about ``chunk_bytes``, so a memory-mapped array is
    never loaded (nor a full-size mask allocated) at once."""
    if x.dtype.kind not in "fc" or len(x) == 0:
        return True
    rows = max(1, chunk_bytes // max(1, x[0].nbytes))
    return all(bool(np.isfinite(x[i : i + rows]).all()) for i in range(0, len(x), rows))
