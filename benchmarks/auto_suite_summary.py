"""The auto suite's summaries and checks: per task, each strategy's mean over seeds against ``auto``'s (regret,
paired by seed; time ratio), and the suite's criteria (benchmarks/auto_suite.py runs, this summarises what it
stored, auto_suite_report.py renders)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
from auto_suite_report import mean_of, pct
from bench_common import Check

if TYPE_CHECKING:
    from auto_suite import Plan, Task

#: auto within 1 point of the best strategy's mean; on >= 80% of tasks; at <= 30% of every strategy's seconds.
REGRET_TOL, WITHIN_TARGET, TIME_TARGET = 0.01, 0.80, 0.30


def time_scale(reused: dict[str, Any], rows: list[dict[str, Any]], plan: Plan) -> float:
    """This run's speed relative to the reused one: auto(budget=0)'s mean train seconds summed over the
    tasks, here / there. auto(0) trains the rules' choice alone -- a recipe both runs ran -- so the reused
    every-strategy seconds times this factor are on this run's clock (1.0 without auto(0) in both)."""
    here = {t.key: mean_of([r["train_seconds"] for r in rows if r["task"] == t.key and r["strategy"] == "auto"
                          and r.get("budget") == 0.0 and "error" not in r]) for t in plan.tasks}
    keys = [k for k, v in here.items() if v == v and k in reused["auto0_seconds"]]
    there = sum(reused["auto0_seconds"][k] for k in keys)
    return sum(here[k] for k in keys) / there if keys and there > 0 else 1.0


def summarize(task: Task, rows: list[dict[str, Any]], plan: Plan, reused: dict[str, Any] | None = None,
              scale: float = 1.0) -> dict[str, Any]:
    """Mean (and std) over seeds per strategy (or ``reused``: a task of an earlier JSON, its seconds times
    ``scale``); auto's mean per budget against the best mean."""
    ok = [r for r in rows if "error" not in r]
    if reused is None:
        by = {n: sorted((r for r in ok if r["strategy"] == n), key=lambda r: r["seed"]) for n in plan.strategies}
        acc = {n: mean_of([r["accuracy"] for r in v]) for n, v in by.items() if v}
        std = {n: float(np.std([r["accuracy"] for r in by[n]])) for n in acc}
        secs = {n: mean_of([r["train_seconds"] for r in by[n]]) for n in acc}
        per_seed = {n: {str(r["seed"]): r["accuracy"] for r in by[n]} for n in acc}
        cpu = {n: mean_of([r["cpu_seconds"] for r in by[n]]) for n in acc if all("cpu_seconds" in r for r in by[n])}
    else:
        acc, std = dict(reused["accuracy"]), dict(reused["std"])
        secs = {n: v * scale for n, v in reused["seconds"].items()}
        per_seed, cpu = {}, {}
    best = max(acc, key=lambda n: acc[n])
    total = sum(secs.values())
    autos = {}
    for b in plan.auto_budgets:
        cell = sorted((r for r in ok if r["strategy"] == "auto" and r["budget"] == b), key=lambda r: r["seed"])
        if not cell:
            continue
        a, s = mean_of([r["accuracy"] for r in cell]), mean_of([r["train_seconds"] for r in cell])
        autos[f"{b:g}"] = {"choice": [r["auto"]["choice"] for r in cell], "accuracy": a, "regret": acc[best] - a,
                           "per_seed": [r["accuracy"] for r in cell], "seconds": s,
                           **paired_regret(per_seed.get(best, {}), cell),
                           **({"cpu_seconds": mean_of([r["cpu_seconds"] for r in cell])}
                              if all("cpu_seconds" in r for r in cell) else {}),
                           "candidates": [r["auto"].get("candidates") for r in cell],
                           "time_ratio": s / total if total else float("nan"),
                           "decision_seconds": mean_of([r["auto"]["decision_seconds"] for r in cell]),
                           "reasons": [r["auto"]["reason"] for r in cell],
                           "signals": [r["auto"]["signals"] for r in cell],
                           "search": [r["auto"].get("search") for r in cell]}
    transfer_only = {n: a for n, a in acc.items() if n != "scratch"}
    return {"task": asdict(task), "key": task.key, "seeds": sorted({r["seed"] for r in ok}), "accuracy": acc,
            "std": std, "seconds": secs, "best": best, "best_accuracy": acc[best], "all_seconds": total,
            "scratch_accuracy": acc.get("scratch"), "lp_ft_accuracy": acc.get("lp_ft"),
            "best_transfer": max(transfer_only, key=lambda n: transfer_only[n]) if transfer_only else None,
            "auto": autos, "errors": len(rows) - len(ok) + (reused or {}).get("errors", 0),
            **({"per_seed": per_seed} if per_seed else {}), **({"cpu_seconds": cpu} if cpu else {}),
            **({"n_test": int(ok[0]["n_test"])} if ok and "n_test" in ok[0] else {})}


def paired_regret(best: dict[str, float], cell: list[dict[str, Any]]) -> dict[str, Any]:
    """The best strategy's accuracy minus auto's, paired by seed: per seed, and its standard error
    ``std(d, ddof=1) / sqrt(n)`` (empty when the best strategy's seeds are not auto's)."""
    d = [best[str(r["seed"])] - r["accuracy"] for r in cell if str(r["seed"]) in best]
    if not d or len(d) != len(cell):
        return {}
    se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return {"regret_per_seed": d, "regret_se": se}


def checks_of(tasks: list[dict[str, Any]], tau: dict[str, Any], budgets: list[float],
              negative: bool = True) -> list[Check]:
    """The suite's criteria; ``negative``: the suite must hold a task where transfer hurts (the image part)."""
    checks = []
    groups = {"all tasks": tasks, **{f"{g} tasks": [t for t in tasks if t["task"]["group"] == g]
                                     for g in ("design", "holdout")}}
    for b in budgets:
        key = f"{b:g}"
        for gname, group in groups.items():
            cells = [t for t in group if key in t["auto"]]
            if not cells:
                continue
            within = sum(c["auto"][key]["regret"] <= REGRET_TOL + 1e-9 for c in cells)
            frac = within / len(cells)
            checks.append(Check(f"auto(budget={key}) within 1 pt of the best strategy's mean, {gname}",
                                f"{within}/{len(cells)} tasks ({100 * frac:.0f}%)",
                                f">= {100 * WITHIN_TARGET:.0f}% of tasks",
                                frac >= WITHIN_TARGET))
        cells = [t for t in tasks if key in t["auto"]]
        a_sec = sum(c["auto"][key]["seconds"] for c in cells)
        all_sec = sum(c["all_seconds"] for c in cells)
        ratio = a_sec / all_sec if all_sec else float("nan")
        checks.append(Check(f"auto(budget={key}) total time / every strategy's total, all tasks", f"{ratio:.3f} "
                            f"({a_sec:.0f} s / {all_sec:.0f} s, means over seeds)", f"<= {TIME_TARGET:.2f}",
                            ratio <= TIME_TARGET))
    for t in (t for t in tasks if t["task"]["negative"]):
        below = sorted(n for n, a in t["accuracy"].items() if n != "scratch" and t["scratch_accuracy"] - a > REGRET_TOL)
        checks.append(Check(f"{t['key']}: transfer hurts (scratch beats full or lp_ft by > 1 pt)",
                            f"scratch {pct(t['scratch_accuracy'])}%, full {pct(t['accuracy'].get('full'))}%, lp_ft "
                            f"{pct(t['lp_ft_accuracy'])}%; best {t['best']} {pct(t['best_accuracy'])}%",
                            "reported (the suite-level check below needs one)", True))
        if below:
            checks[-1].value += f"; below scratch: {', '.join(below)}"
        for key, a in t["auto"].items():
            checks.append(Check(f"{t['key']}: auto(budget={key}) avoids the loss", f"chose {'/'.join(a['choice'])}, "
                                f"{pct(a['accuracy'])}% vs scratch {pct(t['scratch_accuracy'])}%",
                                "auto >= scratch - 1 pt", a["accuracy"] >= t["scratch_accuracy"] - REGRET_TOL))
    hurt = [t["key"] for t in tasks if t["scratch_accuracy"] is not None and t["scratch_accuracy"] - min(
        t["accuracy"].get("full", 1.0), t["accuracy"].get("lp_ft", 1.0)) > REGRET_TOL]
    if negative:
        checks.append(Check("the suite holds a task where transfer hurts (scratch beats full or lp_ft by > 1 pt)",
                        ", ".join(hurt) or "none", ">= 1 task", bool(hurt)))
    if tau:
        names = list(next(iter(tau.values()))["tau"])
        means = {k: mean_of([v["tau"][k] for v in tau.values() if v["tau"][k] == v["tau"][k]]) for k in names}
        best = max(means, key=lambda k: means[k] if means[k] == means[k] else -9)
        checks.append(Check("Kendall tau (mean over targets) of the best score, vs published 0.5-0.8 on ImageNet",
                            f"{best} {means[best]:+.2f}; " + ", ".join(f"{k} {v:+.2f}" for k, v in means.items()),
                            "reported; >= 0.5 is 'in the published range'", means[best] >= 0.5))
    return checks


__all__ = ["REGRET_TOL", "TIME_TARGET", "WITHIN_TARGET", "checks_of", "paired_regret", "summarize", "time_scale"]
