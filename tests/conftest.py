"""Shared fixtures: small real data slices and one tiny source model pretrained once per session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.data import ArrayDataset, kshot, load_dataset, split
from transferkit.engine.config import MAX_EPOCHS_ENV
from transferkit.models import TransferModel
from transferkit.runs import LoadedRun

# The suite measures real training: the README check's epoch cap (scripts/readme_check.py) never applies.
os.environ.pop(MAX_EPOCHS_ENV, None)

#: The tiny source backbone: small_cnn keeps BatchNorm (running stats) and dropout in play.
SOURCE_MODEL = "small_cnn"
SOURCE_KWARGS = {"width": 16, "hidden": 64}

Tensors = tuple[torch.Tensor, torch.Tensor]


def as_tensors(ds: ArrayDataset) -> Tensors:
    return torch.from_numpy(np.ascontiguousarray(ds.x)), torch.from_numpy(ds.require_labels().astype(np.int64))


def per_class(ds: ArrayDataset, n: int, start: int = 0) -> ArrayDataset:
    """``n`` examples of every class (the ``start``-th onward, in file order)."""
    y = ds.require_labels()
    idx = np.concatenate([np.flatnonzero(y == c)[start : start + n] for c in range(ds.num_classes)])
    return ds.subset(np.sort(idx))


@pytest.fixture(scope="session")
def mnist_ds() -> ArrayDataset:
    return load_dataset("mnist5k")


@pytest.fixture(scope="session")
def digits_ds() -> ArrayDataset:
    return load_dataset("digits8")


@pytest.fixture(scope="session")
def mnist_slices(mnist_ds: ArrayDataset) -> tuple[Tensors, Tensors]:
    """Real MNIST: 30 training and 20 disjoint validation digits per class (300 / 200 images)."""
    return as_tensors(per_class(mnist_ds, 30)), as_tensors(per_class(mnist_ds, 20, start=30))


@pytest.fixture(scope="session")
def digits_fewshot(digits_ds: ArrayDataset) -> tuple[Tensors, Tensors]:
    """The target task: digits8, 10 shots per class for training, 5 per class for validation."""
    sp = split(digits_ds, seed=0)
    return as_tensors(kshot(sp.train, 10, seed=0)), as_tensors(kshot(sp.val, 5, seed=0))


@pytest.fixture(scope="session")
def source_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete pretrain run directory: a tiny small_cnn trained 2 epochs on mnist5k (~5 s)."""
    out = tmp_path_factory.mktemp("source") / "run"
    transferkit.pretrain("mnist5k", SOURCE_MODEL, out, seed=0, model_kwargs=dict(SOURCE_KWARGS), epochs=2,
                         batch_size=64, precision="fp32", progress="off")
    return out


@pytest.fixture(scope="session")
def source_loaded(source_run: Path) -> LoadedRun:
    return transferkit.load_run(source_run)


@pytest.fixture()
def source_model(source_loaded: LoadedRun) -> TransferModel:
    """A fresh copy of the pretrained source model (tests may train it)."""
    return transferkit.load_run(source_loaded.path).model


@pytest.fixture()
def first_fit_diverges(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The engine's first training attempt raises a divergence (as a NaN loss would), later ones train:
    the learning rate of every attempt is appended to the returned list."""
    from transferkit.engine import divergence
    from transferkit.engine.loop import DivergenceError

    real = divergence.fit
    calls: list[float] = []

    def first_diverges(phase, cfg, checkpoint=None):  # type: ignore[no-untyped-def]
        calls.append(phase.lr or cfg.lr)
        if len(calls) == 1:
            raise DivergenceError(f"phase '{phase.name}': loss became nan at epoch 0 step 2")
        return real(phase, cfg, checkpoint)

    monkeypatch.setattr(divergence, "fit", first_diverges)
    return calls


class KillResume:
    """A ``transferkit COMMAND --out RUN ARGS`` child process killed with SIGKILL once its checkpoints reach an
    epoch, then started again: the kill -9 resume tests (pretrain, augmented transfer, adapt) share it."""

    def __init__(self, command: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.command, self.args = command, args
        self.env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}

    def start(self, out: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "transferkit", self.command, "--out", str(out), *self.args],
                                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def run(self, out: Path, timeout: float = 600) -> None:
        """One uninterrupted run, which must succeed."""
        proc = self.start(out)
        _, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err.decode()[-2000:]

    @staticmethod
    def epoch(run: Path) -> int:
        """The highest epoch any checkpoint of ``run`` has written (0 before the first)."""
        epochs = [0]
        for f in (run / "checkpoints").rglob("*.json"):
            try:
                epochs.append(int(json.loads(f.read_text())["loop"]["epoch"]))
            except (json.JSONDecodeError, KeyError, OSError, TypeError, ValueError):
                continue
        return max(epochs)

    def kill_after(self, out: Path, epochs: int, deadline: float = 300) -> None:
        """Start a run and SIGKILL it as soon as a checkpoint of epoch ``epochs`` exists; the run folder
        must then look unfinished."""
        proc = self.start(out)
        end = time.monotonic() + deadline
        while self.epoch(out) < epochs:
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < end, f"no checkpoint of epoch {epochs} after {deadline} s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert json.loads((out / "run.json").read_text())["status"] == "running"  # never looks complete
        assert not (out / "metrics.json").exists()

    def resume(self, out: Path, timeout: float = 600) -> None:
        """Start the killed run again: it must say it resumes and succeed."""
        proc = self.start(out)
        _, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert b"resuming from" in err


@pytest.fixture()
def kill_resume() -> type[KillResume]:
    """:class:`KillResume`, for the kill -9 resume tests."""
    return KillResume
