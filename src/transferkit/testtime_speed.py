"""How a test-time adaptation step (:mod:`transferkit.testtime`) runs fast without changing a value.

- :func:`grad_like_output`: under a channels-last placement, the gradient reaching a channels-last
  activation is made channels-last. A flatten before a linear layer sends back a contiguous gradient,
  and every backward kernel between it and the first trained normalisation layer (max-pool, ReLU, BatchNorm,
  convolution) then takes its slow mixed-layout path.
- :func:`frozen_weights_in_bf16`: under bf16 autocast, the frozen convolution / linear weights are
  cast to bf16 once for the whole stream instead of by autocast in every batch's forward (the cast
  autocast makes, so the same values).
- :func:`keep_freed_memory`: a tent / eata batch frees some tens of MB of activations and gradients
  when it ends; glibc's default trim threshold hands them back to the OS, and the next batch faults
  every page in again (zeroed by the kernel). Raising the thresholds keeps them for reuse.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from transferkit.engine.precision import Placement

CASTABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # modules whose weights CPU / CUDA autocast casts to bf16


def grad_like_output(module: nn.Module, inputs: Any, output: Any) -> None:
    """Forward hook: a channels-last 4-d output that needs a gradient gets it channels-last."""
    if isinstance(output, torch.Tensor) and output.requires_grad and output.ndim == 4 \
            and output.is_contiguous(memory_format=torch.channels_last):
        output.register_hook(channels_last)


def channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


@contextmanager
def frozen_weights_in_bf16(model: nn.Module, trained: list[nn.Parameter], place: Placement) -> Iterator[None]:
    """With ``place.bf16``: the fp32 ``weight`` / ``bias`` of every convolution and linear layer that is
    not in ``trained`` hold their bf16 cast for the duration (layout kept); the fp32 tensors are put
    back after, untouched. A parameter shared by another module (tied weights) is left as it is."""
    if not place.bf16:
        yield
        return
    skip = {id(p) for p in trained}
    owners: dict[int, int] = {}
    for mod in model.modules():
        for p in mod.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    kept: list[tuple[nn.Parameter, torch.Tensor]] = []
    for mod in model.modules():
        if not isinstance(mod, CASTABLE):
            continue
        for w in (getattr(mod, "weight", None), getattr(mod, "bias", None)):
            if isinstance(w, nn.Parameter) and id(w) not in skip and owners[id(w)] == 1 and w.dtype == torch.float32:
                kept.append((w, w.data))
                w.data = w.data.to(torch.bfloat16)
    try:
        yield
    finally:
        for p, original in kept:
            p.data = original


_TUNED = False
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory(trim: int = 512 << 20, mmap: int = 32 << 20) -> bool:
    """glibc (Linux) only, once per process: blocks up to ``mmap`` bytes come from the heap, and up to
    ``trim`` free bytes at its top stay mapped, so the next batch reuses them without page faults.
    Process-wide, like ``MALLOC_TRIM_THRESHOLD_``; the process keeps up to ``trim`` bytes it freed.
    Returns whether the settings are in place."""
    global _TUNED
    if _TUNED or not sys.platform.startswith("linux"):
        return _TUNED
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt thresholds)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _TUNED = bool(mallopt(M_MMAP_THRESHOLD, mmap)) and bool(mallopt(M_TRIM_THRESHOLD, trim))
    return _TUNED


__all__ = ["frozen_weights_in_bf16", "grad_like_output", "keep_freed_memory"]
