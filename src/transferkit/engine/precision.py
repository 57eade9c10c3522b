"""Device, precision and memory-format choices, resolved once per phase and recorded in the run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from transferkit.engine import distributed, progress
from transferkit.errors import ConfigError


@dataclass(frozen=True)
class Placement:
    device: torch.device
    bf16: bool
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def describe(self) -> dict[str, object]:
        return {"device": str(self.device), "bf16_autocast": self.bf16, "channels_last": self.channels_last}


def available_devices() -> list[str]:
    """The ``--device`` values this machine can run on (``auto`` picks the first GPU, else ``cpu``)."""
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        out.append("mps")
    return out


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one. Under torchrun, ``auto`` and ``cuda`` mean this
    process's GPU, ``cuda:$LOCAL_RANK``. A device this machine lacks is a one-line
    :class:`ConfigError` naming it and what is available."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % max(1, torch.cuda.device_count())}")
    here = ", ".join(available_devices())
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {name!r} is not a device; available here: {here}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ConfigError(f"--device {name}: {why}; available here: {here}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: there are {torch.cuda.device_count()} CUDA GPUs; available here: {here}")
    if dev.type not in ("cpu", "cuda") and not (dev.type == "mps" and "mps" in here):
        raise ConfigError(f"--device {name}: not available on this machine; available here: {here}")
    return dev


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 / AMX), per oneDNN."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_placement(module: nn.Module, precision: str, channels_last: str, device: str = "auto") -> Placement:
    """Pick bf16 autocast and channels-last for ``module``.

    ``auto`` turns both on only where they were measured to pay: convolutional models on a GPU
    with bf16 or a CPU with native bf16 instructions (1.87x faster training of ``small_cnn`` on
    this project's AMX CPU, see docs/BENCHMARKS.md). Linear-only modules stay fp32: on small
    matrices the casts cost more than they save.
    """
    dev = resolve_device(device)
    has_conv = any(isinstance(m, nn.Conv2d) for m in module.modules())
    if precision == "auto":
        fast = torch.cuda.is_bf16_supported() if dev.type == "cuda" else cpu_has_fast_bf16()
        bf16 = fast and has_conv
    else:
        bf16 = precision == "bf16"
    cl = has_conv if channels_last == "auto" else channels_last == "on"
    return Placement(dev, bf16, cl)


def denormals_flushed() -> bool:
    """Whether this thread's CPU currently flushes subnormal floats to zero (FTZ/DAZ)."""
    return (torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() == 0.0


@contextlib.contextmanager
def flush_denormals(place: Placement) -> Iterator[None]:
    """Flush subnormal floats to zero on the CPU while training, restoring the previous mode after.

    Gradients and optimiser moments of a converging network can drift into the subnormal range,
    where x86 arithmetic takes a microcode path many times slower; values below 1.2e-38 carry no
    signal for training. ``benchmarks/core.py`` section 3 times a loop with and without it.
    """
    if place.device.type != "cpu":
        yield
        return
    before = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Temporarily put ``module`` in eval mode, restoring its previous mode afterwards."""
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)


def predict_logits(module: nn.Module, x: torch.Tensor, place: Placement, batch_size: int = 128,
                   sink: Callable[[int, torch.Tensor], None] | None = None, desc: str | None = None) -> torch.Tensor:
    """Run ``module`` over ``x`` in eval mode in batches; returns float32 outputs on the CPU.

    Batches of 128 measured about 1.8x faster than 512 for bf16 + channels-last on this
    project's CPU (cache-sized activations); see docs/BENCHMARKS.md. With ``sink``, each batch's
    outputs go to ``sink(start_row, outputs)`` instead of being kept (an empty tensor is returned),
    so outputs larger than memory can stream to disk. With ``desc``, a per-batch bar of that name
    shows on a terminal (:func:`transferkit.engine.progress.batch_bar`).
    """
    convert = place.channels_last and not _is_channels_last(module)
    if convert:  # weights in channels-last too (mixed formats take a slow path), restored after;
        set_memory_format(module, torch.channels_last)  # outside inference mode: params stay trainable
    try:
        return _predict(module, x, place, batch_size, sink, desc)
    finally:
        if convert:
            set_memory_format(module, torch.contiguous_format)


def predict_sharded(module: nn.Module, x: torch.Tensor, place: Placement, batch_size: int = 128) -> torch.Tensor:
    """:func:`predict_logits` over ``x`` with each rank running its share of the batches; every
    rank receives all ``[N, ...]`` outputs (float32, CPU), in order."""
    if distributed.world_size() == 1 or len(x) == 0:
        return predict_logits(module, x, place, batch_size)
    lo, hi = distributed.batch_range(len(x), batch_size)
    local = predict_logits(module, x[lo:hi] if hi > lo else x[:1], place, batch_size)
    trailing = tuple(local.shape[1:])
    return distributed.all_gather_rows(local if hi > lo else local[:0], trailing, distributed.comm_device(place))


def set_memory_format(module: nn.Module, fmt: torch.memory_format) -> None:
    """Store ``module``'s 4-d weights in ``fmt`` (channels-last or contiguous), in place."""
    module.to(memory_format=fmt)  # type: ignore[call-overload]


def _is_channels_last(module: nn.Module) -> bool:
    """True when the conv weights are stored channels-last (a 1-channel kernel is both layouts)."""
    weights = [m.weight for m in module.modules() if isinstance(m, nn.Conv2d)]
    return all(w.is_contiguous(memory_format=torch.channels_last) for w in weights) and any(
        not w.is_contiguous() for w in weights
    )


@torch.inference_mode()
def _predict(module: nn.Module, x: torch.Tensor, place: Placement, batch_size: int,
             sink: Callable[[int, torch.Tensor], None] | None, desc: str | None = None) -> torch.Tensor:
    outs = []
    with eval_mode(module), progress.batch_bar(-(-len(x) // batch_size) if desc else 0, desc or "") as bar:
        for i in range(0, len(x), batch_size):
            with place.autocast():
                out = module(place.to_input(x[i : i + batch_size])).float().cpu()
            if sink is None:
                outs.append(out)
            else:
                sink(i, out)
            if bar is not None:
                bar.update(1)
    return torch.cat(outs) if outs else torch.empty(0)
