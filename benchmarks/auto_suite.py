"""The ``auto`` task suite: every strategy on >= 8 real transfer tasks, then ``auto`` against hindsight.

    python benchmarks/auto_suite.py            # full run (about 30 minutes on 2 shared CPU cores)
    python benchmarks/auto_suite.py --quick    # smoke run (a few minutes): 3 tasks, 4 strategies

Writes ``docs/AUTO_SUITE.md`` and ``docs/auto_suite.json`` (``runs/suite-quick/`` with ``--quick``);
never edit them by hand. Source models are pretrained once into ``runs/suite/`` and reused when
complete. Each task is (source, target, shots): every registered strategy except ``auto`` is run
(the exhaustive results, giving the best strategy in hindsight), then ``auto`` with ``budget=0``
(rules only) and with a small successive-halving budget. Every run gets a fresh feature cache, so
no strategy (and no ``auto`` decision) is timed on features computed by an earlier run. Regret is
the best accuracy minus ``auto``'s; the time ratio is ``auto``'s train seconds (its decision
included) over the sum of every strategy's. Transferability scores (``transferkit.rank``) are
correlated (Kendall tau) with the ``lp_ft`` accuracy each source reaches on digits8 and fontdigits.

The unrelated source is ``small_cnn`` trained on mnist5k images under one fixed random pixel
permutation: a well-trained model (high accuracy on its own permuted data) whose filters and
features are tuned to spatially scrambled inputs, so on normal digit images they carry little of
the target's structure; its task (unrelated -> digits8) is the negative-transfer case.
"""

from __future__ import annotations

import os

os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse
import datetime
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import Check, log, machine_info

import transferkit
from transferkit.data import load_dataset
from transferkit.engine.features import FeatureCache
from transferkit.runs import load_run
from transferkit.strategies import STRATEGIES
from transferkit.transferability import DEFAULT_SCORES

ROOT = Path(__file__).resolve().parent.parent
SOURCES_DIR = ROOT / "runs" / "suite"
REGRET_TOL, WITHIN_TARGET, TIME_TARGET = 0.01, 0.80, 0.30


@dataclass(frozen=True)
class Source:
    """A source model: ``small_cnn`` pretrained on ``data`` (a built-in name or a derived .npz)."""

    name: str
    data: str
    epochs: int
    derive: str | None = None  # "permute" or "shuffle_labels": a .npz derived from mnist5k


@dataclass(frozen=True)
class Task:
    source: str
    target: str
    shots: int | None
    negative: bool = False  # the source is unrelated: transfer is expected to hurt

    @property
    def key(self) -> str:
        return f"{self.source}->{self.target}@{'all' if self.shots is None else self.shots}"


@dataclass(frozen=True)
class Plan:
    sources: list[Source]
    tasks: list[Task]
    strategies: list[str]
    seeds: list[int]
    epochs: int  # maximum epochs per phase of every transfer run (early stopping may end sooner)
    auto_budgets: list[float]
    tau_targets: list[str]
    tau_shots: int
    tau_strategy: str = "lp_ft"


ALL_STRATEGIES = [n for n in STRATEGIES if n != "auto"]
SOURCES = [Source("mnist5k", "mnist5k", 5), Source("fontdigits", "fontdigits", 5), Source("digits8", "digits8", 5),
           Source("unrelated", "permuted-mnist5k.npz", 5, "permute"),
           Source("shuffled", "shuffled-mnist5k.npz", 5, "shuffle_labels"), Source("mnist5k-1ep", "mnist5k", 1)]
FULL = Plan(
    sources=SOURCES,
    tasks=[Task("mnist5k", "digits8", 1), Task("mnist5k", "digits8", 5), Task("mnist5k", "digits8", 20),
           Task("mnist5k", "digits8", None), Task("fontdigits", "digits8", 5), Task("mnist5k", "fontdigits", 5),
           Task("digits8", "fontdigits", 10), Task("unrelated", "digits8", 10, negative=True),
           Task("shuffled", "fontdigits", 10, negative=True)],
    strategies=ALL_STRATEGIES, seeds=[0], epochs=20, auto_budgets=[0.0, 20.0],
    tau_targets=["digits8", "fontdigits"], tau_shots=10)
QUICK = Plan(
    sources=SOURCES[:4],
    tasks=[Task("mnist5k", "digits8", 5), Task("digits8", "fontdigits", 10), Task("unrelated", "digits8", 10, True)],
    strategies=["scratch", "linear_probe", "lp_ft", "full"], seeds=[0], epochs=6, auto_budgets=[0.0],
    tau_targets=["digits8"], tau_shots=10)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke mode: 3 tasks, 4 strategies, short training")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for AUTO_SUITE.md and auto_suite.json (default: docs; runs/suite-quick with --quick)")
    p.add_argument("--resume", action="store_true",
                   help="reuse task results saved under <sources>/tasks-<mode>/ by an earlier run of the same plan")
    p.add_argument("--sources", type=Path, default=SOURCES_DIR, help="where source models are pretrained and reused")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = ROOT / ("runs/suite-quick" if args.quick else "docs")
    return args


# --------------------------------------------------------------------------- sources


def derived_npz(kind: str, folder: Path) -> Path:
    """mnist5k with one fixed random pixel permutation, or with labels shuffled (seed 1234)."""
    path = folder / ("permuted-mnist5k.npz" if kind == "permute" else "shuffled-mnist5k.npz")
    if path.exists():
        return path
    ds = load_dataset("mnist5k")
    x = ds.x.reshape(len(ds.x), -1).copy()
    y = ds.require_labels().copy()
    rng = np.random.default_rng(1234)
    if kind == "permute":
        x = x[:, rng.permutation(x.shape[1])]
    else:
        y = rng.permutation(y)
    side = int(round(x.shape[1] ** 0.5))
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=(x.reshape(-1, side, side) * 255).round().astype(np.uint8), y=y,
             class_names=np.array(ds.class_names))
    return path


def ensure_sources(plan: Plan, folder: Path) -> dict[str, dict[str, Any]]:
    """Pretrain every source once into ``folder`` (a complete earlier run is reused)."""
    out = {}
    for s in plan.sources:
        run_dir = folder / f"{s.name}-e{s.epochs}"
        data = str(derived_npz(s.derive, folder)) if s.derive else s.data
        if not (run_dir / "metrics.json").exists():
            log(f"pretraining {s.name} on {Path(data).name} ({s.epochs} epochs)")
            t0 = time.perf_counter()
            transferkit.pretrain(data, out=run_dir, epochs=s.epochs, seed=0, progress="off", overwrite=True)
            log(f"  done in {time.perf_counter() - t0:.0f} s")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        out[s.name] = {"run": str(run_dir.relative_to(ROOT)) if run_dir.is_relative_to(ROOT) else str(run_dir),
                       "data": Path(data).name, "derive": s.derive, "epochs": s.epochs,
                       "source_test_accuracy": metrics["source"]["accuracy"],
                       "train_seconds": metrics.get("train_seconds")}
        log(f"  source {s.name}: own test accuracy {out[s.name]['source_test_accuracy']:.3f}")
    return out


# --------------------------------------------------------------------------- runs


def one_run(src_dir: Path, task: Task, strategy: str, seed: int, epochs: int,
            options: dict[str, str] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        res = transferkit.transfer(load_run(src_dir), task.target, strategy=strategy, shots=task.shots, seed=seed,
                                   options=options, cache=FeatureCache(), epochs=epochs, progress="off")
    except Exception as e:  # recorded and reported; the other runs still go
        return {"strategy": strategy, "seed": seed, "options": options, "error": f"{type(e).__name__}: {e}"}
    m = res.metrics
    row = {"strategy": strategy, "seed": seed, "options": options, "accuracy": m["target"]["accuracy"],
           "train_seconds": m["train_seconds"], "wall_seconds": time.perf_counter() - t0}
    if "auto" in m.get("strategy_info", {}):
        info = m["strategy_info"]["auto"]
        row["auto"] = {k: info.get(k) for k in ("choice", "reason", "candidates", "decision_seconds", "signals",
                                                  "halving")}
    return row


def _pct(v: float | None) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}%"


def _mean(v: list[float]) -> float:
    return float(sum(v) / len(v)) if v else float("nan")


def run_task(task: Task, dirs: dict[str, Path], plan: Plan) -> dict[str, Any]:
    rows = []
    for seed in plan.seeds:
        for name in plan.strategies:
            r = one_run(dirs[task.source], task, name, seed, plan.epochs)
            rows.append(r)
            log(f"    {task.key} seed {seed} {name}: " + (r["error"] if "error" in r else
                f"acc {r['accuracy']:.3f} ({r['train_seconds']:.1f} s)"))
        for b in plan.auto_budgets:
            r = one_run(dirs[task.source], task, "auto", seed, plan.epochs, {"budget": str(b)})
            r["budget"] = b
            rows.append(r)
            log(f"    {task.key} seed {seed} auto(budget={b:g}): " + (r["error"] if "error" in r else
                f"chose {r['auto']['choice']} acc {r['accuracy']:.3f} ({r['train_seconds']:.1f} s)"))
    return {"task": asdict(task), "key": task.key, "runs": rows, "summary": summarize_task(rows, plan)}


def summarize_task(rows: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
    ok = [r for r in rows if "error" not in r]
    acc = {n: _mean([r["accuracy"] for r in ok if r["strategy"] == n]) for n in plan.strategies}
    secs = {n: _mean([r["train_seconds"] for r in ok if r["strategy"] == n]) for n in plan.strategies}
    acc = {n: a for n, a in acc.items() if a == a}
    best = max(acc, key=lambda n: acc[n])
    total = sum(s for s in secs.values() if s == s)
    autos = {}
    for b in plan.auto_budgets:
        cell = [r for r in ok if r["strategy"] == "auto" and r.get("budget") == b]
        if not cell:
            continue
        a = _mean([r["accuracy"] for r in cell])
        s = _mean([r["train_seconds"] for r in cell])
        autos[f"{b:g}"] = {"choice": [r["auto"]["choice"] for r in cell], "accuracy": a, "regret": acc[best] - a,
                           "seconds": s, "time_ratio": s / total if total else float("nan"),
                           "decision_seconds": _mean([r["auto"]["decision_seconds"] for r in cell]),
                           "reason": cell[0]["auto"]["reason"], "signals": cell[0]["auto"]["signals"]}
    transfer_only = {n: a for n, a in acc.items() if n != "scratch"}
    return {"accuracy": acc, "seconds": secs, "best": best, "best_accuracy": acc[best], "all_seconds": total,
            "scratch_accuracy": acc.get("scratch"), "lp_ft_accuracy": acc.get("lp_ft"),
            "best_transfer": max(transfer_only, key=lambda n: transfer_only[n]) if transfer_only else None,
            "mean_transfer_accuracy": _mean(list(transfer_only.values())), "auto": autos,
            "errors": len(rows) - len(ok)}


def finite_taus(ranked: Any, acc: dict[str, float]) -> dict[str, float]:
    """Kendall tau per score over the candidates whose score is finite (NaN with fewer than 3).

    ``RankResult.kendall_taus`` raises on a NaN score (PARC and SFDA give NaN on a source whose
    features collapsed to a constant), which would lose the whole suite.
    """
    from transferkit.transferability import kendall_tau

    out = {}
    for s in ranked.score_names:
        pairs = [(c.scores[s] if ranked.higher_is_better[s] else -c.scores[s], acc[c.name]) for c in ranked.candidates]
        pairs = [(v, a) for v, a in pairs if np.isfinite(v)]
        out[s] = kendall_tau([v for v, _ in pairs], [a for _, a in pairs]) if len(pairs) >= 3 else float("nan")
    return out


def run_tau(plan: Plan, dirs: dict[str, Path], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Per target: rank every source with every score, fine-tune each with ``tau_strategy``, Kendall tau."""
    out: dict[str, Any] = {}
    names = [s.name for s in plan.sources]
    for target in plan.tau_targets:
        probe = Task(names[0], target, plan.tau_shots)
        log(f"[tau] ranking {len(names)} sources on {target} ({plan.tau_shots} shots)")
        t0 = time.perf_counter()
        ranked = transferkit.rank([load_run(dirs[n]) for n in names], target, shots=plan.tau_shots, seed=0,
                                  names=names, scores=(*DEFAULT_SCORES, "gbc"))
        rank_seconds = time.perf_counter() - t0
        acc: dict[str, float] = {}
        for n in names:
            done = [r for t in tasks if t["task"]["source"] == n and t["task"]["target"] == target
                    and t["task"]["shots"] == plan.tau_shots for r in t["runs"]
                    if r["strategy"] == plan.tau_strategy and "error" not in r]
            if done:
                acc[n] = _mean([r["accuracy"] for r in done])
            else:
                rows = [one_run(dirs[n], Task(n, target, probe.shots), plan.tau_strategy, s, plan.epochs)
                        for s in plan.seeds]
                acc[n] = _mean([r["accuracy"] for r in rows if "error" not in r])
            log(f"    {n} -> {target}: {plan.tau_strategy} acc {acc[n]:.3f}")
        taus = finite_taus(ranked, acc)
        scores = {c.name: {k: float(v) for k, v in c.scores.items()} for c in ranked.candidates}
        out[target] = {"accuracy": acc, "scores": scores, "tau": taus, "rank_seconds": rank_seconds,
                       "ranking_mean": ranked.ranking()}
        log("    tau: " + ", ".join(f"{k} {v:+.2f}" for k, v in taus.items()))
    return out


# --------------------------------------------------------------------------- checks


def checks_of(tasks: list[dict[str, Any]], tau: dict[str, Any], budgets: list[float]) -> list[Check]:
    checks = []
    for b in budgets:
        key = f"{b:g}"
        cells = [t["summary"] for t in tasks if key in t["summary"]["auto"]]
        within = sum(c["auto"][key]["regret"] <= REGRET_TOL + 1e-9 for c in cells)
        frac = within / len(cells) if cells else 0.0
        checks.append(Check(f"auto(budget={key}) within 1 pt of the best strategy", f"{within}/{len(cells)} tasks "
                            f"({100 * frac:.0f}%)", f">= {100 * WITHIN_TARGET:.0f}% of tasks", frac >= WITHIN_TARGET))
        a_sec = sum(c["auto"][key]["seconds"] for c in cells)
        all_sec = sum(c["all_seconds"] for c in cells)
        ratio = a_sec / all_sec if all_sec else float("nan")
        checks.append(Check(f"auto(budget={key}) total time / every strategy's total", f"{ratio:.3f} "
                            f"({a_sec:.0f} s / {all_sec:.0f} s)", f"<= {TIME_TARGET:.2f}", ratio <= TIME_TARGET))
    neg = [t for t in tasks if t["task"]["negative"]]
    for t in neg:
        s = t["summary"]
        below = sorted(n for n, a in s["accuracy"].items() if n != "scratch" and s["scratch_accuracy"] - a > REGRET_TOL)
        hurts = "full" in below or "lp_ft" in below
        checks.append(Check(f"{t['key']}: transfer hurts (scratch beats full fine-tuning or the default lp_ft by > 1 pt)",
                            f"scratch {_pct(s['scratch_accuracy'])}, full {_pct(s['accuracy'].get('full'))}, lp_ft "
                            f"{_pct(s['lp_ft_accuracy'])}; below scratch: {', '.join(below) or 'none'}; best "
                            f"{s['best']} {_pct(s['best_accuracy'])}", "scratch - (full or lp_ft) > 1 pt", hurts))
        for key, a in s["auto"].items():
            checks.append(Check(f"{t['key']}: auto(budget={key}) avoids the loss", f"chose {a['choice'][0]}, "
                                f"acc {a['accuracy']:.3f} vs scratch {s['scratch_accuracy']:.3f}",
                                "auto >= scratch - 1 pt", a["accuracy"] >= s["scratch_accuracy"] - REGRET_TOL))
    if tau:
        score_names = list(next(iter(tau.values()))["tau"])
        means = {k: _mean([v["tau"][k] for v in tau.values() if v["tau"][k] == v["tau"][k]]) for k in score_names}
        best = max(means, key=lambda k: means[k] if means[k] == means[k] else -9)
        checks.append(Check("Kendall tau (mean over targets) of the best score, vs published 0.5-0.8 on ImageNet",
                            f"{best} {means[best]:+.2f}; " + ", ".join(f"{k} {v:+.2f}" for k, v in means.items()),
                            "reported; >= 0.5 is 'in the published range'", means[best] >= 0.5))
    return checks


def main(argv: list[str] | None = None) -> int:
    from bench_suite_report import render

    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    command = "python " + shlex.join([os.path.relpath(sys.argv[0], ROOT), *(sys.argv[1:] if argv is None else argv)])
    meta: dict[str, Any] = {"command": command, "mode": "quick" if args.quick else "full",
                            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                            "transferkit": transferkit.__version__, "plan": asdict(plan)}
    machine = machine_info()
    log(f"{meta['mode']} auto suite: {len(plan.tasks)} tasks x {len(plan.strategies)} strategies + auto, "
        f"{machine['torch_threads']} threads")
    sources = ensure_sources(plan, args.sources)
    dirs = {n: ROOT / v["run"] if not Path(v["run"]).is_absolute() else Path(v["run"]) for n, v in sources.items()}
    tasks = []
    for i, task in enumerate(plan.tasks, 1):
        saved = args.sources / f"tasks-{meta['mode']}" / f"{task.key.replace('->', '_to_')}.json"
        if args.resume and saved.exists():
            log(f"[task {i}/{len(plan.tasks)}] {task.key}: reusing {saved}")
            tasks.append(json.loads(saved.read_text()))
            continue
        log(f"[task {i}/{len(plan.tasks)}] {task.key}")
        tasks.append(run_task(task, dirs, plan))
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(tasks[-1], indent=1, default=float) + "\n")
    tau = run_tau(plan, dirs, tasks)
    checks = checks_of(tasks, tau, plan.auto_budgets)
    machine["load_average_end"] = os.getloadavg()
    meta["total_seconds"] = time.perf_counter() - started
    doc = {"meta": meta, "machine": machine, "sources": sources, "checks": [c.as_dict() for c in checks],
           "tasks": tasks, "tau": tau}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "auto_suite.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    (args.out / "AUTO_SUITE.md").write_text(render(doc))
    for c in checks:
        log(f"{'PASS' if c.passed else 'FAIL'}  {c.name}: {c.value} (target {c.target})")
    log(f"wrote {args.out / 'AUTO_SUITE.md'} and auto_suite.json in {meta['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
