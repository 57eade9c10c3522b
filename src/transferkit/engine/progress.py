"""Training progress on stderr: a per-batch bar on a terminal, one line per epoch off it.

The mode comes from :attr:`TrainConfig.progress <transferkit.engine.config.TrainConfig>`:
``bar`` (``on``), ``lines``, ``off`` or ``auto``. ``auto`` follows ``$TRANSFERKIT_PROGRESS`` when
it is set (``0``/``off`` silences every progress output, ``1``/``on``/``bar``, ``lines``), and
otherwise shows a bar when stderr is a terminal and one line per epoch when it is not (a log file,
a CI job, a pipe). Only rank 0 of a torchrun job prints.

Work that runs outside :func:`transferkit.engine.fit` (feature extraction, pseudo-labelling) reads
the setting of the training run around it, set with :func:`using`, and shows a bar in ``bar`` mode
only: one line per epoch is the off-terminal summary.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal, TypeVar

from transferkit.engine import distributed
from transferkit.engine.config import PROGRESS_ENV, progress_env

ENV = PROGRESS_ENV
T = TypeVar("T")
Mode = Literal["bar", "lines", "off"]
_SETTING: ContextVar[str] = ContextVar("transferkit_progress", default="auto")


@contextlib.contextmanager
def using(setting: str) -> Iterator[None]:
    """Within the block, :func:`mode` without an argument resolves ``setting`` (a training run's
    ``progress``), so feature extraction and pseudo-labelling follow the run's choice."""
    token = _SETTING.set(setting)
    try:
        yield
    finally:
        _SETTING.reset(token)


def following(setting: str, items: Iterator[T]) -> Iterator[T]:
    """``items`` (a strategy's phases) with :func:`using` ``setting`` in force while they are made and
    used: the feature extraction a phase does before it trains follows the run's setting too."""
    with using(setting):
        yield from items


def mode(setting: str | None = None) -> Mode:
    """What to show for ``setting`` (default: the one :func:`using` set, else ``auto``)."""
    if not distributed.is_main():
        return "off"
    chosen = setting or _SETTING.get()
    if chosen == "auto":
        chosen = progress_env() or chosen
    if chosen in ("bar", "on"):
        return "bar"
    if chosen in ("lines", "off"):
        return chosen  # type: ignore[return-value]
    return "bar" if _is_terminal() else "lines"


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 04 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@contextlib.contextmanager
def batch_bar(total: int, desc: str) -> Iterator[Any]:
    """A tqdm bar of ``total`` batches in ``bar`` mode (yields it; call ``.update(n)``), else ``None``."""
    if total <= 1 or mode() != "bar":
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


class EpochProgress:
    """The progress of one training phase: :meth:`step` after every optimizer step, :meth:`epoch`
    after every epoch, :meth:`close` at the end. ``first``: the epoch it starts at (after a resume).

    In ``lines`` mode an epoch's line is printed when ``min_interval`` seconds have passed since the
    last one, and always for the first and the last epoch: a phase of fast epochs (a linear probe on
    cached features runs 100 in seconds) prints a few lines, not a hundred.
    """

    min_interval: float = 1.0

    def __init__(self, setting: str, name: str, epochs: int, steps_per_epoch: int, first: int = 0) -> None:
        self.mode: Mode = mode(setting)
        self.name, self.epochs, self.first = name, epochs, first
        self.spent = 0.0  # seconds of the epochs run in this process
        self.pending = ""  # lines mode: the line held back by min_interval
        self.printed: float | None = None  # lines mode: when the last line was printed
        self.bar: Any = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=epochs * steps_per_epoch, initial=first * steps_per_epoch, desc=name,
                            unit="step", leave=False, file=sys.stderr, dynamic_ncols=True)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def epoch(self, rec: dict[str, float], seconds: float) -> None:
        """Report a finished epoch (``rec``: the loop's history record; ``seconds``: its duration)."""
        self.spent += seconds
        if self.bar is not None:
            post = {"epoch": f"{int(rec['epoch']) + 1}/{self.epochs}", "loss": f"{rec['train_loss']:.3g}"}
            if "val_acc" in rec:
                post["val_acc"] = f"{100 * rec['val_acc']:.1f}%"
            self.bar.set_postfix(post, refresh=False)
        elif self.mode == "lines":
            self.pending = self.line(rec, seconds)
            now = time.monotonic()
            last = int(rec["epoch"]) + 1 == self.epochs
            if self.printed is None or now - self.printed >= self.min_interval or last:
                self._flush(now)

    def _flush(self, now: float) -> None:
        if self.pending:
            print(self.pending, file=sys.stderr, flush=True)
        self.pending, self.printed = "", now

    def line(self, rec: dict[str, float], seconds: float) -> str:
        """``transferkit: finetune epoch 3/40: train loss 0.412, val acc 87.5%, lr 9.1e-04, 1.2 s, ETA 44 s``."""
        done = int(rec["epoch"]) + 1
        left = (self.epochs - done) * self.spent / max(1, done - self.first)
        parts = [f"train loss {rec['train_loss']:.4g}"]
        if "val_score" in rec:  # a label-free validator's score (adaptation), not an accuracy
            parts.append(f"val score {rec['val_score']:.4g}")
        elif "val_acc" in rec:
            parts.append(f"val acc {100 * rec['val_acc']:.1f}%")
        parts += [f"lr {rec['lr']:.2e}", f"{seconds:.1f} s", f"ETA {duration(left)}"]
        return f"transferkit: {self.name} epoch {done}/{self.epochs}: " + ", ".join(parts)

    def close(self) -> None:
        """End the phase: the bar goes; a line held back by ``min_interval`` (early stopping) is printed."""
        self._flush(time.monotonic())
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Stopwatch:
    """Seconds since the last :meth:`lap` (or since it was made)."""

    def __init__(self) -> None:
        self.t = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        out, self.t = now - self.t, now
        return out
