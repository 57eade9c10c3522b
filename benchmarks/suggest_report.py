"""docs/SUGGEST.md from docs/suggest.json (benchmarks/suggest.py measures and writes both; no number is typed
here): the paired differences to random, the methods the rule chooses (:func:`summarise`, recomputed from the stored
accuracies by ``--render-only``) and the page (:func:`render`)."""

from __future__ import annotations

from typing import Any

import numpy as np

PER_CLASS = (1, 2, 5)
METHODS = ("typiclust", "probcover", "kmeans_closest", "kcenter")
#: class-aware candidates (label-name prompts; text sources, the class names given): chosen on validation
TEXT_METHODS = ("prompt_confident", "prompt_typical", "prompt_mixed", "prompt_confident_typical")
#: validation seeds of the class-aware choice (pool = training split, scored on the validation split)
VAL_SEEDS = range(100, 130)


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean and standard error of the paired differences ``a - b`` (points)."""
    d = 100 * (np.array(a) - np.array(b))
    return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan"),
            "wins": int((d > 0).sum()), "losses": int((d < 0).sum()), "n": len(d)}


def paired_all(tasks: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``task|per|method`` -> paired difference to random, for every method each task ran."""
    return {f"{t}|{per}|{m}": paired(b["accuracy"][m], b["accuracy"]["random"])
            for t, r in tasks.items() for per, b in r["budgets"].items() for m in b["accuracy"] if m != "random"}


def rule(pairs: dict[str, dict[str, float]], tasks: list[str], methods: tuple[str, ...]) -> dict[str, Any]:
    """The selection rule: among ``methods``, those meeting the issue's bar (>= +5 points at 1 per class and
    >= 0 at 5 per class on every task) first, then the best mean gain over tasks and budgets."""
    score = {m: float(np.mean([pairs[f"{t}|{p}|{m}"]["mean"] for t in tasks for p in map(str, PER_CLASS)]))
             for m in methods}
    ok = {m: all(pairs[f"{t}|1|{m}"]["mean"] >= 5 and pairs[f"{t}|5|{m}"]["mean"] >= 0 for t in tasks)
          for m in methods}
    return {"mean_gain": score, "meets_issue": ok, "chosen": max(methods, key=lambda m: (ok[m], score[m]))}


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Paired differences per task, budget and method; the methods chosen, and the issue's check per task
    for the method ``suggest-labels`` uses there (class-aware on text tasks, whose class names are known)."""
    pairs = paired_all(results["tasks"])
    general = rule(pairs, list(results["tasks"]), METHODS)
    val_tasks = list(results["validation"])
    val = rule(paired_all(results["validation"]), val_tasks, TEXT_METHODS) if val_tasks else None
    must: dict[str, Any] = {}
    for task in results["tasks"]:
        m = val["chosen"] if val and task in val_tasks else general["chosen"]
        one, five = pairs[f"{task}|1|{m}"], pairs[f"{task}|5|{m}"]
        must[task] = {"method": m, "gain_1": one["mean"], "se_1": one["se"], "gain_5": five["mean"],
                      "se_5": five["se"], "losses_5": five["losses"], "n": five["n"],
                      "held": bool(one["mean"] >= 5 and five["mean"] >= 0)}
    return {"paired": pairs, **general, "class_aware": val,
            "validation_paired": paired_all(results["validation"]), "must_hold": must,
            "held_all": all(v["held"] for v in must.values())}


def pct(values: list[float]) -> str:
    return f"{100 * np.mean(values):.1f}"


def must_hold_lines(results: dict[str, Any]) -> list[str]:
    """The issue's check per task, held or not, with the method used there and the random baseline."""
    s = results["summary"]
    lines = ["## The issue's bar, per task", "",
             "Labelling the suggested examples beats labelling a random draw of the same size by >= 5 points at "
             "1 label per class on average, and is never worse at 5 (paired over "
             f"{results['seeds']} test seeds; mean ± SE in points):", "",
             "| task | method used | random 1/class | gain 1/class | gain 5/class | seeds below random at 5/class "
             "| held (on the mean) |", "|---|---|---|---|---|---|---|"]
    for task, v in s["must_hold"].items():
        rnd = pct(results["tasks"][task]["budgets"]["1"]["accuracy"]["random"])
        lines.append(f"| {task} | {v['method']} | {rnd} | {v['gain_1']:+.1f} ± {v['se_1']:.1f} | "
                     f"{v['gain_5']:+.1f} ± {v['se_5']:.1f} | {v['losses_5']} of {v['n']} | "
                     f"{'held' if v['held'] else 'NOT held'} |")
    lines += ["", f"Overall: **{'held on all four tasks' if s['held_all'] else 'NOT held on every task'}** "
              "(judged on the mean paired difference over seeds)."]
    losing = [f"{t} ({v['losses_5']} of {v['n']} seeds)" for t, v in s["must_hold"].items() if v["losses_5"]]
    if losing:
        lines += ["", "Not on every seed: at 5 per class the method used scores below the mean random draw on "
                  + ", ".join(losing) + ". For the class-aware picks, the likely cause (seen when inspecting "
                  "picks, not measured here): some of the prompts' most confident examples are of the other class "
                  "(e.g. a positive review in negative words: 'I didn't mind all this contrived nonsense'), so the "
                  "labels come out lopsided and the probe fitted on them leans to one class."]
    nogain = [t for t in results["validation"] if pairs_of(s, t, s["chosen"], "1") < 5]
    if nogain:
        lines += ["", f"Without `--classes`, {', '.join(nogain)} is not served: {s['chosen']} scores "
                  + ", ".join(f"{pairs_of(s, t, s['chosen'], p):+.1f}" for t in nogain for p in ("1", "5"))
                  + " points against random at 1 and 5 per class there (table below)."]
    return lines


def pairs_of(s: dict[str, Any], task: str, method: str, per: str) -> float:
    """The mean paired difference of ``method`` on ``task`` at ``per`` labels per class (points)."""
    return float(s["paired"][f"{task}|{per}|{method}"]["mean"])


def validation_lines(results: dict[str, Any]) -> list[str]:
    """The class-aware choice, made on validation splits only (never on the test numbers of this doc)."""
    v, vp = results["summary"]["class_aware"], results["summary"]["validation_paired"]
    if not v:
        return []
    lines = ["## Class-aware choice (validation only)", "",
             f"Candidates {', '.join(TEXT_METHODS)} on seeds {VAL_SEEDS.start}-{VAL_SEEDS.stop - 1} (not the test "
             "seeds), pool = training split, scored on the **validation** split, same probe and random draws. Rule: "
             "among those meeting the issue's bar there, the best mean gain over budgets (else the best mean gain). "
             f"Chosen: **{v['chosen']}**.", "",
             "| task | per class | random | " + " | ".join(TEXT_METHODS) + " |",
             "|---|---|---|" + "---|" * len(TEXT_METHODS)]
    for task, r in results["validation"].items():
        for per, b in r["budgets"].items():
            cells = [f"{pct(b['accuracy'][m])} ({vp[f'{task}|{per}|{m}']['mean']:+.1f} ± "
                     f"{vp[f'{task}|{per}|{m}']['se']:.1f})" for m in TEXT_METHODS]
            lines.append(f"| {task} | {per} | {pct(b['accuracy']['random'])} | " + " | ".join(cells) + " |")
    lines += ["", "Mean gain on validation (points): " + ", ".join(f"{m} {g:+.1f}" for m, g in v["mean_gain"].items())
              + ".", ""]
    return lines


def render(results: dict[str, Any]) -> str:
    s, mach, chosen = results["summary"], results["machine"], results["summary"]["chosen"]
    met = [m for m, v in s["meets_issue"].items() if v]
    cls = s["class_aware"]["chosen"] if s["class_aware"] else None
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
        f"Default method of `suggest-labels` (no class names): **{chosen}**, the best mean gain over random across "
        "tasks and budgets among the methods meeting the issue's bar, or among all of them when none does "
        f"({'met by ' + ', '.join(met) if met else 'none does'}).",
    ]
    if cls:
        lines += ["", f"With `--classes` on a text source (the class names known): **{cls}**, chosen on validation "
                  "splits only (section below); the class-aware methods pick examples spread evenly over the classes "
                  "the label-name prompts predict. On the text task the bar is judged for it (the user of "
                  "vader-movies knows its classes are negative and positive)."]
    lines += ["", *must_hold_lines(results), "",
              "| task | source | per class | budget | random | " + " | ".join((*METHODS, *TEXT_METHODS)) + " |",
              "|---|---|---|---|---|" + "---|" * (len(METHODS) + len(TEXT_METHODS))]
    for task, r in results["tasks"].items():
        for per, b in r["budgets"].items():
            cells = [f"{pct(b['accuracy'][m])} ({s['paired'][f'{task}|{per}|{m}']['mean']:+.1f} ± "
                     f"{s['paired'][f'{task}|{per}|{m}']['se']:.1f}, {s['paired'][f'{task}|{per}|{m}']['wins']}"
                     f"/{s['paired'][f'{task}|{per}|{m}']['n']})" if m in b["accuracy"] else "-"
                     for m in (*METHODS, *TEXT_METHODS)]
            lines.append(f"| {task} | {r['source']} | {per} | {b['budget']} | {pct(b['accuracy']['random'])} | "
                         + " | ".join(cells) + " |")
    lines += ["", "Cells: accuracy % (paired difference to random in points ± SE, wins/seeds); `-`: not applicable "
              "(class-aware methods need a text source).", "",
              "Mean gain over random across tasks and budgets (points): "
              + ", ".join(f"{m} {v:+.1f}" for m, v in s["mean_gain"].items()) + ".", "",
              "Bar met by one method without class names on all four tasks (>= +5 points at 1 per class and >= 0 "
              "at 5 per class): "
              + ", ".join(f"{m} {'met' if v else 'not met'}" for m, v in s["meets_issue"].items()) + ".", ""]
    lines += validation_lines(results)
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
    lines += ["", "Mean seconds of one selection (largest budget, the method used): " + ", ".join(
        f"{t} {v['method']} {np.mean(results['tasks'][t]['budgets']['5']['select_seconds'][v['method']]):.2f} s"
        for t, v in s["must_hold"].items()) + f". Wall time {results['wall_seconds'] / 60:.1f} min.", "",
        "Reproduce: `python benchmarks/suggest.py` (features cached under `runs/suggest/`).", ""]
    return "\n".join(lines + USAGE)


#: How a user runs it and reads the labelled file back (words only, no measured number).
USAGE = [
    "## Using it", "",
    "```",
    "transferkit suggest-labels --source minilm --data unlabelled.jsonl --budget 20 --out to_label.csv",
    "# text whose class names you know: spread the picks over the classes the label-name prompts predict",
    "transferkit suggest-labels --source minilm --data unlabelled.jsonl --budget 20 --classes negative,positive \\",
    "    --out to_label.csv",
    "# fill in the label column of to_label.csv (columns: input, why, label), then, for text:",
    "transferkit transfer --source minilm --data to_label.csv --text-column input --out runs/labelled",
    "# for any data (image or .wav folders, .npz, tables, built-in sets):",
    "transferkit apply-labels to_label.csv --out labelled/        # images / .wav: one sub-folder per class",
    "transferkit apply-labels to_label.csv --data x.npz --out labelled.npz   # row indices need --data",
    "transferkit transfer --source efficientnet_lite0 --data labelled/ --out runs/labelled",
    "```", "",
    "`input` is the file path (image and `.wav` folders), the text (text data) or the 0-based row index "
    "(`.npz`, tables, built-in sets); `why` says why the example was picked (its cluster, the cluster's size "
    "and the example's typicality for `typiclust`; with `--classes`, the class the label-name prompts predict for it, "
    "its sub-cluster and its prompt margin). The class names only steer which examples are shown: label each example "
    "with its true class, whatever the prompts predicted. A labelled text CSV is a text data set as it stands "
    "(`--text-column input`); `transfer` does not read a CSV of image paths, so `apply-labels` copies the files "
    "into one sub-folder per class (a folder is never overwritten), writes the table's own rows with a `label` "
    "column, or an `.npz` of the rows (`x`, `y`). Rows left without a label are skipped by `apply-labels`; read "
    "directly, an empty label would be a class of its own, so fill in every row or use `apply-labels`. "
    "`transfer` splits its data 70/15/15 per class and needs 3 examples of a class to hold one out: with 1-2 "
    "labels per class, score on other labelled data.", "",
]
