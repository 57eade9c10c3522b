"""The ``auto`` task suite: every strategy on real transfer tasks over 3 seeds, then ``auto`` against hindsight.

    python benchmarks/auto_suite.py --jobs 2     # full run (about 40 minutes on 2 shared CPU cores)
    python benchmarks/auto_suite.py --quick      # smoke run (a few minutes): 3 tasks, 4 strategies, 1 seed
    python benchmarks/auto_suite.py --render-only  # rewrite docs/AUTO_SUITE.md from docs/auto_suite.json
    python benchmarks/auto_suite.py --part text    # the MiniLM text tasks (about an hour on 1 busy core)

Writes ``docs/AUTO_SUITE.md`` and ``docs/auto_suite.json`` (``runs/suite-quick/`` with ``--quick``);
never edit them by hand. This script measures; ``auto_suite_summary.py`` summarises the runs and checks the
criteria; ``auto_suite_report.py`` renders the page from the JSON.
Source models are pretrained once into ``runs/suite/`` and reused. Every finished run is appended to
``runs/suite/results-<mode>.jsonl`` and an interrupted suite resumes from it (``--fresh`` starts over);
``auto`` rows are reused only while ``strategies/auto.py`` is unchanged (its hash is stored with each row).

``--exhaustive-from docs/auto_suite.json`` reuses the every-strategy results (mean, std and train
seconds per task and strategy) and the transferability table of an earlier JSON instead of
recomputing them: only the source models (pretrained again when missing) and ``auto`` run. The
plan's tasks, strategies, seeds and epochs must match the JSON's; the report names the JSON's date
and command and shows both sets of source accuracies. The reused seconds are rescaled to this run's
clock by auto(budget=0)'s seconds here over there (``auto_suite_summary.time_scale``), a rough correction
only: the load of a shared machine differs between the stages (on 2026-11-28 the rescaled budget-15 time
ratio was 0.28 where a full run measured 0.15). Use it only when the
exhaustive stage cannot be afforded: pretraining is not bit-exact across runs and the machine's load
differs, and on this suite that moved auto(0)'s mean accuracy by about a point on some tasks -- the
size of the 1-pt criterion -- so a full run (the exhaustive stage and auto on one set of sources)
is the reference.

Each task is (source, target, shots). Every strategy runs with each seed (the seed draws the
split, the shots and the initialisation) and its *mean* test accuracy over the seeds is its
score: "best in hindsight" is the best mean. ``auto`` runs once per seed and budget on the same
splits; its regret is the best mean minus auto's mean. Time ratio: auto's mean train seconds (its
decision included) over the sum of every strategy's mean train seconds. Every run gets a fresh
feature cache, so no run is timed on features computed by another.

Tasks come in two groups. ``design``: the digit tasks whose exhaustive results were looked at
while the decision rules of ``auto`` were written. ``holdout``: tasks nobody looked at before
the rules were fixed (spoken digits across espeak-ng voices with ``audio_cnn``, and digit tasks on
mnist5k as the target); they are reported separately. The unrelated sources: ``unrelated`` is
``small_cnn`` trained on mnist5k under one fixed random pixel permutation, ``shuffled`` is
trained on mnist5k with shuffled labels (its features collapse: transfer hurts).

``--part text`` runs the text tasks (the registered ``minilm`` backbone on vader-movies and sms-spam at 8
labelled texts per class, 3 seeds, every strategy a text user would weigh and ``auto``, each with the
CLI's settings) into ``runs/suite/results-text.jsonl`` (resumed the same way) and writes them as the
``"text"`` part of the same JSON and page; the stored image part is kept as it is, and the page says
whether it predates the current auto.py and what the current rules decide on its recorded signals
(``auto_suite_report.replay_rules``). ``--part image`` likewise keeps a stored text part.

Every image run passes the plan's ``augment`` ("off"): the suite was measured before small_cnn's lp_ft/full
recipe turned image augmentation on (docs/AUGMENT.md), and the page says so in a generated sentence.
"""

from __future__ import annotations

import os

os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import copy
import datetime
import json
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from auto_suite_report import auto_version, render
from auto_suite_summary import checks_of, summarize, time_scale
from bench_common import Check, log, machine_info

import transferkit
from transferkit.data import load_dataset
from transferkit.engine.features import FeatureCache
from transferkit.runs import load_run
from transferkit.spec import SplitSpec
from transferkit.strategies import STRATEGIES
from transferkit.transferability import DEFAULT_SCORES

ROOT = Path(__file__).resolve().parent.parent
SOURCES_DIR = ROOT / "runs" / "suite"


@dataclass(frozen=True)
class Source:
    """A source model: ``model`` pretrained on ``data`` (a built-in name or a derived .npz)."""

    name: str
    data: str
    epochs: int
    derive: str | None = None  # "permute" or "shuffle_labels": a .npz derived from mnist5k
    model: str = "small_cnn"
    backbone: bool = False  # a registered pretrained backbone (``model``): nothing is pretrained here


@dataclass(frozen=True)
class Task:
    source: str
    target: str
    shots: int | None
    negative: bool = False  # the source is unrelated: transfer is expected to hurt
    group: str = "design"  # design (looked at while writing auto's rules) or holdout
    epochs: int | None = None  # a cap below the plan's for the larger tasks
    test: float | None = None  # the split's test fraction (None: the library's); text tasks score fewer texts

    @property
    def key(self) -> str:
        return f"{self.source}->{self.target}@{'all' if self.shots is None else self.shots}"


@dataclass(frozen=True)
class Plan:
    sources: list[Source]
    tasks: list[Task]
    strategies: list[str]
    seeds: list[int]
    epochs: int | None  # maximum epochs per phase of every run (None: the CLI's, i.e. the backbone's recipe)
    auto_budgets: list[float]
    tau_targets: list[str]
    tau_shots: int
    tau_strategy: str = "lp_ft"
    tau_seeds: tuple[int, ...] = (0,)
    augment: str = "off"  # every run's TrainConfig.augment (a JSON without it ran before the setting existed: off)


# strategies that make sense for every backbone (lora / bitfit / zs_init target transformers or text priors) and
# learn from the labels alone (self_train also reads unlabelled data, which the suite's tasks do not give auto)
ALL_STRATEGIES = [n for n in STRATEGIES if n not in ("auto", "lora", "bitfit", "zs_init", "self_train")]
SOURCES = [Source("mnist5k", "mnist5k", 5), Source("fontdigits", "fontdigits", 5), Source("digits8", "digits8", 5),
           Source("unrelated", "permuted-mnist5k.npz", 5, "permute"),
           Source("shuffled", "shuffled-mnist5k.npz", 5, "shuffle_labels"), Source("mnist5k-1ep", "mnist5k", 1),
           Source("voicesA", "spoken-digits:voices=A", 12, model="audio_cnn")]
H = "holdout"
FULL = Plan(
    sources=SOURCES,
    tasks=[Task("mnist5k", "digits8", 1), Task("mnist5k", "digits8", 5), Task("mnist5k", "digits8", 20, epochs=12),
           Task("mnist5k", "digits8", None, epochs=8), Task("fontdigits", "digits8", 5),
           Task("mnist5k", "fontdigits", 5), Task("digits8", "fontdigits", 10),
           Task("unrelated", "digits8", 10, negative=True), Task("shuffled", "fontdigits", 10, negative=True),
           Task("voicesA", "spoken-digits:voices=B", 5, group=H), Task("voicesA", "spoken-digits:voices=C", 2, group=H),
           Task("fontdigits", "mnist5k", 10, group=H)],
    strategies=ALL_STRATEGIES, seeds=[0, 1, 2], epochs=20, auto_budgets=[0.0, 15.0],
    tau_targets=["digits8", "fontdigits"], tau_shots=10)
QUICK = Plan(
    sources=SOURCES[:4],
    tasks=[Task("mnist5k", "digits8", 5), Task("digits8", "fontdigits", 10), Task("unrelated", "digits8", 10, True)],
    strategies=["scratch", "linear_probe", "lp_ft", "full"], seeds=[0], epochs=6, auto_budgets=[0.0],
    tau_targets=["digits8"], tau_shots=10)
# Text: the pretrained MiniLM encoder on two few-label tasks, every strategy a text user would weigh at 8 labels per
# class (auto's candidates at these shots, the frozen-feature probe and the zero-shot-initialised zs_init), each
# with the CLI's settings (no epochs passed: the backbone's recipe where one is measured, else the library's).
# The test fraction keeps about 500 movie snippets (benchmarks/text.py scores 500) and about 480 SMS per seed.
TEXT_STRATEGIES = ["contrastive", "full", "l2sp", "linear_probe", "lp_ft", "zs_init"]
TEXT = Plan(
    sources=[Source("minilm", "minilm", 0, model="minilm", backbone=True)],
    tasks=[Task("minilm", "vader-movies", 8, group="text", test=0.05),
           Task("minilm", "sms-spam", 8, group="text", test=0.1)],
    strategies=TEXT_STRATEGIES, seeds=[0, 1, 2], epochs=None, auto_budgets=[0.0], tau_targets=[], tau_shots=0,
    augment="auto")
PLANS = {"image": FULL, "text": TEXT}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke mode: 3 tasks, 4 strategies, 1 seed, short training")
    p.add_argument("--part", choices=sorted(PLANS), default="image",
                   help="image: the image/audio suite; text: the MiniLM tasks, written into the same JSON and page "
                        "beside the stored image part")
    p.add_argument("--seeds", default=None, help="comma-separated seeds instead of the plan's (a pilot; with "
                                                 "--stage exhaustive)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for AUTO_SUITE.md and auto_suite.json (default: docs; runs/suite-quick with --quick)")
    p.add_argument("--fresh", action="store_true", help="ignore the results file of an earlier run and start over")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (each with 1 torch thread)")
    p.add_argument("--stage", choices=("all", "exhaustive"), default="all",
                   help="exhaustive: only the every-strategy runs (no auto, no report)")
    p.add_argument("--sources", type=Path, default=SOURCES_DIR, help="where source models are pretrained and reused")
    p.add_argument("--exhaustive-from", type=Path, default=None, metavar="JSON",
                   help="reuse the every-strategy results and the tau table of an earlier auto_suite.json; "
                        "run auto only")
    p.add_argument("--render-only", action="store_true", help="run nothing; rewrite AUTO_SUITE.md from auto_suite.json")
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
    side = round(x.shape[1] ** 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=(x.reshape(-1, side, side) * 255).round().astype(np.uint8), y=y,
             class_names=np.array(ds.class_names))
    return path


def ensure_sources(plan: Plan, folder: Path) -> dict[str, dict[str, Any]]:
    """Pretrain every source once into ``folder`` (a complete earlier run is reused)."""
    out = {}
    for s in plan.sources:
        if s.backbone:  # transferred from the registered pretrained weights as a user's --source NAME is
            out[s.name] = {"run": s.model, "backbone": True, "data": "-", "derive": None, "epochs": 0,
                           "model": s.model, "source_test_accuracy": None, "train_seconds": None}
            continue
        run_dir = folder / f"{s.name}-e{s.epochs}"
        data = str(derived_npz(s.derive, folder)) if s.derive else s.data
        if not (run_dir / "metrics.json").exists():
            log(f"pretraining {s.model} on {Path(data).name} ({s.epochs} epochs)")
            transferkit.pretrain(data, s.model, out=run_dir, epochs=s.epochs, seed=0, progress="off", overwrite=True)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        out[s.name] = {"run": str(run_dir.relative_to(ROOT)) if run_dir.is_relative_to(ROOT) else str(run_dir),
                       "data": Path(data).name, "derive": s.derive, "epochs": s.epochs, "model": s.model,
                       "source_test_accuracy": metrics["source"]["accuracy"],
                       "train_seconds": metrics.get("train_seconds")}
        log(f"  source {s.name}: own test accuracy {out[s.name]['source_test_accuracy']:.3f}")
    return out


# --------------------------------------------------------------------------- runs


def _init_worker() -> None:
    torch.set_num_threads(1)


_BACKBONES: dict[str, Any] = {}


def source_model(src: str) -> Any:
    """The source of a run: a copy of the registered backbone ``src`` (built once per process: loading MiniLM
    costs more than a probe on it) or the pretrained run in the folder ``src``."""
    from transferkit.models import MODELS, from_pretrained

    if src in MODELS and not Path(src).exists():
        if src not in _BACKBONES:
            _BACKBONES[src] = from_pretrained(src)
        return copy.deepcopy(_BACKBONES[src])
    return load_run(src)


def one_run(src_dir: str, target: str, shots: int | None, strategy: str, seed: int, epochs: int | None,
            options: dict[str, str] | None = None, augment: str = "off", test: float | None = None) -> dict[str, Any]:
    """One transfer run through the public API with a fresh feature cache; ``epochs=None`` and ``augment="auto"``
    leave the setting to the CLI's resolution (the backbone's recipe), ``test`` is the split's test fraction."""
    extra: dict[str, Any] = {} if epochs is None else {"epochs": epochs}
    if test is not None:
        extra["split"] = SplitSpec(test=test)
    try:
        source = source_model(src_dir)  # loaded before the clocks start: a worker builds a backbone once
        t0, c0 = time.perf_counter(), time.process_time()
        res = transferkit.transfer(source, target, strategy=strategy, shots=shots, seed=seed,
                                   options=options, cache=FeatureCache(), progress="off", augment=augment, **extra)
    except Exception as e:  # recorded and reported; the other runs still go
        return {"error": f"{type(e).__name__}: {e}"}
    m = res.metrics
    row = {"accuracy": m["target"]["accuracy"], "train_seconds": m["train_seconds"],
           "wall_seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
           "n_test": m["target"]["n"], "load_average": os.getloadavg(),
           "recipe": (m.get("strategy_info", {}).get("recipe") or {}).get("settings")}
    if "auto" in m.get("strategy_info", {}):
        info = m["strategy_info"]["auto"]
        row["auto"] = {k: info.get(k) for k in ("choice", "reason", "candidates", "decision_seconds", "signals",
                                                  "search")}
    return row


def task_epochs(task: Task, plan: Plan) -> int | None:
    """The task's epoch cap, else the plan's (None: the CLI's, the backbone's recipe)."""
    return task.epochs or plan.epochs


def row_key(task: str, seed: int, strategy: str, budget: float | None, epochs: int | None) -> str:
    return (f"{task}|seed={seed}|{strategy}|budget={'-' if budget is None else f'{budget:g}'}|"
            f"epochs={'recipe' if epochs is None else epochs}")


class Results:
    """The append-only results file: one JSON row per finished run, reused on resume."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        self.reused = 0
        if fresh and path.exists():
            path.rename(path.with_suffix(f".old-{int(time.time())}.jsonl"))
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    self.rows[r["key"]] = r

    def get(self, key: str, version: str | None) -> dict[str, Any] | None:
        r = self.rows.get(key)
        return r if r is not None and "error" not in r and r.get("auto_version") == version else None

    def add(self, row: dict[str, Any]) -> None:
        self.rows[row["key"]] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(row, default=float) + "\n")


def work_units(plan: Plan, stage: str, exhaustive: bool = True) -> list[tuple[Task, int, str, float | None]]:
    """Seed by seed (an interrupted suite has whole seeds done): each task's strategies, then its auto runs."""
    units: list[tuple[Task, int, str, float | None]] = []
    for s in plan.seeds:
        for t in plan.tasks:
            units += [(t, s, n, None) for n in plan.strategies] if exhaustive else []
            units += [(t, s, "auto", b) for b in plan.auto_budgets] if stage == "all" else []
    return units


def run_units(plan: Plan, dirs: dict[str, Path], res: Results, stage: str, jobs: int, exhaustive: bool = True) -> None:
    version = auto_version()
    todo = []
    for task, seed, name, budget in work_units(plan, stage, exhaustive):
        ep = task_epochs(task, plan)
        key = row_key(task.key, seed, name, budget, ep)
        if res.get(key, version if name == "auto" else None) is not None:
            res.reused += 1
            continue
        opts = None if budget is None else {"budget": f"{budget:g}"}
        todo.append((key, task, seed, name, budget, (str(dirs[task.source]), task.target, task.shots, name, seed, ep,
                                                         opts, plan.augment, task.test)))
    log(f"{len(todo)} runs to do, {res.reused} reused from {res.path}")

    def record(item: tuple[Any, ...], row: dict[str, Any], i: int) -> None:
        key, task, seed, name, budget, _ = item
        row.update(key=key, task=task.key, seed=seed, strategy=name, budget=budget,
                   auto_version=version if name == "auto" else None)
        res.add(row)
        what = row.get("error") or (f"acc {row['accuracy']:.3f} ({row['train_seconds']:.1f} s)"
                                    + (f" chose {row['auto']['choice']}" if "auto" in row else ""))
        log(f"  [{i}/{len(todo)}] {task.key} seed {seed} {name}{'' if budget is None else f'({budget:g})'}: {what}")

    if jobs <= 1:
        for i, item in enumerate(todo, 1):
            record(item, one_run(*item[-1]), i)
        return
    with ProcessPoolExecutor(jobs, initializer=_init_worker) as pool:
        futs = {pool.submit(one_run, *item[-1]): item for item in todo}
        for i, fut in enumerate(as_completed(futs), 1):
            record(futs[fut], fut.result(), i)


def finite_taus(ranked: Any, acc: dict[str, float]) -> dict[str, float]:
    """Kendall tau per score over the candidates whose score is finite (NaN with fewer than 3)."""
    from transferkit.transferability import kendall_tau

    out = {}
    for s in ranked.score_names:
        pairs = [(c.scores[s] if ranked.higher_is_better[s] else -c.scores[s], acc[c.name]) for c in ranked.candidates]
        pairs = [(v, a) for v, a in pairs if np.isfinite(v)]
        out[s] = kendall_tau([v for v, _ in pairs], [a for _, a in pairs]) if len(pairs) >= 3 else float("nan")
    return out


def run_tau(plan: Plan, dirs: dict[str, Path], res: Results) -> dict[str, Any]:
    """Per target: rank the digit sources with every score, fine-tune each with ``tau_strategy``, Kendall tau."""
    out: dict[str, Any] = {}
    names = [s.name for s in plan.sources if s.model == "small_cnn"]
    for target in plan.tau_targets:
        log(f"[tau] ranking {len(names)} sources on {target} ({plan.tau_shots} shots)")
        t0 = time.perf_counter()
        ranked = transferkit.rank([load_run(dirs[n]) for n in names], target, shots=plan.tau_shots, seed=0,
                                  names=names, scores=(*DEFAULT_SCORES, "gbc"))
        rank_seconds = time.perf_counter() - t0
        acc: dict[str, float] = {}
        for n in names:
            accs = []
            for seed in plan.tau_seeds:
                key = row_key(f"{n}->{target}@{plan.tau_shots}", seed, plan.tau_strategy, None, plan.epochs)
                row = res.get(key, None)
                if row is None:
                    row = one_run(str(dirs[n]), target, plan.tau_shots, plan.tau_strategy, seed, plan.epochs,
                                  augment=plan.augment)
                    row.update(key=key, task=key.split("|")[0], seed=seed, strategy=plan.tau_strategy, budget=None,
                               auto_version=None, tau_only=True)
                    res.add(row)
                accs.append(row.get("accuracy", float("nan")))
            acc[n] = float(np.mean(accs))
        taus = finite_taus(ranked, acc)
        scores = {c.name: {k: float(v) for k, v in c.scores.items()} for c in ranked.candidates}
        out[target] = {"accuracy": acc, "scores": scores, "tau": taus, "rank_seconds": rank_seconds,
                       "ranking_mean": ranked.ranking()}
        log("    tau: " + ", ".join(f"{k} {v:+.2f}" for k, v in taus.items()))
    return out


def load_exhaustive(path: Path, plan: Plan) -> dict[str, Any]:
    """The every-strategy results of an earlier ``auto_suite.json`` for ``plan``; SystemExit on a mismatch."""
    try:
        doc = json.loads(path.read_text())
        old_plan, tasks = doc["meta"]["plan"], {t["key"]: t for t in doc["tasks"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"--exhaustive-from {path}: not a readable auto_suite.json "
                         f"({type(e).__name__}: {e})") from None
    for k in ("strategies", "seeds", "epochs", "augment"):
        if old_plan.get(k, "off") != asdict(plan)[k]:
            raise SystemExit(f"--exhaustive-from {path}: its plan has {k}={old_plan.get(k, 'off')}, this one "
                             f"{asdict(plan)[k]}")
    missing = [t.key for t in plan.tasks if t.key not in tasks or set(tasks[t.key]["accuracy"]) != set(plan.strategies)]
    if missing:
        raise SystemExit(f"--exhaustive-from {path}: no complete every-strategy results for {', '.join(missing)}")
    origin = doc["meta"].get("exhaustive_from") or {
        "date": doc["meta"]["date"], "command": doc["meta"]["command"],
        "compute_seconds": doc["meta"]["compute_seconds"],
        "sources": {n: v["source_test_accuracy"] for n, v in doc["sources"].items()}}
    auto0 = {k: t["auto"]["0"]["seconds"] for k, t in tasks.items() if "0" in t.get("auto", {})}
    return {"tasks": tasks, "tau": doc.get("tau") or {}, "origin": origin, "auto0_seconds": auto0}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        (args.out / "AUTO_SUITE.md").write_text(render(json.loads((args.out / "auto_suite.json").read_text())))
        log(f"wrote {args.out / 'AUTO_SUITE.md'} from {args.out / 'auto_suite.json'}")
        return 0
    torch.set_num_threads(1)
    plan = QUICK if args.quick else PLANS[args.part]
    if args.seeds:
        plan = replace(plan, seeds=[int(v) for v in args.seeds.split(",")])
    started = time.perf_counter()
    mode = "quick" if args.quick else "full" if args.part == "image" else args.part
    command = "python " + shlex.join([os.path.relpath(sys.argv[0], ROOT), *(sys.argv[1:] if argv is None else argv)])
    meta: dict[str, Any] = {"command": command, "mode": mode, "auto_version": auto_version(),
                            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                            "transferkit": transferkit.__version__, "plan": asdict(plan), "jobs": args.jobs}
    machine = machine_info()
    log(f"{mode} auto suite: {len(plan.tasks)} tasks x {len(plan.strategies)} strategies x {len(plan.seeds)} seeds "
        f"+ auto, {args.jobs} job(s) of 1 thread")
    sources = ensure_sources(plan, args.sources)
    dirs = {n: Path(v["run"]) if v.get("backbone") or Path(v["run"]).is_absolute() else ROOT / v["run"]
            for n, v in sources.items()}
    reused = load_exhaustive(args.exhaustive_from, plan) if args.exhaustive_from else None
    if reused is not None:
        if args.stage == "exhaustive":
            raise SystemExit("--exhaustive-from with --stage exhaustive leaves nothing to run")
        meta["exhaustive_from"] = reused["origin"]
    res = Results(args.sources / f"results-{mode}.jsonl", args.fresh)
    run_units(plan, dirs, res, args.stage, args.jobs, exhaustive=reused is None)
    if args.stage == "exhaustive":
        return 0
    if args.part == "text":
        return write_text_part(args, plan, res, meta, machine, sources, started)
    tau = reused["tau"] if reused is not None and reused["tau"] else run_tau(plan, dirs, res)
    scale = 1.0
    if reused is not None:
        scale = meta["exhaustive_from"]["time_scale"] = time_scale(reused, list(res.rows.values()), plan)
    tasks = [summarize(t, [r for r in suite_rows(res, t, plan) if not r.get("tau_only")
                           and (reused is None or r["strategy"] == "auto")], plan,
                       None if reused is None else reused["tasks"][t.key], scale) for t in plan.tasks]
    checks = checks_of(tasks, tau, plan.auto_budgets)
    machine["load_average_end"] = os.getloadavg()
    meta["total_seconds"] = time.perf_counter() - started
    meta["reused_runs"] = res.reused
    meta["compute_seconds"] = sum(r.get("wall_seconds", 0.0) for r in res.rows.values()
                                  if reused is None or r["strategy"] == "auto")
    doc = {"meta": meta, "machine": machine, "sources": sources, "checks": [c.as_dict() for c in checks],
           "tasks": tasks, "tau": tau}
    old = args.out / "auto_suite.json"
    if old.exists() and "text" in json.loads(old.read_text()):  # the text part is kept as it was measured
        doc["text"] = json.loads(old.read_text())["text"]
    write_doc(args.out, doc, checks)
    log(f"wrote {args.out / 'AUTO_SUITE.md'} and auto_suite.json in {meta['total_seconds']:.0f} s")
    return 0


def suite_rows(res: Results, task: Task, plan: Plan) -> list[dict[str, Any]]:
    """The rows of ``task`` run with this plan's settings (its key, its epochs), in the order stored."""
    return [r for r in res.rows.values() if r["task"] == task.key
            and r["key"] == row_key(task.key, r["seed"], r["strategy"], r["budget"], task_epochs(task, plan))]


def write_doc(out: Path, doc: dict[str, Any], checks: list[Check]) -> None:
    """``auto_suite.json`` and the page rendered from it into ``out``; each check logged."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "auto_suite.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    (out / "AUTO_SUITE.md").write_text(render(doc))
    for c in checks:
        log(f"{'PASS' if c.passed else 'FAIL'}  {c.name}: {c.value} (target {c.target})")


def write_text_part(args: argparse.Namespace, plan: Plan, res: Results, meta: dict[str, Any],
                    machine: dict[str, Any], sources: dict[str, Any], started: float) -> int:
    """Summarise the text tasks and write them as ``"text"`` into the JSON beside its stored image part
    (which nothing here reruns or changes), then render the page from the whole JSON."""
    tasks = [summarize(t, suite_rows(res, t, plan), plan) for t in plan.tasks]
    checks = checks_of(tasks, {}, plan.auto_budgets, negative=False)
    machine["load_average_end"] = os.getloadavg()
    meta.update(total_seconds=time.perf_counter() - started, reused_runs=res.reused,
                compute_seconds=sum(r.get("wall_seconds", 0.0) for r in res.rows.values()))
    path = args.out / "auto_suite.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc["text"] = {"meta": meta, "machine": machine, "sources": sources, "checks": [c.as_dict() for c in checks],
                   "tasks": tasks}
    write_doc(args.out, doc, checks)
    log(f"wrote {args.out / 'AUTO_SUITE.md'} and the text part of {path} in {meta['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
