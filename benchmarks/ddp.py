"""Data-parallel training: 1 process vs 2 processes under torchrun (gloo, CPU), same global batch and seed.

    python benchmarks/ddp.py            # writes docs/DDP.md and docs/ddp.json (3 seeds, ~10 min on 2 busy cores)
    python benchmarks/ddp.py --quick    # 1 seed (~3 min)
    python benchmarks/ddp.py --render   # rewrite DDP.md from docs/ddp.json (no measuring)

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

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench_common import Spread, log, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
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


def measure(work: Path, source: Path, seeds: list[int]) -> list[dict[str, Any]]:
    threads = _cpus()
    variants = {
        "1 process": ([sys.executable, "-m", "transferkit"], _env(threads)),
        "2 processes": ([*_torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "transferkit"], _env(1)),
    }
    rows = []
    k = 0
    for seed in seeds:
        for strategy, precision in CONFIGS:
            row: dict[str, Any] = {"strategy": strategy, "precision": precision, "seed": seed}
            names = list(variants) if k % 2 == 0 else list(variants)[::-1]  # alternate who goes first
            k += 1
            for name in names:
                launcher, env = variants[name]
                out = work / name.replace(" ", "_") / f"{strategy}-{precision}-{seed}"
                cmd = [*launcher, "transfer", "--source", str(source), "--data", "digits8", "--strategy", strategy,
                       "--precision", precision, "--seed", str(seed), "--out", str(out), "--overwrite", *TRAIN]
                row[name] = _record(out, _run(cmd, env))
                log(f"  {strategy} {precision} seed {seed} {name}: {100 * row[name]['accuracy']:.2f}% "
                    f"in {row[name]['wall_seconds']:.1f} s")
            row["delta_pt"] = 100 * (row["2 processes"]["accuracy"] - row["1 process"]["accuracy"])
            row["passed"] = abs(row["delta_pt"]) <= CRITERION_PT
            rows.append(row)
    return rows


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


def render(rows: list[dict[str, Any]], summary: dict[str, Any], seeds: list[int], command: str,
           machine: dict[str, Any], minutes: float) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one seed (< 3 min)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; --quick: 0)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "ddp")
    p.add_argument("--out", type=Path, default=ROOT / "docs")
    p.add_argument("--render", action="store_true", help="only rewrite DDP.md from the measurements in ddp.json")
    args = p.parse_args(argv)
    if args.render:
        d = json.loads((args.out / "ddp.json").read_text())
        text = render(d["runs"], d["summary"], d["seeds"], d.get("command", "python benchmarks/ddp.py"), d["machine"],
                      d["minutes"])
        (args.out / "DDP.md").write_text(text)
        return 0
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    t0 = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    source = pretrain(args.work)
    rows = measure(args.work, source, seeds)
    summary = summarise(rows)
    minutes = (time.perf_counter() - t0) / 60
    command = "python benchmarks/ddp.py" + (" --quick" if args.quick else "") + (f" --seeds {args.seeds}" if args.seeds else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "DDP.md").write_text(render(rows, summary, seeds, command, machine, minutes))
    (args.out / "ddp.json").write_text(json.dumps({"command": command, "seeds": seeds, "train_flags": TRAIN, "criterion_pt": CRITERION_PT,
                                                   "passed": all(s["passed"] for s in summary.values()),
                                                   "summary": summary, "runs": rows, "machine": machine,
                                                   "minutes": minutes}, indent=1) + "\n")
    log(f"wrote {args.out / 'DDP.md'} ({minutes:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
