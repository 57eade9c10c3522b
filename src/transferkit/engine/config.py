"""The training configuration: a typed dataclass whose field help text the CLI reuses."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, fields
from typing import Any

from transferkit.errors import ConfigError

CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adamw", "sgd"),
    "schedule": ("cosine", "onecycle", "constant"),
    "precision": ("auto", "fp32", "bf16"),
    "channels_last": ("auto", "on", "off"),
    "progress": ("auto", "bar", "lines", "off", "on"),
    "batchnorm": ("train", "frozen"),
    "augment": ("auto", "on", "affine", "off"),
}


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """How one training phase runs. Strategies may scale ``lr`` and ``epochs`` per phase."""

    epochs: int = _f(40, "maximum epochs per phase (early stopping may end sooner)")
    batch_size: int = _f(64, "mini-batch size")
    lr: float = _f(1e-3, "peak learning rate of the backbone (heads and probes scale it per strategy)")
    weight_decay: float = _f(1e-4, "decoupled weight decay (AdamW) or L2 (SGD)")
    optimizer: str = _f("adamw", "adamw | sgd (momentum 0.9, Nesterov)")
    schedule: str = _f("cosine", "cosine (5%% linear warm-up) | onecycle | constant")
    patience: int = _f(10, "early stopping: epochs without validation improvement (0 = off)")
    grad_clip: float = _f(1.0, "clip the gradient norm to this value (0 = off)")
    precision: str = _f("auto", "auto | fp32 | bf16 (autocast); auto = bf16 where measured faster")
    channels_last: str = _f("auto", "auto | on | off; auto = on for convolutional models")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    seed: int = _f(0, "random seed (data sampling, initialisation, shuffling)")
    progress: str = _f("auto", "auto | bar | lines | off (on = bar): a per-batch bar with an ETA, or one line per "
                       "epoch, on stderr; auto = the bar on a terminal, lines otherwise, unless $TRANSFERKIT_PROGRESS "
                       "says (0 = off)")
    batchnorm: str = _f("train", "train | frozen: frozen keeps every BatchNorm on its running statistics while "
                        "training (affine parameters still learn); for pretrained backbones on small batches")
    augment: str = _f("auto", "auto | on | affine | off: light random augmentation of image training batches "
                      "(on: small affine, colour photos also crop + flip; affine: the small affine only, the measured "
                      "part; see docs/AUGMENT.md), never of cached features; auto = the backbone recipe where it "
                      "measured better, else off")

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        for name, value in positive.items():
            if not 0 < value < math.inf:  # also rejects NaN
                raise ConfigError(f"{name} must be positive, got {value}")
        for name in ("weight_decay", "patience", "grad_clip"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigError(f"{name} must be zero or positive, got {getattr(self, name)}")
        progress_env()  # a bad $TRANSFERKIT_PROGRESS fails here, before a run folder is made

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of field ``name``."""
        return next(f.default for f in fields(cls) if f.name == name)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


MAX_EPOCHS_ENV = "TRANSFERKIT_MAX_EPOCHS"


#: Whether this command already said that the cap shortens its training (one warning per command).
_CAP_WARNED = {"done": False}


def epoch_cap() -> int | None:
    """``$TRANSFERKIT_MAX_EPOCHS`` as a whole number, None when unset (a bad value is a one-line error)."""
    cap = os.environ.get(MAX_EPOCHS_ENV, "").strip()
    if not cap:
        return None
    if not cap.isdigit() or int(cap) < 1:
        raise ConfigError(f"${MAX_EPOCHS_ENV}={cap!r} is not a positive whole number")
    return int(cap)


def train_cap_record() -> dict[str, Any]:
    """``{"train_cap": {...}}`` for a run's config.json while the cap is set (so a quick-mode run never
    passes for a measured one); ``{}`` otherwise."""
    cap = epoch_cap()
    return {} if cap is None else {"train_cap": {"max_epochs": cap, "from": f"${MAX_EPOCHS_ENV}"}}


def new_command() -> None:
    """Start of a command (its training config resolved): the next cap that shortens a phase warns again."""
    _CAP_WARNED["done"] = False


def capped_epochs(epochs: int) -> int:
    """``epochs``, capped by ``$TRANSFERKIT_MAX_EPOCHS`` when set: the quick mode in which CI runs the
    README's commands as written (scripts/readme_check.py); never set for a measured run. The first
    phase it shortens in a command prints one warning line on stderr."""
    cap = epoch_cap()
    if cap is None or epochs <= cap:
        return epochs
    if not _CAP_WARNED["done"]:
        _CAP_WARNED["done"] = True
        print(f"transferkit: warning: ${MAX_EPOCHS_ENV}={cap} caps training at {cap} epoch(s) per phase (quick "
              "mode): not a measured run (config.json records train_cap)", file=sys.stderr)
    return cap


PROGRESS_ENV = "TRANSFERKIT_PROGRESS"
_PROGRESS_VALUES = {"0": "off", "off": "off", "false": "off", "no": "off", "1": "bar", "on": "bar", "true": "bar",
                    "yes": "bar", "bar": "bar", "lines": "lines", "auto": "auto"}


def progress_env() -> str | None:
    """``$TRANSFERKIT_PROGRESS`` as a ``progress`` setting (``0``/``off`` -> off, ``1``/``on`` -> bar,
    ``lines``, ``auto``), None when unset; it decides what ``progress=auto`` shows."""
    value = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if not value:
        return None
    if value not in _PROGRESS_VALUES:
        raise ConfigError(f"${PROGRESS_ENV}={value!r} is not one of {', '.join(sorted(_PROGRESS_VALUES))}")
    return _PROGRESS_VALUES[value]
