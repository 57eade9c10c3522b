"""Data-parallel training: 1 process vs 2 processes under torchrun (gloo, CPU), same global batch and seed.

    python benchmarks/ddp.py            # writes docs/DDP.md and docs/ddp.json (3 seeds, ~10 min on 2 busy cores)
    python benchmarks/ddp.py --quick    # 1 seed (~3 min)
    python benchmarks/ddp.py --render-only   # rewrite DDP.md from docs/ddp.json (no measuring)

The source is ``small_cnn`` (width 32, hidden 128) pretrained here on mnist5k; each seed transfers
it to digits8 with ``full`` in fp32 and in the default precision (bf16 autocast on a CPU with AMX)
and with ``linear_probe`` (default precision), each twice: ``python -m transferkit transfer`` (1 process, as many threads
as usable cores) and ``torchrun --standalone --nproc_per_node 2 -m transferkit transfer`` (2
processes, one thread each), interleaved so that machine-load drift hits both alike. The
acceptance criterion: the 2-process test accuracy is within 0.5 points of the 1-process one for
every strategy and seed. Wall time counts the whole command (interpreter start, data loading,
training, evaluation); samples/s counts training samples over the strategy's training time.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import Spread
from harness import Bench, Context, Store, log

CONFIGS = [("full", "fp32"), ("full", "auto"), ("linear_probe", "auto")]  # (strategy, --precision)
TRAIN = ["--epochs", "5", "--patience", "0", "--batch-size", "64", "--progress", "off"]
SOURCE = ["--model", "small_cnn", "--model-opt", "width=32", "--model-opt", "hidden=128", "--epochs", "3"]
CRITERION_PT = 0.5


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def _run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return seconds


def pretrain(work: Path) -> Path:
    src = work / "source"
    if (src / "run.json").exists() and json.loads((src / "run.json").read_text()).get("status") == "complete":
        return src
    log(f"pretraining on mnist5k (1 process): {' '.join(SOURCE)}")
    _run([sys.executable, "-m", "transferkit", "pretrain", "--data", "mnist5k", *SOURCE, "--progress", "off",
          "--out", str(src), "--overwrite"], _env(_cpus()))
    return src


def _record(run: Path, wall: float) -> dict[str, Any]:
    m = json.loads((run / "metrics.json").read_text())
    samples = m["n_train"] * sum(p["epochs"] for p in m["phases"])
    return {"accuracy": m["target"]["accuracy"], "wall_seconds": wall, "train_seconds": m["train_seconds"],
            "samples_per_second": samples / m["train_seconds"], "phases": m["phases"]}


def measure_runs(work: Path, source: Path, seeds: list[int]) -> list[dict[str, Any]]:
    """One row per (seed, strategy, precision): both launchers back to back (stored: a rerun resumes)."""
    threads = _cpus()
    variants = {
        "1 process": ([sys.executable, "-m", "transferkit"], _env(threads)),
        "2 processes": ([*_torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "transferkit"], _env(1)),
    }
    store = Store(work / "results.json")
    keys = []
    for k, (seed, (strategy, precision)) in enumerate((s, c) for s in seeds for c in CONFIGS):
        def one(strategy: str = strategy, precision: str = precision, seed: int = seed, k: int = k
                ) -> dict[str, Any]:
            row: dict[str, Any] = {"strategy": strategy, "precision": precision, "seed": seed}
            for name in list(variants) if k % 2 == 0 else list(variants)[::-1]:  # alternate who goes first
                launcher, env = variants[name]
                out = work / name.replace(" ", "_") / f"{strategy}-{precision}-{seed}"
                cmd = [*launcher, "transfer", "--source", str(source), "--data", "digits8", "--strategy", strategy,
                       "--precision", precision, "--seed", str(seed), "--out", str(out), "--overwrite", *TRAIN]
                row[name] = _record(out, _run(cmd, env))
                log(f"  {strategy} {precision} seed {seed} {name}: {100 * row[name]['accuracy']:.2f}% "
                    f"in {row[name]['wall_seconds']:.1f} s")
            row["delta_pt"] = 100 * (row["2 processes"]["accuracy"] - row["1 process"]["accuracy"])
            row["passed"] = abs(row["delta_pt"]) <= CRITERION_PT
            return row

        keys.append(f"{strategy}|{precision}|{seed}")
        store.cell(keys[-1], one, lambda r: f"{r['delta_pt']:+.2f} pt")
    return [{k: v for k, v in store[key].items() if k != "wall_seconds"} for key in keys]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for strategy, precision in CONFIGS:
        rs = [r for r in rows if (r["strategy"], r["precision"]) == (strategy, precision)]

        def acc(name: str, rs: list[dict[str, Any]] = rs) -> float:
            return 100 * statistics.mean(r[name]["accuracy"] for r in rs)

        out[f"{strategy} {precision}"] = {
            "accuracy_1": acc("1 process"), "accuracy_2": acc("2 processes"),
            "max_abs_delta_pt": max(abs(r["delta_pt"]) for r in rs),
            "passed": all(r["passed"] for r in rs),
            "wall_ratio": Spread.of([r["2 processes"]["wall_seconds"] / r["1 process"]["wall_seconds"] for r in rs]).as_dict(),
            "throughput_ratio": Spread.of([r["2 processes"]["samples_per_second"] / r["1 process"]["samples_per_second"]
                                           for r in rs]).as_dict(),
            "samples_per_second_1": Spread.of([r["1 process"]["samples_per_second"] for r in rs]).as_dict(),
            "samples_per_second_2": Spread.of([r["2 processes"]["samples_per_second"] for r in rs]).as_dict(),
        }
    return out


def render(doc: dict[str, Any]) -> str:
    rows, summary, seeds, command = doc["runs"], doc["summary"], doc["seeds"], doc["command"]
    machine, minutes, now = doc["machine"], doc["minutes"], doc["generated"]
    passed = all(s["passed"] for s in summary.values())
    bf16 = {f"{r['strategy']} {r['precision']}": any(p.get("bf16_autocast") for v in ("1 process", "2 processes")
                                                     for p in r[v]["phases"]) for r in rows}
    lines = [
        "# Data-parallel training (torchrun) on CPU",
        "",
        f"> Generated by `{command}` on {now} ({machine['cpu_model']}, {machine['usable_cpus']} usable CPUs, "
        f"torch {machine['torch']}, load average at start {machine['load_average_start'][0]:.1f}) in "
        f"{minutes:.1f} min. Do not edit by hand.",
        "",
        f"Source: `transferkit pretrain --data mnist5k {' '.join(SOURCE)}`; target: digits8 (whole training split), "
        f"seeds {seeds}, `{' '.join(TRAIN)}`; `--precision` per row (bf16 autocast used: "
        f"{', '.join(f'{k}: {v}' for k, v in bf16.items())}). "
        f"**1 process**: `python -m transferkit transfer ...` with OMP_NUM_THREADS={machine['usable_cpus']}. "
        "**2 processes**: `torchrun --standalone --nproc_per_node 2 -m transferkit transfer ...`, gloo, "
        "OMP_NUM_THREADS=1 each; the same global batch (64; 32 per process) and seed. OMP_WAIT_POLICY=PASSIVE for both.",
        "",
        f"**Criterion** (2-process accuracy within {CRITERION_PT} pt of 1 process, every strategy and seed): "
        f"**{'PASS' if passed else 'FAIL'}**",
        "",
        "| strategy, precision | accuracy, 1 process | accuracy, 2 processes | max abs. difference (pt) | criterion | "
        "samples/s, 1 process | samples/s, 2 processes | throughput ratio 2/1 | wall-time ratio 2/1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for config, s in summary.items():
        def sp(key: str, digits: int = 0, s: dict[str, Any] = s) -> str:
            return Spread.from_dict(s[key]).fmt(digits)

        lines.append(f"| `{config}` | {s['accuracy_1']:.2f}% | {s['accuracy_2']:.2f}% | {s['max_abs_delta_pt']:.2f} | "
                     f"{'PASS' if s['passed'] else 'FAIL'} | {sp('samples_per_second_1')} | {sp('samples_per_second_2')} | "
                     f"{sp('throughput_ratio', 2)} | {sp('wall_ratio', 2)} |")
    lines += ["", "Per run (test accuracy, %; wall seconds):", "",
              "| strategy | precision | seed | 1 process | 2 processes | difference (pt) | wall 1 | wall 2 |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["1 process"], r["2 processes"]
        lines.append(f"| `{r['strategy']}` | {r['precision']} | {r['seed']} | {100 * a['accuracy']:.2f} | {100 * b['accuracy']:.2f} | "
                     f"{r['delta_pt']:+.2f} | {a['wall_seconds']:.1f} | {b['wall_seconds']:.1f} |")
    lines += [
        "",
        "Ratios are medians [min-max] over seeds; each pair ran back to back in alternating order. "
        "The two processes split each global batch; their gradients are summed into the 1-process gradient, and "
        "BatchNorm statistics and dropout masks are those of the global batch (`transferkit/engine/global_batch.py`), "
        "so one step equals the 1-process step up to float rounding (`tests/engine/test_distributed.py`). Over many "
        "steps that rounding still moves the trajectory a little: in fp32 only float32 rounding, under bf16 autocast "
        "also the bf16 rounding (8-bit mantissa) of each shard's weight gradient before the sum, which is why bf16 rows "
        "can differ by a few test images. Speed: on a machine "
        "with 2 cores shared with other jobs, two 1-thread processes compete for the same cores as one 2-thread "
        "process and add an all-reduce of every gradient per step plus a second interpreter start, so no speed-up "
        "is expected here; data parallelism pays with one process per GPU or per socket.",
        "",
    ]
    return "\n".join(lines)


def measure(ctx: Context) -> dict[str, Any]:
    ctx.work.mkdir(parents=True, exist_ok=True)
    rows = measure_runs(ctx.work, pretrain(ctx.work), ctx.seeds)
    summary = summarise(rows)
    return {"seeds": ctx.seeds, "train_flags": TRAIN, "criterion_pt": CRITERION_PT,
            "passed": all(s["passed"] for s in summary.values()), "summary": summary, "runs": rows,
            "minutes": (time.perf_counter() - ctx.started) / 60}


def checks(doc: dict[str, Any]) -> list[str]:
    return [f"{config}: 2 processes differ by {s['max_abs_delta_pt']:.2f} pt (> {CRITERION_PT})"
            for config, s in doc["summary"].items() if not s["passed"]]


BENCH = Bench("ddp", __doc__ or "", measure, render, checks, quick="one seed (< 3 min)")
main = BENCH.main


if __name__ == "__main__":
    sys.exit(main())
