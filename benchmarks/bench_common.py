"""Shared helpers of the benchmark script: machine description, timing statistics, interleaving.

Imported by ``benchmarks/core.py`` after it has set ``OMP_WAIT_POLICY`` (torch reads it at import).
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, bf16 support, torch, threads, load."""
    model, flags = "unknown", set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        model = platform.processor() or "unknown"
    from transferkit.engine.precision import cpu_has_fast_bf16

    isa = sorted(f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512f", "avx2")))
    return {
        "cpu_model": model,
        "cpu_flags_of_interest": isa,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "onednn_bf16": cpu_has_fast_bf16(),
        "cuda": torch.cuda.is_available(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "TORCHINDUCTOR_CACHE_DIR")},
        "load_average_start": os.getloadavg(),
    }


@dataclass(frozen=True)
class Spread:
    """Median and range of repeated measurements."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values), len(values))

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> Spread:
        return cls(d["median"], d["min"], d["max"], int(d["n"]))

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.lo, "max": self.hi, "n": self.n}

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        m, lo, hi = (f"{v:.{digits}f}" for v in (self.median, self.lo, self.hi))
        return f"{m}{unit} [{lo}-{hi}]" if self.n > 1 else f"{m}{unit}"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``fn()`` (after a garbage collection, so none lands inside) and its result."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def interleave(variants: dict[str, Callable[[], Any]], rounds: int, log: Callable[[str], None]) -> dict[str, list[Any]]:
    """Run every variant once per round (A, B, A, B, ...; the order alternates each round)."""
    names = list(variants)
    out: dict[str, list[Any]] = {n: [] for n in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            seconds, result = timed(variants[n])
            out[n].append((seconds, result))
            log(f"    round {r + 1}/{rounds} {n}: {seconds:.2f} s")
    return out


def pair_ratios(num: list[float], den: list[float]) -> list[float]:
    """Per-round ratios ``num[i] / den[i]`` (rounds interleaved, so drift cancels within a pair)."""
    return [a / b for a, b in zip(num, den, strict=True)]


@dataclass
class Check:
    """One acceptance criterion: the measured value against its target (and CI floor, if any)."""

    name: str
    value: str
    target: str
    passed: bool
    floor: str = ""
    floor_ok: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "target": self.target, "passed": self.passed,
                "floor": self.floor, "floor_ok": self.floor_ok}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
