"""The run directory: resolved config, weights (safetensors), metrics, report and status.

Layout::

    run.json            status (running | complete | failed), kind, version, times, error
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
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import torch

from transferkit import __version__
from transferkit.errors import CheckpointError, ConfigError, did_you_mean
from transferkit.io import atomic_write_bytes, load_tensors, read_json, save_tensors, write_json
from transferkit.models import ModelSpec, TransferModel, build_model


def _read_or_none(path: Path) -> Any:
    try:
        return read_json(path)
    except CheckpointError:
        return None


def _writer() -> bool:
    """Whether this process writes run directories: always, except on torchrun ranks other than 0."""
    from transferkit.engine import distributed

    return distributed.is_main()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, kind: str, config: dict[str, Any], overwrite: bool = False) -> RunDir:
        """Start a run in ``path``. A complete run there is kept unless ``overwrite``.

        Under torchrun only rank 0 creates it; the other ranks wait, then get a view that writes nothing.
        """
        from transferkit.engine import distributed

        run = distributed.run_on_main(lambda: cls._create(path, kind, config, overwrite))
        return run if run is not None else cls(Path(path))

    @classmethod
    def _create(cls, path: str | Path, kind: str, config: dict[str, Any], overwrite: bool) -> RunDir:
        run = cls(Path(path))
        status = run.status()
        if status == "complete" and not overwrite:
            raise CheckpointError(f"{run.path}: already holds a complete run; pick another --out or pass --overwrite")
        if run.path.exists() and not run.path.is_dir():
            raise CheckpointError(f"{run.path}: exists and is not a directory")
        if status == "complete":
            shutil.rmtree(run.path)
        run.path.mkdir(parents=True, exist_ok=True)
        resolved = {**config, "kind": kind, "transferkit_version": __version__}
        old = run.path / "config.json"
        if old.exists() and _read_or_none(old) != json.loads(json.dumps(resolved, default=str)):
            shutil.rmtree(run.checkpoints, ignore_errors=True)  # another job: never resume from its state
        write_json(old, resolved)
        write_json(run.path / "run.json", {"status": "running", "kind": kind, "started": _now(), "pid": os.getpid(),
                                           "transferkit_version": __version__})
        return run

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def status(self) -> str | None:
        f = self.path / "run.json"
        if not f.exists():
            return None
        try:
            return str(read_json(f).get("status"))
        except CheckpointError:
            return "corrupt"

    def save_model(self, model: TransferModel, extra: dict[str, torch.Tensor] | None = None) -> None:
        if not _writer():
            return
        tensors = dict(model.state_dict())
        for k, v in (extra or {}).items():
            tensors[k] = v
        save_tensors(self.path / "model.safetensors", tensors, metadata={"format": "pt"})
        write_json(self.path / "model.json", model.spec.to_json())

    def write(self, name: str, obj: Any) -> None:
        if not _writer():
            return
        if name.endswith(".json"):
            write_json(self.path / name, obj)
        else:
            atomic_write_bytes(self.path / name, str(obj).encode())

    def complete(self) -> None:
        if not _writer():
            return
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        info = read_json(self.path / "run.json")
        write_json(self.path / "run.json", {**info, "status": "complete", "finished": _now()})

    def fail(self, error: BaseException) -> None:
        if not _writer() or not (self.path / "run.json").exists():
            return
        info = read_json(self.path / "run.json")
        write_json(self.path / "run.json", {**info, "status": "failed", "finished": _now(),
                                            "error": f"{type(error).__name__}: {error}"})


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
        raise CheckpointError(f"{run.path / 'model.safetensors'}: weights do not fit model.json ({_state_dict_error(e)})") from None
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
