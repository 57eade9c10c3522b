"""Atomic file writes (temp file + fsync + rename) and safe weight loading (safetensors only)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from transferkit.errors import CheckpointError, ConfigError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644 & ~_umask())  # mkstemp creates 0600; results are for reading
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_file(path: str | Path, overwrite: bool, ours: Callable[[bytes], bool], what: str,
                      flag: str = "--out") -> None:
    """Refuse to replace an existing file at ``path`` that ``what`` did not write, unless ``overwrite``.

    ``ours`` tells from the file's first 64 KiB whether ``what`` wrote it (rewriting one's own
    output is fine). Call it before the work, so a refusal costs nothing; write with
    :func:`atomic_write_bytes`.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder; {flag} names the file to write")
    if overwrite or not p.exists():
        return
    try:
        with p.open("rb") as f:
            head = f.read(65536)
    except OSError as e:
        raise ConfigError(f"{p}: exists and cannot be read ({e.strerror}); pick another {flag}") from None
    if not ours(head):
        raise ConfigError(f"{p}: exists and was not written by {what}; pass --overwrite to replace it, "
                          f"or pick another {flag}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save a flat name -> tensor dict as safetensors, atomically."""
    from safetensors.torch import save

    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, save(flat, metadata=metadata))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing, truncated or corrupt file raises :class:`CheckpointError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: weights file not found") from None
    try:  # parsing never runs code; a valid file may start with 0x80 or "PK" (its header length's low bytes)
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        if data[:1] == b"\x80" or data[:2] == b"PK":  # a pickle, or torch.save's zip of pickles
            raise CheckpointError(f"{path}: refused: this is a pickle / torch.save file, which can run code when "
                                  "loaded; transferkit reads weights only from safetensors (convert it with "
                                  "safetensors.torch.save_file)") from None
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({str(e).splitlines()[0]})") from None


def _jsonable(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
