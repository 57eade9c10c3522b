"""Throughput of each registered backbone and peak memory of each strategy.

Throughput: samples per second for inference and for training steps of every model in
``transferkit.models.MODELS`` at the placement ``auto`` picks, batch 64, on real inputs of the
model's modality prepared for it (mnist5k digits, vader-tweets text, spoken-digits audio):
pretrained backbones at their own input size, architectures at the data's.
Peak memory: each strategy runs one transfer in a fresh Python process and reports its peak
resident set (``VmHWM``) minus the peak of the same process after loading everything but before
training, so the number is what the strategy itself adds on top of the shared set-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bench_common import Spread
from transferkit.engine.precision import resolve_placement
from transferkit.data import DATASETS, prepare
from transferkit.models import MODELS, ModelSpec, TransferModel, build_model, from_pretrained, is_pretrained

#: Real data per modality, and the modality of each architecture without pretrained weights.
MODALITY_DATA = {"image": "mnist5k", "text": "vader-tweets", "audio": "spoken-digits"}
ARCHITECTURE_MODALITY = {"small_cnn": "image", "mlp": "image", "audio_cnn": "audio"}
#: Backbones that are a user's own folder (``--source path/to/hf_model``), with no weights of their own to
#: measure here; MiniLM's folder loaded through ``hf`` is the ``minilm`` row.
USER_FOLDER_BACKBONES = {"hf"}

_CHILD = r"""
import json, sys, transferkit
from transferkit.data import load_dataset
from transferkit.runs import load_run
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
src = load_run(sys.argv[1])
load_dataset("digits8")
base = hwm()
res = transferkit.transfer(src, "digits8", strategy=sys.argv[2], shots=int(sys.argv[3]), epochs=5, progress="off")
print(json.dumps({"base_mib": base, "peak_mib": hwm(), "accuracy": res.metrics["target"]["accuracy"]}))
"""


def _throughput(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, train: bool, rounds: int) -> list[float]:
    place = resolve_placement(model, "auto", "auto")
    model.to(place.device)
    if place.channels_last:
        model.to(memory_format=torch.channels_last)
    xb = place.to_input(x)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rates = []
    for r in range(rounds + 1):  # the first round warms oneDNN up and is dropped
        t0 = time.perf_counter()
        for i in range(0, len(xb), 64):
            if train:
                model.train()
                with place.autocast():
                    loss = torch.nn.functional.cross_entropy(model(xb[i : i + 64]).float(), y[i : i + 64])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            else:
                model.eval()
                with torch.inference_mode(), place.autocast():
                    model(xb[i : i + 64])
        if r:
            rates.append(len(xb) / (time.perf_counter() - t0))
    return rates


def _model_and_inputs(name: str, n: int) -> tuple[TransferModel, torch.Tensor, torch.Tensor, str]:
    """``name`` built (pretrained weights where it has them) and ``n`` real inputs prepared for it."""
    pretrained = is_pretrained(name)
    model = from_pretrained(name) if pretrained else None
    modality = model.spec.modality if model is not None else ARCHITECTURE_MODALITY.get(name, "image")
    ds = DATASETS.get(MODALITY_DATA[modality])(seed=0)
    labels = ds.require_labels()
    idx = np.sort(np.random.default_rng(0).choice(len(ds), min(n, len(ds)), replace=False))
    ds = ds.subset(idx)
    if model is None:
        model = build_model(ModelSpec(name, ds.input_shape, ds.class_names, {}, ds.modality), seed=0)
    else:
        model.reset_head(ds.class_names)
    x = torch.from_numpy(np.ascontiguousarray(prepare(ds, model.spec).x))
    return model, x, torch.from_numpy(labels[idx].astype(np.int64)), MODALITY_DATA[modality]


def bench_backbones(n: int, rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in MODELS.list():
        if entry.name in USER_FOLDER_BACKBONES:
            continue
        model, x, y, data = _model_and_inputs(entry.name, n)
        params = sum(p.numel() for p in model.parameters())
        fwd = _throughput(model, x, y, False, rounds)
        trn = _throughput(model, x, y, True, rounds)
        place = resolve_placement(model, "auto", "auto").describe()
        out[entry.name] = {"parameters": params, "forward_per_s": Spread.of(fwd).as_dict(),
                           "train_per_s": Spread.of(trn).as_dict(), "input": f"{data} {tuple(x.shape[1:])}",
                           "pretrained": is_pretrained(entry.name), **place}
        log(f"  {entry.name}: forward {Spread.of(fwd).median:.0f}/s, train {Spread.of(trn).median:.0f}/s")
    return out


def bench_memory(source_run: str, strategies: list[str], shots: int, log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in strategies:
        proc = subprocess.run([sys.executable, "-c", _CHILD, source_run, name, str(shots)], capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0:
            out[name] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["added_mib"] = r["peak_mib"] - r["base_mib"]
        out[name] = r
        log(f"  {name}: +{r['added_mib']:.0f} MiB over {r['base_mib']:.0f} MiB")
    return out
