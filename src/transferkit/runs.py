"""The run directory: resolved config, weights (safetensors), metrics, report and status.

Layout::

    run.json            status (running | complete | failed), kind, version, times, error, and
                        ``files``: what the run wrote (all that ``--overwrite`` removes)
    .transferkit.lock   held (flock) by the command writing the run; see :mod:`transferkit.locks`
    config.json         the resolved configuration, library version and seed
    model.json          the architecture (rebuilds the model) and class names
    model.safetensors   the weights (plus ``source_head.*`` for transferred models)
    metrics.json        evaluation results
    history.json        per-epoch training records of every phase
    report.md           a human-readable summary
    adapter.safetensors parameter-efficient runs (lora, bitfit) only: the trained part alone, with
    adapter.json        its config; ``transferkit.strategies.peft.load_adapter`` applies it to the source
    checkpoints/        per-phase training state while running (removed when complete)

Every file is written atomically; ``run.json`` says ``complete`` only after everything else.
A run is created only in a missing or empty folder or a transferkit run: a folder of anything
else is never written into; a user's files beside a run's (a NOTES.txt) are never removed (those
checks and the manifest: :mod:`transferkit.run_folder`, whose public names this module re-exports).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from transferkit import __version__, locks
from transferkit.engine.config import train_cap_record
from transferkit.errors import CheckpointError, ConfigError, did_you_mean
from transferkit.io import atomic_write_bytes, load_tensors, read_json, save_tensors, write_json
from transferkit.models import ModelSpec, TransferModel, build_model
from transferkit.run_folder import (
    BASE_FILES,
    CHECKPOINTS,
    LEGACY_FILES,
    STATUSES,
    check_out,
    complete_error,
    foreign_entries,
    is_writer,
    read_or_none,
    refuse_foreign,
    refuse_user_checkpoints,
    remove_written,
    run_info,
    written_by,
)

__all__ = [
    "BASE_FILES",
    "CHECKPOINTS",
    "LEGACY_FILES",
    "STATUSES",
    "LoadedRun",
    "RunDir",
    "check_out",
    "foreign_entries",
    "load_run",
    "load_source",
    "marks_failure",
    "refuse_foreign",
    "refuse_user_checkpoints",
    "run_info",
]

def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunDir:
    """A run folder. ``run.json`` lists the files the run wrote (``files``): all ``--overwrite`` removes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, kind: str, config: dict[str, Any], overwrite: bool = False) -> RunDir:
        """Start a run in ``path``, locked for this process until it completes or fails.

        ``path`` must be missing, empty or a transferkit run: any other folder is never written
        into. A complete run there is kept unless ``overwrite``, which removes only what that run
        wrote; an incomplete one resumes. Under torchrun only rank 0 creates and locks it; the other
        ranks wait, then get a view that writes nothing.
        """
        from transferkit.engine import distributed

        run = distributed.run_on_main(lambda: cls._create(path, kind, config, overwrite))
        return run if run is not None else cls(Path(path))

    @classmethod
    def _create(cls, path: str | Path, kind: str, config: dict[str, Any], overwrite: bool) -> RunDir:
        run = cls(Path(path))
        refuse_foreign(run.path)  # before creating anything in it
        run.path.mkdir(parents=True, exist_ok=True)
        locked = locks.acquire(run.path)
        try:
            refuse_foreign(run.path)  # again, now that no other transferkit command can write here
            run._start(kind, config, overwrite)
        except BaseException:
            if locked:
                locks.release(run.path)
            raise
        return run

    def _start(self, kind: str, config: dict[str, Any], overwrite: bool) -> None:
        info = run_info(self.path) or {}
        files = set(written_by(self.path, info)) if info else set()
        if info.get("status") == "complete" and not overwrite:
            raise complete_error(self.path)
        refuse_user_checkpoints(self.path, files)  # before removing anything
        if info.get("status") == "complete":
            self._write_info({"status": "running", "kind": kind, "files": sorted({*BASE_FILES, *files})})
            remove_written(self.path, sorted(files))
            files = set()
        files.add(CHECKPOINTS)  # created by this run, or its own (an incomplete run's) to resume from
        resolved = {**config, **train_cap_record(), "kind": kind, "transferkit_version": __version__}
        old = self.path / "config.json"
        if old.exists() and read_or_none(old) != json.loads(json.dumps(resolved, default=str)):
            shutil.rmtree(self.checkpoints, ignore_errors=True)  # another job: never resume from its state
        self._write_info({"status": "running", "kind": kind, "started": _now(), "pid": os.getpid(),
                          "transferkit_version": __version__, "files": sorted({*BASE_FILES, *files})})
        write_json(old, resolved)

    def _write_info(self, info: dict[str, Any]) -> None:
        write_json(self.path / "run.json", info)

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def status(self) -> str | None:
        """``running``, ``complete`` or ``failed``; ``None`` without a run.json; ``corrupt`` or
        ``foreign`` (valid JSON that transferkit did not write) otherwise."""
        f = self.path / "run.json"
        if not f.exists():
            return None
        info = run_info(self.path)
        if info is not None:
            return str(info["status"])
        return "corrupt" if read_or_none(f) is None else "foreign"

    def adopt(self, *names: str | Path) -> None:
        """Record files or folders in the run folder as the run's own (before writing them), so
        ``--overwrite`` removes them; a user's files beside them are never listed."""
        if not is_writer():
            return
        info = read_json(self.path / "run.json")
        listed = isinstance(info.get("files"), list)
        have = list(info["files"]) if listed else [n for n in written_by(self.path, info) if (self.path / n).exists()]
        new = [n for n in (_top_name(self.path, x) for x in names) if n not in have]
        if new or not listed:  # an older run's known files that exist become its manifest
            self._write_info({**info, "files": sorted({*have, *new})})

    def save_model(self, model: TransferModel, extra: dict[str, torch.Tensor] | None = None) -> None:
        if not is_writer():
            return
        tensors = dict(model.state_dict())
        for k, v in (extra or {}).items():
            tensors[k] = v
        self.adopt("model.safetensors", "model.json")
        save_tensors(self.path / "model.safetensors", tensors, metadata={"format": "pt"})
        write_json(self.path / "model.json", model.spec.to_json())
        from transferkit.models.hf import BUNDLE, is_folder_model, write_bundle

        if is_folder_model(model):  # its config and tokenizer: the run reloads without the original folder
            self.adopt(BUNDLE)
            write_bundle(model.spec, self.path / BUNDLE)

    def write(self, name: str, obj: Any) -> None:
        if not is_writer():
            return
        self.adopt(name)
        if name.endswith(".json"):
            write_json(self.path / name, obj)
        else:
            atomic_write_bytes(self.path / name, str(obj).encode())

    def complete(self) -> None:
        if not is_writer():
            return
        shutil.rmtree(self.checkpoints, ignore_errors=True)  # the run's own (``_start`` refused a user's)
        info = read_json(self.path / "run.json")
        files = [n for n in written_by(self.path, info) if n == "run.json" or (self.path / n).exists()]
        self._write_info({**info, "status": "complete", "finished": _now(), "files": sorted(set(files))})
        locks.release(self.path)

    def fail(self, error: BaseException) -> None:
        if not is_writer() or not (self.path / "run.json").exists():
            return
        info = read_json(self.path / "run.json")
        self._write_info({**info, "status": "failed", "finished": _now(), "error": f"{type(error).__name__}: {error}"})
        locks.release(self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunDir]:
        """Hold the lock of this complete run while adding to it (``evaluate``'s metrics)."""
        locked = locks.acquire(self.path)
        try:
            if self.status() != "complete":
                raise CheckpointError(f"{self.path}: not a complete transferkit run")
            yield self
        finally:
            if locked:
                locks.release(self.path)


def _top_name(root: Path, name: str | Path) -> str:
    p = Path(name)
    if p.is_absolute():
        p = p.relative_to(root)
    return p.parts[0]


@contextlib.contextmanager
def marks_failure(run: RunDir | None) -> Iterator[None]:
    """Mark ``run`` failed (with the error) when the block raises, then re-raise; ``None`` is a no-op."""
    try:
        yield
    except BaseException as e:
        if run is not None:
            run.fail(e)
        raise


@dataclass
class LoadedRun:
    """A finished run read back: its model (weights loaded), spec, config and metrics."""

    path: Path
    model: TransferModel
    config: dict[str, Any]
    metrics: dict[str, Any]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    def source_head(self) -> torch.nn.Linear | None:
        """The source task's head saved with a transferred model (for forgetting), if any."""
        if "source_head.weight" not in self.extra:
            return None
        w, b = self.extra["source_head.weight"], self.extra["source_head.bias"]
        head = torch.nn.Linear(w.shape[1], w.shape[0])
        head.load_state_dict({"weight": w, "bias": b})
        return head


def load_run(path: str | Path, model: TransferModel | None = None) -> LoadedRun:
    """Open a complete run directory and rebuild its model with the saved weights.

    ``model`` supplies the architecture for runs of a wrapped user module (which the registry
    cannot rebuild); its weights are replaced by the saved ones.
    """
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise CheckpointError(f"{run.path}: no such run directory")
    status = run.status()
    if status != "complete":
        raise CheckpointError(f"{run.path}: not a complete run (status: {status or 'missing run.json'})")
    try:
        spec = ModelSpec.from_json(read_json(run.path / "model.json"))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{run.path / 'model.json'}: malformed ({e})") from None
    from transferkit.models.hf import use_bundle

    spec = use_bundle(spec, run.path)
    if model is None:
        try:
            model = build_model(spec, pretrained=False)  # the saved weights replace any pretrained ones
        except ConfigError as e:  # an architecture or option this installation does not know
            raise CheckpointError(f"{run.path / 'model.json'}: {e}") from None
    elif model.spec.num_classes != spec.num_classes:
        model.reset_head(spec.class_names)
    tensors = load_tensors(run.path / "model.safetensors")
    extra = {k: v for k, v in tensors.items() if k.startswith("source_head.")}
    try:
        model.load_state_dict({k: v for k, v in tensors.items() if k not in extra})
    except RuntimeError as e:
        raise CheckpointError(f"{run.path / 'model.safetensors'}: weights do not fit model.json "
                              f"({_state_dict_error(e)})") from None
    config = read_json(run.path / "config.json")
    mpath = run.path / "metrics.json"
    metrics = read_json(mpath) if mpath.exists() else {}
    return LoadedRun(run.path, model, config, metrics, extra)


def load_source(source: str | Path | LoadedRun | TransferModel,
                model_kwargs: dict[str, Any] | None = None) -> tuple[TransferModel, dict[str, Any]]:
    """A transfer source and the config of the run that made it (empty when there is none).

    ``source`` is a model, a loaded run, a run directory, a local Hugging Face checkpoint folder
    (``config.json`` + ``model.safetensors``: the ``hf`` backbone) or the name of a registered
    pretrained backbone (``efficientnet_lite0``, ``minilm``...); ``model_kwargs`` are the
    backbone's options. A path is tried first, so a run directory named like a backbone still
    loads as a run.
    """
    from transferkit.models import MODELS, from_pretrained
    from transferkit.models.hf import is_hf_folder

    if isinstance(source, TransferModel):
        return source, {}
    if isinstance(source, LoadedRun):
        return source.model, source.config
    if is_hf_folder(source):
        return from_pretrained("hf", {**(model_kwargs or {}), "path": str(source)}), {}
    if model_kwargs and (Path(source).exists() or str(source) not in MODELS):
        raise ConfigError(f"model options apply to a pretrained backbone name, not to the run {source}")
    if not Path(source).exists():
        if str(source) in MODELS:
            return from_pretrained(str(source), model_kwargs), {}
        if "/" not in str(source):
            raise CheckpointError(f"{source}: no such run directory, nor a registered backbone"
                                  f"{did_you_mean(str(source), MODELS)}")
    loaded = load_run(source)
    return loaded.model, loaded.config


def _state_dict_error(err: RuntimeError) -> str:
    """The informative line of a ``load_state_dict`` error (missing keys, size mismatch), shortened."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
    return detail if len(detail) <= 160 else detail[:157] + "..."
