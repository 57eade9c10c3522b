"""Accuracy vs labelled examples per class: scratch, zero-shot and prototypes against the transfer strategies.

    python benchmarks/curves.py                       # every task; writes docs/CURVES.md, docs/curves.json, docs/curves*.png
    python benchmarks/curves.py --tasks text,audio    # run a subset (the doc still shows every task's stored results)
    python benchmarks/curves.py --deadline-min 40     # start no new run after 40 min; the doc shows what finished
    python benchmarks/curves.py --render-only         # rewrite the docs from the stored runs (or docs/curves.json's)

Tasks (issue #7; issue #4 part 5 for the zero-shot and prototype baselines), 3 seeds each:

- ``mnist``: small_cnn pretrained here on mnist5k -> digits8, library defaults (40 epochs, patience 10),
  with ``augment="off"``: measured before small_cnn's lp_ft/full recipe turned augmentation on
  (docs/AUGMENT.md), and kept so the stored numbers stay reproducible; the page says so.
- ``effnet``: ImageNet EfficientNet-Lite0 (64 px) -> digits8; ``scratch`` is the same architecture
  with random weights. Fine-tuning runs (scratch, lp_ft) at most 5 epochs, batch 16 (as
  benchmarks/image.py) and stop at 50 per class: the whole split does not fit the budget.
- ``text``: MiniLM -> vader-movies; zero-shot (prompt ``a {} review``) is a flat line; recipes of
  benchmarks/text.py (batch 16, at most 10 epochs per phase); 500 held-out test snippets per seed.
  No scratch (a randomly initialised 22M-parameter transformer on <= 100 snippets; too slow to
  fine-tune here): the baseline is zero-shot. zs_init and lora stop at 50 per class.
- ``audio``: audio_cnn pretrained here on ``spoken-digits:voices=A`` -> ``voices=B``, at most 12
  epochs per phase (as benchmarks/audio.py).

``ncm`` (nearest class mean on frozen features) and ``linear_probe`` share one feature cache.
Finished runs are kept in ``runs/curves/<task>/results.json`` (mnist: ``runs/curves/results.json``),
so an interrupted run resumes; accuracy does not depend on the machine's load. ``--render-only`` takes a
task whose store is missing from the published ``docs/curves.json`` (its ``runs``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import copy
import datetime
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import Store, log, machine_info
from recipe_notes import augment_off_note

import transferkit
from transferkit.data import ArrayDataset, load_dataset
from transferkit.engine.features import FeatureCache
from transferkit.engine.precision import resolve_placement
from transferkit.models import TransferModel, fresh_like, from_pretrained
from transferkit.pipeline.transfer import labelled_splits  # the splits and shots transferkit.transfer draws
from transferkit.runs import RunDir, load_run
from transferkit.strategies import STRATEGIES
from transferkit.zeroshot import class_embeddings, cosine_predict, prototypes

ROOT = Path(__file__).resolve().parent.parent
SHOTS: tuple[int | None, ...] = (1, 5, 10, 50, None)
FEW: tuple[int | None, ...] = (1, 5, 10, 50)
ZS_PROMPT = "a {} review"
Results = dict[str, dict[str, Any]]


def label(k: int | None) -> str:
    return "all" if k is None else str(k)


@dataclass(frozen=True)
class Task:
    """One curve: a source, a target and, per strategy, the shots it runs at (``None`` = all)."""

    name: str
    title: str
    target: str
    strategies: dict[str, tuple[int | None, ...]]
    baseline: str = "scratch"
    train: dict[str, Any] = field(default_factory=dict)
    subdir: str = ""
    png: str = ""
    notes: str = ""
    backbone: str = ""  # its recipes decide which rows the CLI default would augment

    @property
    def shots(self) -> list[int | None]:
        return [k for k in SHOTS if any(k in s for s in self.strategies.values())]


def _lora() -> list[str]:
    return ["lora"] if "lora" in STRATEGIES else []


TASKS: dict[str, Task] = {t.name: t for t in [
    Task("mnist", "small_cnn (mnist5k) -> digits8", "digits8",
         {s: SHOTS for s in ["scratch", "ncm", "linear_probe", "full", "lp_ft", "l2sp", "wise_ft"]},
         train={"augment": "off"}, subdir=".", png="curves.png", backbone="small_cnn",
         notes="Source: small_cnn pretrained here on mnist5k (8 epochs). Library defaults (at most 40 epochs, "
               "early stopping with patience 10)."),
    Task("effnet", "EfficientNet-Lite0 (ImageNet, 64 px) -> digits8", "digits8",
         {"scratch": SHOTS, "ncm": SHOTS, "linear_probe": SHOTS, "lp_ft": SHOTS},
         train={"epochs": 5, "batch_size": 16}, subdir="effnet", png="curves-effnet.png", backbone="efficientnet_lite0",
         notes="`scratch` = EfficientNet-Lite0 with random weights. Fine-tuning (`scratch`, `lp_ft`) runs at most "
               "5 epochs, batch 16 (as benchmarks/image.py; the probe phase trains on cached features, 100 epochs); "
               "`lp_ft` with the backbone's recipe (lr 1e-4, BatchNorm frozen: src/transferkit/strategies/recipes.py)."),
    Task("text", "MiniLM -> vader-movies", "vader-movies",
         {"zero_shot": (), "ncm": SHOTS, "linear_probe": SHOTS, "zs_init": FEW, **{s: FEW for s in _lora()}},
         baseline="zero_shot", subdir="text", png="curves-text.png", backbone="minilm",
         notes=f"Test: 500 snippets drawn per seed from the held-out split (as docs/TEXT.md). `zero_shot` = cosine "
               f"to the prompted label names (prompt `{ZS_PROMPT}`; no labels, so a flat line). Recipes of "
               "benchmarks/text.py (linear_probe lr 1e-3; zs_init with the same prompt and WiSE-FT alpha picked on "
               "the validation draw; lora lr 1e-3), batch 16, at most 10 epochs per phase. `zs_init` and `lora` "
               "fine-tune the encoder and stop at 50 per class (the whole split, ~5,500 snippets, is 55 times the "
               "50-per-class set: hours per run here); `all` = the whole training split for the frozen-feature methods. No `scratch`: "
               "the baseline for the gain is zero-shot."),
    Task("audio", "audio_cnn (spoken digits, voices A) -> voices B", "spoken-digits:voices=B",
         {s: SHOTS for s in ["scratch", "ncm", "linear_probe", "lp_ft"]},
         train={"epochs": 12}, subdir="audio", png="curves-audio.png", backbone="audio_cnn",
         notes="Source: audio_cnn pretrained here on `spoken-digits:voices=A` (seed 0, 12 epochs). Each seed also "
               "draws B's renditions. At most 12 epochs per phase (as benchmarks/audio.py); `all` = 550 clips, "
               "so 50 per class (500) is nearly all of it."),
]}
#: Cells run after every other task's, in this order: the slowest, dropped first when the deadline comes.
LAST = [("text", "zs_init", 50), ("effnet", "lp_ft", 50), ("effnet", "scratch", 50), ("text", "lora", 50)]
RUN_ORDER = ["mnist", "audio", "effnet", "text"]  # cheapest first


class Runner:
    """Sources, data and the shared feature cache of one task; ``run`` trains/scores one cell."""

    def __init__(self, task: Task, work: Path) -> None:
        self.task, self.work = task, work
        self.cache = FeatureCache(max_entries=32)
        self._data: dict[int, ArrayDataset] = {}
        self.source = self._source()

    def _source(self) -> Any:
        t = self.task
        if t.name in ("mnist", "audio"):
            data, model, epochs = ("mnist5k", "small_cnn", 8) if t.name == "mnist" else ("spoken-digits:voices=A", "audio_cnn", 12)
            src = self.work / "source"
            if RunDir(src).status() != "complete":
                log(f"pretraining {model} on {data}")
                transferkit.pretrain(data, model, src, epochs=epochs, progress="off", overwrite=True)
            return load_run(src)
        return from_pretrained("efficientnet_lite0" if t.name == "effnet" else "minilm")

    @property
    def model(self) -> TransferModel:
        return self.source if isinstance(self.source, TransferModel) else self.source.model

    def data(self, seed: int) -> ArrayDataset:
        if seed not in self._data:
            self._data[seed] = load_dataset(self.task.target, model=self.model.spec, seed=seed)
        return self._data[seed]

    def splits(self, seed: int, k: int | None) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
        """(train, val, test) exactly as transferkit.transfer draws them; text: 500 test snippets."""
        train, val, test = labelled_splits(self.data(seed), k, seed)
        if self.task.name == "text":
            idx = np.sort(np.random.default_rng(seed).choice(len(test), min(500, len(test)), replace=False))
            test = test.subset(idx, f":test{len(idx)}")
        return train, val, test

    def features(self, ds: ArrayDataset) -> torch.Tensor:
        precision = "fp32" if self.task.name == "text" else "auto"  # the probe's placement: cache entries are shared
        place = resolve_placement(self.model, precision, "auto")
        return self.cache.features(self.model, torch.from_numpy(np.ascontiguousarray(ds.x)), place)

    def run(self, strategy: str, k: int | None, seed: int) -> dict[str, Any]:
        train, val, test = self.splits(seed, k)
        y = test.require_labels()
        if strategy == "zero_shot":
            classes = class_embeddings(self.model, test.class_names, (ZS_PROMPT,))
            return {"accuracy": float((cosine_predict(self.features(test), classes) == y).mean())}
        if strategy == "ncm":
            protos = prototypes(self.features(train), train.require_labels(), train.num_classes)
            return {"accuracy": float((cosine_predict(self.features(test), protos) == y).mean())}
        if self.task.name == "text":
            return self._text(strategy, train, val, test, seed)
        m = transferkit.transfer(self.source, self.task.target, strategy=strategy, shots=k, seed=seed, progress="off",
                                 cache=self.cache, **self.task.train).metrics
        return {"accuracy": m["target"]["accuracy"], "train_seconds": m["train_seconds"]}

    def _text(self, strategy: str, train: ArrayDataset, val: ArrayDataset, test: ArrayDataset, seed: int) -> dict[str, Any]:
        """A text strategy with benchmarks/text.py's recipe, through run_strategy (as transfer does)."""
        from text import RECIPES

        from transferkit.engine.config import TrainConfig
        from transferkit.engine.precision import predict_logits
        from transferkit.strategies import TransferContext, make_strategy, run_strategy

        options, overrides = RECIPES[strategy]
        cfg = TrainConfig(**{"epochs": 10, "batch_size": 16, "precision": "fp32", "progress": "off", "seed": seed,
                             **overrides})
        model = copy.deepcopy(self.model)
        model.reset_head(train.class_names)
        t = lambda d: (torch.from_numpy(d.x), torch.from_numpy(d.require_labels()))
        ctx = TransferContext(model, {}, t(train), t(val), cfg, lambda: fresh_like(model, seed), cache=self.cache)
        t0 = time.perf_counter()
        run_strategy(make_strategy(strategy, options), ctx)
        seconds = time.perf_counter() - t0
        if strategy == "linear_probe":  # frozen encoder: the test features come from the cache
            with torch.no_grad():
                logits = ctx.model.head(self.features(test))
        else:
            logits = predict_logits(ctx.model, torch.from_numpy(test.x), resolve_placement(ctx.model, "fp32", "off"))
        return {"accuracy": float((logits.argmax(1).numpy() == test.require_labels()).mean()), "train_seconds": seconds}


def store_path(work: Path, task: Task) -> Path:
    return work / task.subdir / "results.json"


def load_store(work: Path, task: Task, published: Path | None = None) -> Results:
    """The task's stored runs; without a store, the ``runs`` of the task in ``published`` (a curves.json)."""
    p = store_path(work, task)
    if p.exists():
        return json.loads(p.read_text())
    runs: Results = {}
    if published is not None and published.exists():
        runs = json.loads(published.read_text()).get("tasks", {}).get(task.name, {}).get("runs", {})
        log(f"{task.name}: no store in {work}; rendering the {len(runs)} runs of {published}")
    return runs


def cells(task: Task, seeds: list[int], only: set[str] | None = None) -> list[tuple[str, int | None, int]]:
    """(strategy, shots, seed) in run order: zero-shot once per seed (key shots = all), then by shots."""
    out: list[tuple[str, int | None, int]] = [(s, None, seed) for s in task.strategies if not task.strategies[s]
                                              for seed in seeds]
    for k in SHOTS if only is None else [k for k in SHOTS if label(k) in only]:
        out += [(s, k, seed) for s, ks in task.strategies.items() if k in ks for seed in seeds]
    return out


def run(tasks: list[Task], work: Path, seeds: list[int], deadline: float, only: set[str] | None = None) -> dict[str, bool]:
    """Run every missing cell (the LAST ones after all tasks' others); returns task -> all finished."""
    todo = [(t, c) for t in sorted(tasks, key=lambda t: RUN_ORDER.index(t.name)) for c in cells(t, seeds, only)
            if (t.name, c[0], c[1]) not in LAST]
    todo += [(t, c) for last in LAST for t in tasks for c in cells(t, seeds, only) if (t.name, c[0], c[1]) == last]
    runners: dict[str, Runner] = {}
    complete = {t.name: True for t in tasks}
    for task, (name, k, seed) in todo:
        store = Store(store_path(work, task), timing="seconds")  # re-read: parallel runs may share the store
        key = f"{name}|{label(k)}|{seed}"
        if key in store:
            continue
        if time.monotonic() > deadline:
            complete[task.name] = False
            continue
        if task.name not in runners:
            (work / task.subdir).mkdir(parents=True, exist_ok=True)
            runners[task.name] = Runner(task, work / task.subdir)
        def one(r: Runner = runners[task.name], n: str = name, k: int | None = k, s: int = seed) -> dict[str, Any]:
            return r.run(n, k, s)

        store.cell(key, one, lambda c: f"{task.name} {100 * c['accuracy']:.1f}% ({c['seconds']:.1f} s)")
    return complete


def summarise(task: Task, done: Results, seeds: list[int]) -> dict[str, dict[str, list[float]]]:
    """strategy -> shots label -> accuracies of the finished seeds (zero-shot: the same at every shot)."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, ks in task.strategies.items():
        by: dict[str, list[float]] = {}
        for k in task.shots if not ks else ks:
            key = "all" if not ks else label(k)
            vals = [done[f"{name}|{key}|{s}"]["accuracy"] for s in seeds if f"{name}|{key}|{s}" in done]
            if vals:
                by[label(k)] = vals
        out[name] = by
    return out


def mean_sd(v: list[float]) -> tuple[float, float]:
    return 100 * statistics.fmean(v), 100 * (statistics.stdev(v) if len(v) > 1 else 0.0)


def gains(task: Task, summary: dict[str, dict[str, list[float]]]) -> list[tuple[str, str, float]]:
    """Per shot: (shots, best non-baseline strategy, its mean minus the baseline's, in points)."""
    base = summary.get(task.baseline, {})
    out = []
    for k in map(label, task.shots):
        rivals = [n for n in summary if n != task.baseline and k in summary[n]]
        if k in base and rivals:
            best = max(rivals, key=lambda n: statistics.fmean(summary[n][k]))
            out.append((k, best, mean_sd(summary[best][k])[0] - mean_sd(base[k])[0]))
    return out


def plot(task: Task, summary: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    pos = {label(k): i for i, k in enumerate(task.shots)}
    for name, by in summary.items():
        if not by:
            continue
        if not task.strategies[name]:  # no labels: a flat line with its spread over seeds
            m, s = mean_sd(next(iter(by.values())))
            ax.axhline(m, color="grey", linestyle=":", linewidth=2, label=f"{name} (no labels)")
            ax.axhspan(m - s, m + s, color="grey", alpha=0.12)
            continue
        xs = [pos[k] for k in by]
        ms, sds = zip(*(mean_sd(v) for v in by.values()))
        ax.errorbar(xs, ms, yerr=sds, marker="o", capsize=3, label=name, linestyle="--" if name == "scratch" else "-",
                    linewidth=2 if name == "scratch" else 1.3)
    ax.set_xticks(list(pos.values()), list(pos))
    ax.set_xlabel("labelled target examples per class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(task.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def section(task: Task, summary: dict[str, dict[str, list[float]]], done: Results, seeds: list[int], complete: bool) -> list[str]:
    shots = [label(k) for k in task.shots]
    minutes = sum(v.get("seconds", 0.0) for v in done.values()) / 60
    off = augment_off_note(task.backbone, task.strategies) if task.train.get("augment") == "off" else ""
    notes = f"{task.notes} {off}".strip()
    lines = [f"## {task.title}", "", notes, "",
             f"Test-split accuracy (%), mean ± std over seeds {seeds}; — = not run. Runs took {minutes:.1f} min "
             "(sum of the recorded runs' wall times, one thread)." + ("" if complete else
             " **Unfinished: some runs were not started (deadline); their cells show — or n < 3.**"), "",
             f"![{task.name}: accuracy vs shots]({task.png})", "",
             "| strategy | " + " | ".join(shots) + " |", "|---|" + "---|" * len(shots)]
    for name, by in summary.items():
        cells_ = [("{:.1f} ± {:.1f}".format(*mean_sd(by[k])) + ("" if len(by[k]) == len(seeds) else f" (n={len(by[k])})"))
                  if k in by else "—" for k in shots]
        lines.append(f"| `{name}` | " + " | ".join(cells_) + " |")
    g = gains(task, summary)
    lines += ["", f"Gain of the best other method over `{task.baseline}` (points):", ""]
    lines += [f"- {k} per class: `{best}` {gain:+.1f}" for k, best, gain in g] or ["- none measured yet"]
    return lines + [""]


def render(sections: list[list[str]], command: str, machine: dict[str, Any], wall: float, runs_min: float) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = ["# Accuracy vs labelled examples per class", "",
            (f"> Generated by `{command}` on {date} ({machine['cpu_model']}, {machine['usable_cpus']} usable cores, "
            f"torch {machine['torch']}, {torch.get_num_threads()} thread, load average at start "
            f"{machine['load_average_start'][0]:.1f}); this invocation ran {wall / 60:.1f} min; all the stored runs "
            f"took {runs_min:.1f} min (sum of their wall times). Do not edit by hand."), "",
            ("Reproduce: `python benchmarks/curves.py` runs every missing cell (finished runs are kept in "
             "`runs/curves/`, so it resumes) and rewrites this page; `--tasks effnet,text` runs a subset, "
             "`--deadline-min N` starts no new run after N minutes, `--render-only` rewrites the page from the "
             "stored runs."), "",
            ("Shots: labelled training examples per class drawn from the training split (validation for early stopping "
            "uses at most as many per class); `all` = the whole training split. Every task uses the seeded split of "
            "`transferkit.transfer` (train 55%, validation 15%, test 30%). `ncm` = nearest class mean: cosine to the "
            "mean normalised frozen feature of each class (`transferkit.zeroshot.prototypes`); `ncm` and "
            "`linear_probe` share one feature cache."), ""]
    return "\n".join(head + [line for s in sections for line in s])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)} to run")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--deadline-min", type=float, default=float("inf"), help="start no new run after this many minutes")
    p.add_argument("--shots", default=None, help="comma-separated subset of 1,5,10,50,all to run (quick checks)")
    p.add_argument("--render-only", action="store_true", help="run nothing; rewrite the docs from the stored runs")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "curves")
    p.add_argument("--out", type=Path, default=ROOT / "docs")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    unknown = set(args.tasks.split(",")) - set(TASKS)
    if unknown:
        p.error(f"--tasks: unknown {min(unknown)!r} (one of {', '.join(TASKS)})")
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.monotonic()
    published = args.out / "curves.json"
    machine = json.loads(published.read_text())["machine"] if args.render_only and published.exists() else machine_info()
    ran = [TASKS[n] for n in TASKS if n in args.tasks.split(",")]
    only = None if args.shots is None else set(args.shots.split(","))
    complete = {} if args.render_only else run(ran, args.work, seeds, t0 + 60 * args.deadline_min, only)
    args.out.mkdir(parents=True, exist_ok=True)
    sections: list[list[str]] = []
    runs_min = 0.0
    report: dict[str, Any] = {"seeds": seeds, "machine": machine, "tasks": {}}
    for task in TASKS.values():
        done = load_store(args.work, task, published if args.render_only else None)
        if not done:
            continue
        summary = summarise(task, done, seeds)
        runs_min += sum(v.get("seconds", 0.0) for v in done.values()) / 60
        plot(task, summary, args.out / task.png)
        finished = complete.get(task.name, True) and all(f"{n}|{label(k)}|{s}" in done for n, k, s in cells(task, seeds))
        sections.append(section(task, summary, done, seeds, finished))
        report["tasks"][task.name] = {"title": task.title, "target": task.target, "baseline": task.baseline,
                                      "train": task.train, "accuracy": summary, "complete": finished,
                                      "gain_over_baseline": gains(task, summary), "runs": done}
    command = "python benchmarks/curves.py" + "".join(
        f" {flag} {v}" for flag, v, d in [("--tasks", args.tasks, ",".join(TASKS)), ("--seeds", args.seeds, "0,1,2"),
                                          ("--deadline-min", f"{args.deadline_min:g}", "inf"),
                                          ("--shots", args.shots, None)] if v != d) + " --render-only" * args.render_only
    (args.out / "CURVES.md").write_text(render(sections, command, machine, time.monotonic() - t0, runs_min))
    (args.out / "curves.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {args.out / 'CURVES.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
