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

Text tasks (a text source, ``minilm``) also run the class-aware methods of ``suggest-labels --classes``
(:data:`TEXT_METHODS`: label-name prompts with the data's class names, as a user who knows the classes
passes them). Which of them is the default is decided on validation splits only: seeds
:data:`VAL_SEEDS` (not the test seeds), the pool the training split, scored on the validation split,
by the same rule as the other methods (the issue's bar first, then the mean gain); the test rows then
report every candidate, and the issue's bar is judged per task for the method ``suggest-labels``
uses there (class-aware on text, the default method elsewhere).

Sources: images ``mnist_cnn`` (a registered CNN pretrained on real MNIST; chosen over
``efficientnet_lite0`` by the source check this script also runs and records); audio
``audio_cnn`` pretrained here on ``spoken-digits:voices=A`` (12 epochs, seed 0; cached in
``runs/suggest/audio_source``); text ``minilm``.

Writes docs/suggest.json and docs/SUGGEST.md (the summary and the page: ``suggest_report.py``). Run:
``python benchmarks/suggest.py [--seeds 10] [--draws 20] [--render-only]`` (finished tasks are kept in
``runs/suggest/results-*.json``; delete it to measure again).
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

from suggest_report import (  # noqa: E402 - benchmarks/ is on the path only from here
    METHODS,
    PER_CLASS,
    TEXT_METHODS,
    VAL_SEEDS,
    render,
    summarise,
)

WORK = ROOT / "runs" / "suggest"
AUDIO_SOURCE_DATA = "spoken-digits:voices=A"
#: task -> source (a backbone name, or "audio_source": audio_cnn pretrained here on voices A)
TASKS = {"digits8": "mnist_cnn", "fontdigits": "mnist_cnn", "spoken-digits:voices=B": "audio_source",
         "vader-movies": "minilm"}
IMAGE_CANDIDATES = ("mnist_cnn", "efficientnet_lite0")
#: sources that embed text: their tasks also run the class-aware methods, with the data's class names
TEXT_SOURCES = ("minilm",)


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


def prompt_embeddings(task: str, source: str, classes: list[str]) -> np.ndarray:
    """The source's prompt-ensembled embeddings of the class names (as ``suggest-labels --classes``
    computes them; cached). Shape ``[K, D]``."""
    cache = WORK / "features" / f"{task.replace(':', '_').replace('=', '-')}__{source}__prompts.npz"
    if cache.exists():
        z = np.load(cache)
        if [str(c) for c in z["classes"]] == classes:
            return np.asarray(z["e"])
    from transferkit.runs import load_source
    from transferkit.zeroshot import DEFAULT_TEMPLATES, class_embeddings

    model, _ = load_source(source_path(source))
    e = class_embeddings(model, classes, DEFAULT_TEMPLATES).numpy()
    np.savez(cache, e=e, classes=np.array(classes))
    return e


def split_indices(y: np.ndarray, classes: list[str], seed: int, part: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Pool (training split) and ``part`` (test or val) indices of ``transfer``'s stratified split for ``seed``."""
    from transferkit.data import ArrayDataset, split
    from transferkit.pipeline.splits import SPLIT

    proxy = ArrayDataset(x=np.arange(len(y), dtype=np.float32)[:, None], y=y, class_names=classes,
                         name="proxy", modality="tabular")
    sp = split(proxy, seed=seed, **SPLIT)
    return sp.train.x[:, 0].astype(np.int64), getattr(sp, part).x[:, 0].astype(np.int64)


def probe_accuracy(f_lab: np.ndarray, y_lab: np.ndarray, f_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of a logistic regression fitted on the labelled examples (one class: that class)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y_lab)) == 1:
        return float((y_test == y_lab[0]).mean())
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(f_lab, y_lab)
    return float((clf.predict(f_test) == y_test).mean())


def run_task(task: str, source: str, seeds: range, draws: int, methods: tuple[str, ...],
             part: str = "test") -> dict[str, Any]:
    """Per budget: accuracy per seed of each method and of random (mean of ``draws``), and seconds.
    Class-aware methods read the centred prompt scores of the data's class names."""
    from transferkit.suggest import normalise, prompt_scores, select

    f, y, classes, fsec = features(task, source)
    f = normalise(f)
    k_cls = len(classes)
    emb = prompt_embeddings(task, source, classes) if set(methods) & set(TEXT_METHODS) else None
    out: dict[str, Any] = {"source": source, "n": len(y), "classes": k_cls, "dim": int(f.shape[1]),
                           "feature_seconds": fsec, "part": part, "seeds": list(seeds), "budgets": {}}
    for per in PER_CLASS:
        budget = per * k_cls
        rows: dict[str, list[float]] = {m: [] for m in (*methods, "random")}
        secs: dict[str, list[float]] = {m: [] for m in methods}
        classes_hit: dict[str, list[int]] = {m: [] for m in (*methods, "random")}
        for seed in seeds:
            pool, test = split_indices(y, classes, seed, part)
            fp, yp = f[pool], y[pool]
            for m in methods:
                t0 = time.perf_counter()
                scores = prompt_scores(fp, emb) if m in TEXT_METHODS and emb is not None else None
                sel = select(fp, budget, m, seed, scores, classes).index
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
                                    "classes_labelled": classes_hit, "pool": len(pool), part: len(test)}
        log(f"  {task} {part} {per}/class (budget {budget}): " + ", ".join(
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--out", default=str(ROOT / "docs"))
    p.add_argument("--render-only", action="store_true")
    a = p.parse_args()
    out = Path(a.out)
    if a.render_only:  # the summary is recomputed from the stored accuracies
        stored = json.loads((out / "suggest.json").read_text())
        stored["summary"] = summarise(stored)
        (out / "suggest.json").write_text(json.dumps(stored, indent=1) + "\n")
        (out / "SUGGEST.md").write_text(render(stored))
        return
    from bench_common import machine_info

    t0 = time.perf_counter()
    machine = machine_info()
    results: dict[str, Any] = {"command": "python benchmarks/suggest.py " + " ".join(sys.argv[1:]),
                               "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               "seeds": a.seeds, "draws": a.draws, "machine": machine, "tasks": {}}
    results["source_check"] = source_check(a.seeds, a.draws)
    store = WORK / f"results-v2-seeds{a.seeds}-draws{a.draws}.json"  # finished tasks, kept across restarts
    done: dict[str, Any] = json.loads(store.read_text()) if store.exists() else {}
    results["validation"] = {}
    for task in a.tasks.split(","):
        text = TASKS[task] in TEXT_SOURCES
        if text and f"val|{task}" not in done:
            log(f"{task} ({TASKS[task]}): class-aware candidates on validation splits")
            done[f"val|{task}"] = run_task(task, TASKS[task], VAL_SEEDS, a.draws, TEXT_METHODS, part="val")
            store.write_text(json.dumps(done, indent=1))
        if task not in done:
            log(f"{task} ({TASKS[task]})")
            done[task] = run_task(task, TASKS[task], range(a.seeds), a.draws, METHODS + TEXT_METHODS if text
                                  else METHODS)
            store.write_text(json.dumps(done, indent=1))
        results["tasks"][task] = done[task]
        if text:
            results["validation"][task] = done[f"val|{task}"]
    results["summary"] = summarise(results)
    results["wall_seconds"] = time.perf_counter() - t0
    results["machine"]["load_average_end"] = os.getloadavg()
    out.mkdir(parents=True, exist_ok=True)
    (out / "suggest.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "SUGGEST.md").write_text(render(results))
    log(f"wrote {out / 'SUGGEST.md'}")


if __name__ == "__main__":
    main()
