"""Which examples to label first: ``suggest-labels`` selections against random draws of the same size.

For each task the source's frozen features of every example are computed once (cached under
``runs/suggest/features/``). Per seed, the data are split as ``transfer`` splits them
(:data:`transferkit.pipeline.splits.SPLIT`, stratified, that seed); the pool is the training split
(its labels unseen by the selection), the score is on the test split. A budget of ``k`` labels per
class on average is ``k * classes`` examples. "Accuracy after labelling": a logistic-regression
probe (scikit-learn, ``C=10``, on L2-normalised features) fitted on the labelled examples only, a
proxy for ``transfer --strategy linear_probe`` on the same examples. Random: the mean over
``--draws`` uniform draws of the pool per seed. Reported: the paired difference (method - random)
per seed, its mean and standard error over seeds.

Sources: images ``mnist_cnn`` (a registered CNN pretrained on real MNIST; chosen over
``efficientnet_lite0`` by the source check this script also runs and records); audio
``audio_cnn`` pretrained here on ``spoken-digits:voices=A`` (12 epochs, seed 0; cached in
``runs/suggest/audio_source``); text ``minilm``.

Writes docs/suggest.json and docs/SUGGEST.md. Run: ``python benchmarks/suggest.py [--seeds 10]
[--draws 20] [--render-only]`` (finished tasks are kept in ``runs/suggest/results-*.json``; delete it
to measure again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
WORK = ROOT / "runs" / "suggest"
AUDIO_SOURCE_DATA = "spoken-digits:voices=A"
#: task -> source (a backbone name, or "audio_source": audio_cnn pretrained here on voices A)
TASKS = {"digits8": "mnist_cnn", "fontdigits": "mnist_cnn", "spoken-digits:voices=B": "audio_source",
         "vader-movies": "minilm"}
IMAGE_CANDIDATES = ("mnist_cnn", "efficientnet_lite0")
PER_CLASS = (1, 2, 5)
METHODS = ("typiclust", "probcover", "kmeans_closest", "kcenter")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def source_path(source: str) -> str:
    """A backbone name as it is; ``audio_source``: audio_cnn pretrained on voices A (once, cached)."""
    if source != "audio_source":
        return source
    import transferkit
    from transferkit.runs import RunDir

    out = WORK / "audio_source"
    if RunDir(out).status() != "complete":
        log(f"pretraining audio_cnn on {AUDIO_SOURCE_DATA}")
        transferkit.pretrain(AUDIO_SOURCE_DATA, "audio_cnn", out, seed=0, epochs=12, progress="off", overwrite=True)
    return str(out)


def features(task: str, source: str) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    """The source's features of every example of ``task`` (cached), labels, class names, seconds."""
    cache = WORK / "features" / f"{task.replace(':', '_').replace('=', '-')}__{source}.npz"
    if cache.exists():
        z = np.load(cache)
        return z["f"], z["y"], [str(c) for c in z["classes"]], float(z["seconds"])
    import torch

    from transferkit.data import load_dataset
    from transferkit.engine.features import extract_features
    from transferkit.engine.precision import resolve_placement
    from transferkit.runs import load_source

    model, _ = load_source(source_path(source))
    ds = load_dataset(task, model=model.spec, seed=0)
    t0 = time.perf_counter()
    f = extract_features(model, torch.from_numpy(np.ascontiguousarray(ds.x)), resolve_placement(model, "fp32", "off"))
    seconds = time.perf_counter() - t0
    cache.parent.mkdir(parents=True, exist_ok=True)
    y = ds.require_labels()
    np.savez(cache, f=f.numpy(), y=y, classes=np.array(ds.class_names), seconds=seconds)
    log(f"features of {task} by {source}: {tuple(f.shape)} in {seconds:.1f} s")
    return f.numpy(), y, list(ds.class_names), seconds


def split_indices(y: np.ndarray, classes: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pool (training split) and test indices of ``transfer``'s stratified split for ``seed``."""
    from transferkit.data import ArrayDataset, split
    from transferkit.pipeline.splits import SPLIT

    proxy = ArrayDataset(x=np.arange(len(y), dtype=np.float32)[:, None], y=y, class_names=classes,
                         name="proxy", modality="tabular")
    sp = split(proxy, seed=seed, **SPLIT)
    return sp.train.x[:, 0].astype(np.int64), sp.test.x[:, 0].astype(np.int64)


def probe_accuracy(f_lab: np.ndarray, y_lab: np.ndarray, f_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of a logistic regression fitted on the labelled examples (one class: that class)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y_lab)) == 1:
        return float((y_test == y_lab[0]).mean())
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(f_lab, y_lab)
    return float((clf.predict(f_test) == y_test).mean())


def run_task(task: str, source: str, seeds: int, draws: int, methods: tuple[str, ...]) -> dict[str, Any]:
    """Per budget: accuracy per seed of each method and of random (mean of ``draws``), and seconds."""
    from transferkit.suggest import normalise, select

    f, y, classes, fsec = features(task, source)
    f = normalise(f)
    k_cls = len(classes)
    out: dict[str, Any] = {"source": source, "n": len(y), "classes": k_cls, "dim": int(f.shape[1]),
                           "feature_seconds": fsec, "budgets": {}}
    for per in PER_CLASS:
        budget = per * k_cls
        rows: dict[str, list[float]] = {m: [] for m in (*methods, "random")}
        secs: dict[str, list[float]] = {m: [] for m in methods}
        classes_hit: dict[str, list[int]] = {m: [] for m in (*methods, "random")}
        for seed in range(seeds):
            pool, test = split_indices(y, classes, seed)
            fp, yp = f[pool], y[pool]
            for m in methods:
                t0 = time.perf_counter()
                sel = select(fp, budget, m, seed).index
                secs[m].append(time.perf_counter() - t0)
                rows[m].append(probe_accuracy(fp[sel], yp[sel], f[test], y[test]))
                classes_hit[m].append(len(np.unique(yp[sel])))
            accs, hits = [], []
            for d in range(draws):
                sel = select(fp, budget, "random", 1000 * seed + d).index
                accs.append(probe_accuracy(fp[sel], yp[sel], f[test], y[test]))
                hits.append(len(np.unique(yp[sel])))
            rows["random"].append(float(np.mean(accs)))
            classes_hit["random"].append(float(np.mean(hits)))  # type: ignore[arg-type]
        out["budgets"][str(per)] = {"budget": budget, "accuracy": rows, "select_seconds": secs,
                                    "classes_labelled": classes_hit, "pool": len(pool), "test": len(test)}
        log(f"  {task} {per}/class (budget {budget}): " + ", ".join(
            f"{m} {100 * np.mean(v):.1f}" for m, v in rows.items()))
    return out


def source_check(seeds: int, draws: int) -> dict[str, Any]:
    """Image sources compared: probe accuracy with the whole pool labelled, and random 1/class."""
    out: dict[str, Any] = {}
    for task in ("digits8", "fontdigits"):
        for source in IMAGE_CANDIDATES:
            f, y, classes, _ = features(task, source)
            from transferkit.suggest import normalise, select

            f = normalise(f)
            full, rand = [], []
            for seed in range(min(seeds, 3)):
                pool, test = split_indices(y, classes, seed)
                full.append(probe_accuracy(f[pool], y[pool], f[test], y[test]))
                rand.append(np.mean([probe_accuracy(f[pool][s], y[pool][s], f[test], y[test]) for s in (
                    select(f[pool], len(classes), "random", 1000 * seed + d).index for d in range(draws))]))
            out[f"{task}|{source}"] = {"all_labels": float(np.mean(full)), "random_1_per_class": float(np.mean(rand))}
            log(f"  source check {task} {source}: all {100 * np.mean(full):.1f}, "
                f"random 1/class {100 * np.mean(rand):.1f}")
    return out


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean and standard error of the paired differences ``a - b`` (points)."""
    d = 100 * (np.array(a) - np.array(b))
    return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan"),
            "wins": int((d > 0).sum()), "n": len(d)}


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Paired differences per task, budget and method; the method chosen and the issue's checks."""
    summary: dict[str, Any] = {}
    for task, r in results["tasks"].items():
        for per, b in r["budgets"].items():
            for m in METHODS:
                summary[f"{task}|{per}|{m}"] = paired(b["accuracy"][m], b["accuracy"]["random"])
    score = {m: float(np.mean([summary[f"{t}|{p}|{m}"]["mean"] for t in results["tasks"] for p in map(str, PER_CLASS)]))
             for m in METHODS}
    ok = {m: all(summary[f"{t}|1|{m}"]["mean"] >= 5 and summary[f"{t}|5|{m}"]["mean"] >= 0 for t in results["tasks"])
          for m in METHODS}
    chosen = max(METHODS, key=lambda m: (ok[m], score[m]))
    return {"paired": summary, "mean_gain": score, "meets_issue": ok, "chosen": chosen}


def pct(values: list[float]) -> str:
    return f"{100 * np.mean(values):.1f}"


def misses(results: dict[str, Any], method: str) -> str:
    """One sentence: where ``method`` misses the issue's bar, with the random baseline's range there."""
    s, out = results["summary"]["paired"], []
    for task, r in results["tasks"].items():
        low = [f"{per}/class {s[f'{task}|{per}|{method}']['mean']:+.1f}" for per, need in (("1", 5.0), ("5", 0.0))
               if s[f"{task}|{per}|{method}"]["mean"] < need]
        if low:
            rnd = [100 * float(np.mean(b["accuracy"]["random"])) for b in r["budgets"].values()]
            out.append(f"{task} ({', '.join(low)} points; random scores {min(rnd):.1f}-{max(rnd):.1f}% there "
                       "at every budget)")
    return (f"Where {method} misses the bar: " + "; ".join(out) + ".") if out else f"{method} meets the bar everywhere."


def render(results: dict[str, Any]) -> str:
    s, mach, chosen = results["summary"], results["machine"], results["summary"]["chosen"]
    met = [m for m, v in s["meets_issue"].items() if v]
    lines = [
        "# Which examples to label first (`suggest-labels`)", "",
        f"> Generated by `{results['command']}` on {results['date']} ({mach['cpu_model']}, {mach['usable_cpus']} "
        f"usable cores, torch {mach['torch']}, load average at start {mach['load_average_start'][0]:.1f}). "
        "Do not edit by hand.", "",
        "Protocol: features of the source (frozen) once per task; per seed the data are split as `transfer` "
        "splits them; the pool is the training split, the score the test split. Budget = labels per class x "
        "classes. Accuracy after labelling = a logistic-regression probe (scikit-learn, C=10, L2-normalised "
        "features) fitted on the labelled examples only (a proxy for `transfer --strategy linear_probe` on "
        f"them). Random = mean of {results['draws']} uniform draws per seed. Differences are paired per seed: "
        f"mean ± standard error over {results['seeds']} seeds (wins = seeds where the method beat random).", "",
        f"Default method of `suggest-labels`: **{chosen}**, the best mean gain over random across tasks and "
        "budgets among the methods meeting the issue's bar, or among all of them when none does "
        f"({'met by ' + ', '.join(met) if met else 'none does'}).",
        "",
        misses(results, chosen), "",
        "| task | source | per class | budget | random | " + " | ".join(METHODS) + " |",
        "|---|---|---|---|---|" + "---|" * len(METHODS),
    ]
    for task, r in results["tasks"].items():
        for per, b in r["budgets"].items():
            cells = [f"{pct(b['accuracy'][m])} ({s['paired'][f'{task}|{per}|{m}']['mean']:+.1f} ± "
                     f"{s['paired'][f'{task}|{per}|{m}']['se']:.1f}, {s['paired'][f'{task}|{per}|{m}']['wins']}"
                     f"/{s['paired'][f'{task}|{per}|{m}']['n']})" for m in METHODS]
            lines.append(f"| {task} | {r['source']} | {per} | {b['budget']} | {pct(b['accuracy']['random'])} | "
                         + " | ".join(cells) + " |")
    lines += ["", "Cells: accuracy % (paired difference to random in points ± SE, wins/seeds).", "",
              "Mean gain over random across tasks and budgets (points): "
              + ", ".join(f"{m} {v:+.1f}" for m, v in s["mean_gain"].items()) + ".", "",
              "Issue bar (>= +5 points at 1 per class and >= 0 at 5 per class on all four tasks): "
              + ", ".join(f"{m} {'met' if v else 'not met'}" for m, v in s["meets_issue"].items()) + ".", ""]
    lines += ["## Image source", "",
              "| task | source | probe, whole pool labelled (3 seeds) | random 1/class (3 seeds) |",
              "|---|---|---|---|"]
    for key, v in results["source_check"].items():
        task, source = key.split("|")
        lines.append(f"| {task} | {source} | {100 * v['all_labels']:.1f} | {100 * v['random_1_per_class']:.1f} |")
    sc = results["source_check"]
    better = all(sc[f"{t}|mnist_cnn"][k] > sc[f"{t}|efficientnet_lite0"][k] for t in ("digits8", "fontdigits")
                 for k in ("all_labels", "random_1_per_class"))
    lines += ["", "The image tasks use `mnist_cnn` (registered, pretrained on real MNIST: nothing to pretrain here): "
              + ("its probe beats `efficientnet_lite0`'s on both tasks, with the whole pool labelled and with one "
                 "random label per class." if better else "NOTE: it does not beat `efficientnet_lite0` everywhere "
                 "in this run (table above).")]
    lines += ["", "Mean seconds of one selection (largest budget): " + ", ".join(
        f"{t} {m} {np.mean(r['budgets']['5']['select_seconds'][m]):.2f} s" for t, r in results["tasks"].items()
        for m in (chosen,)) + f". Wall time {results['wall_seconds'] / 60:.1f} min.", "",
        "Reproduce: `python benchmarks/suggest.py` (features cached under `runs/suggest/`).", ""]
    return "\n".join(lines + USAGE)


#: How a user runs it and reads the labelled file back (words only, no measured number).
USAGE = [
    "## Using it", "",
    "```",
    "transferkit suggest-labels --source minilm --data unlabelled.jsonl --budget 20 --out to_label.csv",
    "# fill in the label column of to_label.csv (columns: input, why, label), then, for text:",
    "transferkit transfer --source minilm --data to_label.csv --text-column input --out runs/labelled",
    "# for any data (image or .wav folders, .npz, tables, built-in sets):",
    "transferkit apply-labels to_label.csv --out labelled/        # images / .wav: one sub-folder per class",
    "transferkit apply-labels to_label.csv --data x.npz --out labelled.npz   # row indices need --data",
    "transferkit transfer --source efficientnet_lite0 --data labelled/ --out runs/labelled",
    "```", "",
    "`input` is the file path (image and `.wav` folders), the text (text data) or the 0-based row index "
    "(`.npz`, tables, built-in sets); `why` says why the example was picked (its cluster, the cluster's size "
    "and the example's typicality for `typiclust`). A labelled text CSV is a text data set as it stands "
    "(`--text-column input`); `transfer` does not read a CSV of image paths, so `apply-labels` copies the files "
    "into one sub-folder per class (a folder is never overwritten), writes the table's own rows with a `label` "
    "column, or an `.npz` of the rows (`x`, `y`). Rows left without a label are skipped by `apply-labels`; read "
    "directly, an empty label would be a class of its own, so fill in every row or use `apply-labels`. "
    "`transfer` splits its data 70/15/15 per class and needs 3 examples of a class to hold one out: with 1-2 "
    "labels per class, score on other labelled data.", "",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--out", default=str(ROOT / "docs"))
    p.add_argument("--render-only", action="store_true")
    a = p.parse_args()
    out = Path(a.out)
    if a.render_only:
        results = json.loads((out / "suggest.json").read_text())
        (out / "SUGGEST.md").write_text(render(results))
        return
    from bench_common import machine_info

    t0 = time.perf_counter()
    machine = machine_info()
    results: dict[str, Any] = {"command": "python benchmarks/suggest.py " + " ".join(sys.argv[1:]),
                               "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               "seeds": a.seeds, "draws": a.draws, "machine": machine, "tasks": {}}
    results["source_check"] = source_check(a.seeds, a.draws)
    store = WORK / f"results-seeds{a.seeds}-draws{a.draws}.json"  # finished tasks, kept across restarts
    done: dict[str, Any] = json.loads(store.read_text()) if store.exists() else {}
    for task in a.tasks.split(","):
        if task not in done:
            log(f"{task} ({TASKS[task]})")
            done[task] = run_task(task, TASKS[task], a.seeds, a.draws, METHODS)
            store.write_text(json.dumps(done, indent=1))
        results["tasks"][task] = done[task]
    results["summary"] = summarise(results)
    results["wall_seconds"] = time.perf_counter() - t0
    results["machine"]["load_average_end"] = os.getloadavg()
    out.mkdir(parents=True, exist_ok=True)
    (out / "suggest.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "SUGGEST.md").write_text(render(results))
    log(f"wrote {out / 'SUGGEST.md'}")


if __name__ == "__main__":
    main()
