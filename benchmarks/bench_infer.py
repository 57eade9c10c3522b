"""Inference throughput of a trained ``small_cnn``: plain fp32, bf16 + channels-last, torch.compile.

Every variant runs the same model in eval mode under ``torch.inference_mode`` over the same
images in full batches (so a compiled graph never sees a new shape). ``torch.compile`` uses
inductor with ``freezing=True`` (weights become constants and are pre-packed for oneDNN, the
setting PyTorch recommends for CPU inference); its warm-up (compilation) is timed separately and
excluded from the throughput.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench_common import Spread, interleave, pair_ratios

Forward = Callable[[torch.Tensor], torch.Tensor]


def _bf16(model: nn.Module) -> Forward:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)

    return run


def _pass(fwd: Forward, batches: list[torch.Tensor]) -> int:
    with torch.inference_mode():
        for b in batches:
            fwd(b)
    return sum(len(b) for b in batches)


def bench_inference(model: nn.Module, x: torch.Tensor, batch_size: int, rounds: int, compile_: bool,
                    log: Callable[[str], None]) -> dict[str, Any]:
    """Images per second of each variant over ``x`` (trimmed to whole batches), interleaved rounds."""
    n = len(x) // batch_size * batch_size
    plain_batches = [x[i : i + batch_size].contiguous() for i in range(0, n, batch_size)]
    cl_batches = [b.contiguous(memory_format=torch.channels_last) for b in plain_batches]
    fp32 = copy.deepcopy(model).eval()
    cl = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    variants: dict[str, tuple[Forward, list[torch.Tensor]]] = {
        "fp32": (fp32, plain_batches),
        "bf16_channels_last": (_bf16(cl), cl_batches),
    }
    out: dict[str, Any] = {"n_images": n, "batch_size": batch_size, "rounds": rounds, "variants": {}}
    if compile_:
        import torch._inductor.config as inductor_config

        was, inductor_config.freezing = inductor_config.freezing, True
        compiled = torch.compile(copy.deepcopy(model).eval().to(memory_format=torch.channels_last))
        fwd = _bf16(compiled)
        t0 = time.perf_counter()
        try:
            _pass(fwd, cl_batches[:1])  # compiles; freezing is read at compile time
        finally:
            inductor_config.freezing = was
        out["compile_warmup_seconds"] = time.perf_counter() - t0
        log(f"    torch.compile warm-up: {out['compile_warmup_seconds']:.1f} s")
        variants["compile_bf16_channels_last"] = (fwd, cl_batches)
    for fwd, batches in variants.values():  # untimed warm-up
        _pass(fwd, batches[:1])
    runs = interleave({k: (lambda f=f, b=b: _pass(f, b)) for k, (f, b) in variants.items()}, rounds, log)
    for name, rs in runs.items():
        secs = [s for s, _ in rs]
        out["variants"][name] = {"seconds": secs, "images_per_second": Spread.of([n / s for s in secs]).as_dict()}
    base = out["variants"]["fp32"]["seconds"]
    for name in out["variants"]:
        out["variants"][name]["speedup_vs_fp32"] = Spread.of(pair_ratios(base, out["variants"][name]["seconds"])).as_dict()
    return out
