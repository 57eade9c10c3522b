"""The transfer-gain table: mnist5k -> digits8 with every strategy, k shots, several seeds.

Each cell is ``transferkit.transfer(source, "digits8", strategy=..., shots=k, seed=s,
source_data="mnist5k")`` with the library's default training options; the seed picks the
split, the k-shot sample and the initialisation. Strategies share the library's default feature
cache, as they would in one session.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import transferkit
from bench_common import Check
from transferkit.runs import LoadedRun


def bench_transfer(source: LoadedRun, strategies: list[str], shots: list[int], seeds: list[int],
                   log: Callable[[str], None]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for k in shots:
        for seed in seeds:
            for name in strategies:
                t0 = time.perf_counter()
                try:
                    res = transferkit.transfer(source, "digits8", strategy=name, shots=k, seed=seed,
                                               source_data="mnist5k", progress="off", augment="off")
                except Exception as e:  # recorded and reported; the other cells still run
                    rows.append({"strategy": name, "shots": k, "seed": seed, "error": f"{type(e).__name__}: {e}"})
                    log(f"    {k}-shot seed {seed} {name}: ERROR {rows[-1]['error']}")
                    continue
                wall = time.perf_counter() - t0
                m = res.metrics
                row = {"strategy": name, "shots": k, "seed": seed, "target_accuracy": m["target"]["accuracy"],
                       "source_before": m["source_before"]["accuracy"],
                       "source_after": m.get("source_after", {}).get("accuracy"),
                       "forgetting": m.get("forgetting"), "train_seconds": m["train_seconds"], "wall_seconds": wall,
                       "epochs": [p["epochs"] for p in m["phases"]]}
                rows.append(row)
                forget = "-" if row["forgetting"] is None else f"{row['forgetting']:.3f}"
                log(f"    {k}-shot seed {seed} {name}: acc {row['target_accuracy']:.3f} forgetting {forget} ({wall:.1f} s)")
    return {"strategies": strategies, "shots": shots, "seeds": seeds, "runs": rows,
            "errors": [r for r in rows if "error" in r], "summary": summarize(rows, strategies, shots)}


def _mean_std(vals: list[float]) -> tuple[float, float]:
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def summarize(rows: list[dict[str, Any]], strategies: list[str], shots: list[int]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (shots, strategy)."""
    out = []
    for k in shots:
        for name in strategies:
            cell = [r for r in rows if r["shots"] == k and r["strategy"] == name and "error" not in r]
            if not cell:
                continue
            acc = _mean_std([r["target_accuracy"] for r in cell])
            forget = [r["forgetting"] for r in cell if r["forgetting"] is not None]
            after = [r["source_after"] for r in cell if r["source_after"] is not None]
            out.append({"shots": k, "strategy": name, "n_seeds": len(cell), "acc_mean": acc[0], "acc_std": acc[1],
                        "source_after_mean": statistics.fmean(after) if after else None,
                        "forgetting_mean": statistics.fmean(forget) if forget else None,
                        "forgetting_std": _mean_std(forget)[1] if forget else None,
                        "seconds_mean": statistics.fmean(r["train_seconds"] for r in cell)})
    return out


def transfer_checks(summary: list[dict[str, Any]], shots: list[int]) -> list[Check]:
    """Gain over scratch at 1 and 5 shots; l2sp or wise_ft forgets <= 2 pt within 1.5 pt of full."""
    cell = {(s["shots"], s["strategy"]): s for s in summary}
    checks = []
    for k, need in ((1, 0.15), (5, 0.05)):
        if k not in shots or (k, "scratch") not in cell:
            continue
        others = [s for s in summary if s["shots"] == k and s["strategy"] != "scratch"]
        best = max(others, key=lambda s: s["acc_mean"])
        gain = best["acc_mean"] - cell[(k, "scratch")]["acc_mean"]
        checks.append(Check(f"{k}-shot: best transfer ({best['strategy']}) minus scratch", f"{100 * gain:+.1f} pt",
                            f">= +{100 * need:.0f} pt", gain >= need))
    for k in shots:
        full = cell.get((k, "full"))
        if full is None:
            continue
        found = []
        for name in ("l2sp", "wise_ft"):
            s = cell.get((k, name))
            if s is None or s["forgetting_mean"] is None:
                continue
            ok = s["forgetting_mean"] <= 0.02 and s["acc_mean"] >= full["acc_mean"] - 0.015
            found.append((ok, f"{name}: forgetting {100 * s['forgetting_mean']:.1f} pt, "
                              f"{100 * (s['acc_mean'] - full['acc_mean']):+.1f} pt vs full"))
        if found:
            checks.append(Check(f"{k}-shot: l2sp or wise_ft keeps the source", "; ".join(t for _, t in found),
                                "forgetting <= 2 pt and >= full - 1.5 pt", any(ok for ok, _ in found)))
    return checks
