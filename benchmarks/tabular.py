"""Tables: ``transferkit pretrain --model mlp`` with CLI defaults against a standardised logistic
regression (scikit-learn) on identical splits, and a tabular transfer pair.

Data: scikit-learn's wine (178 x 13, 3 classes) and breast-cancer (569 x 30, 2 classes) tables,
shipped inside the package and written to CSV here (real data, no download). Transfer pair:
breast cancer split at the median of ``mean fractal dimension`` into a low (source) and a high
(target) population: the same columns, a shift in the inputs, and the same class balance on both
sides (106/179 and 106/178 malignant/benign), so what changes is the population, not the labels.

Writes docs/TABULAR.md and docs/tabular.json. Run: ``python benchmarks/tabular.py [--seeds 0,1,2] [--render-only]``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from harness import Bench, Context, log

from transferkit.pipeline import SPLIT

SHIFT_COLUMN = "mean fractal dimension"
STRATEGIES = ("linear_probe", "lp_ft", "full", "scratch")
SHOTS = 10


def write_tables(folder: Path) -> dict[str, Path]:
    """wine.csv, breast_cancer.csv and the two breast-cancer populations (label column ``label``)."""
    from sklearn.datasets import load_breast_cancer, load_wine

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, loader in (("wine", load_wine), ("breast_cancer", load_breast_cancer)):
        d = loader()
        names = [str(n) for n in d.feature_names]
        parts = {name: np.ones(len(d.target), dtype=bool)}
        if name == "breast_cancer":
            col = d.data[:, names.index(SHIFT_COLUMN)]
            parts |= {"bc_low": col <= np.median(col), "bc_high": col > np.median(col)}
        for part, mask in parts.items():
            path = folder / f"{part}.csv"
            with path.open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow([*names, "label"])
                w.writerows([*map(repr, map(float, r)), str(d.target_names[t])] for r, t in zip(d.data[mask], d.target[mask]))
            out[part] = path
    return out


def cli(argv: list[str]) -> tuple[float, float]:
    """Run one ``transferkit`` command in-process; ``(accuracy on its test split, seconds)``."""
    from transferkit.cli import main

    t0 = time.perf_counter()
    with redirect_stdout(io.StringIO()):
        code = main([*argv, "--progress", "off"])
    seconds = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"transferkit {' '.join(argv)} failed ({code})")
    out = Path(argv[argv.index("--out") + 1])
    metrics = json.loads((out / "metrics.json").read_text())
    return float((metrics.get("source") or metrics["target"])["accuracy"]), seconds


def logistic(data: Path, seed: int, shots: int | None = None) -> tuple[float, float]:
    """StandardScaler + LogisticRegression on transferkit's split of ``data`` (fitted on train + val,
    or on ``shots`` per class of the training split); ``(test accuracy, seconds)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from transferkit.data import kshot, load_dataset, split

    t0 = time.perf_counter()
    sp = split(load_dataset(str(data)), seed=seed, **SPLIT)
    if shots is None:
        x, y = np.concatenate([sp.train.x, sp.val.x]), np.concatenate([sp.train.y, sp.val.y])
    else:
        few = kshot(sp.train, shots, seed=seed)
        assert few.y is not None  # a labelled table
        x, y = few.x, few.y
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x, y)
    acc = float((model.predict(sp.test.x) == sp.test.y).mean())
    return acc, time.perf_counter() - t0


def summary(values: list[float]) -> dict[str, float]:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "se": sd / math.sqrt(len(values)), "n": len(values)}


def table_rows(tables: dict[str, Path], seeds: list[int], work: Path) -> list[dict[str, Any]]:
    """Every row of the result table: command template, per-seed accuracies and seconds."""
    rows: list[dict[str, Any]] = []

    def add(group: str, command: str, results: list[tuple[float, float]]) -> None:
        acc, sec = [a for a, _ in results], [s for _, s in results]
        rows.append({"group": group, "command": command, "accuracy": summary(acc), "seconds": summary(sec),
                     "per_seed": acc})
        log(f"{group:14s} {command[:90]:90s} {100 * statistics.fmean(acc):.1f}")

    for name in ("wine", "breast_cancer", "bc_low"):
        data = tables[name]
        add(name, f"transferkit pretrain --data {data.name} --model mlp --seed S",
            [cli(["pretrain", "--data", str(data), "--model", "mlp", "--seed", str(s), "--overwrite",
                  "--out", str(work / f"{name}-{s}")]) for s in seeds])
        add(name, "sklearn StandardScaler + LogisticRegression (train + val)", [logistic(data, s) for s in seeds])
    target = tables["bc_high"]
    for strategy in STRATEGIES:
        add("bc_low->high", f"transferkit transfer --source runs/bc_low --data {target.name} --shots {SHOTS} "
            f"--strategy {strategy} --seed S",
            [cli(["transfer", "--source", str(work / f"bc_low-{s}"), "--data", str(target), "--shots", str(SHOTS),
                  "--strategy", strategy, "--seed", str(s), "--overwrite",
                  "--out", str(work / f"bc_high-{strategy}-{s}")])
             for s in seeds])
    add("bc_low->high", f"sklearn StandardScaler + LogisticRegression ({SHOTS} shots of {target.name})",
        [logistic(target, s, SHOTS) for s in seeds])
    return rows


def zero_shot(seeds: list[int], target: Path, work: Path) -> list[float]:
    """The source model, head kept and no target training, on the target test split each transfer row
    is scored on: how far the shift alone moves it."""
    from transferkit.data import load_dataset, split
    from transferkit.evaluation.evaluate import evaluate_model
    from transferkit.runs import load_run

    out = []
    for s in seeds:
        run = load_run(work / f"bc_low-{s}")
        test = split(load_dataset(str(target), model=run.spec, seed=s), seed=s, **SPLIT).test
        out.append(float(evaluate_model(run.model, test, run.spec.num_classes)["accuracy"]))
    return out


POLICY = """## How a table is read and preprocessed

- **Loading** (`transferkit.data.tabular`): a `.csv` with a header, or a `.jsonl` of objects (a field a record
  lacks, or `null`, is a missing cell). The label column is `label` (any case) or `--label-column NAME`; a file with a `text` column (or
  `--text-column NAME`) is text, not a table. A column is numeric when at least half of its non-missing cells
  are numbers; a non-number in such a column is a typo and a one-line error names the file, line, column
  and cell. Other columns are categorical, unless their values are mostly distinct phrases (free text: the
  error says `--text-column`). Missing cells: empty, `NA`, `N/A`, `NaN`, `null`, `None`, `?`.
- **Preprocessing** (`transferkit.data.tabular_prep`), fitted by `pretrain` on the training split only and
  saved as JSON in the run's `model.json` (`preprocess`; never a pickle): numeric columns standardised with the
  training mean and standard deviation; categorical columns one-hot over the training categories (the
  {max_categories} most frequent) plus one "other" feature for a category never seen in training.
- **Missing values**: imputed, not refused. A numeric cell gets the training median, and a 0/1 "was missing"
  feature follows the column when the training split had gaps there; a categorical gap is the category
  `(missing)` when training had it, else "other". Real tables have gaps; refusing them would send the user to
  another tool, and the indicator keeps the fact of missingness for the model (as scikit-learn's
  `SimpleImputer(strategy="median", add_indicator=True)`).
- **Every later command** (`evaluate`, `predict`, `transfer`, `rank`, `adapt`) applies the saved preprocessing
  through the `tabular` preparer; columns are matched by name, so their order may differ, and a table whose
  columns differ from the training columns is one line naming the missing and extra ones. The label column
  defaults to the one the run was trained with; `predict` ignores it when the file has one.
- **Epochs**: `pretrain` on a table trains for at most {epochs} epochs by default (8 for other data): a small
  table gives only a few steps per epoch; early stopping on the validation split ends it sooner.

"""


def pct(s: dict[str, float]) -> str:
    return f"{100 * s['mean']:.1f} ± {100 * s['se']:.1f}"


def verdict(rows: list[dict[str, Any]], group: str) -> str:
    mlp, lr = (r["accuracy"]["mean"] for r in rows if r["group"] == group)
    gap = 100 * (lr - mlp)
    where = f"{gap:.1f} points behind" if gap > 0 else f"{-gap:.1f} points ahead"
    return f"`{group}`: mlp {100 * mlp:.1f}% vs logistic regression {100 * lr:.1f}% ({where}; " + \
        ("met: within 2 points)" if gap <= 2 else "NOT met: more than 2 points behind)")


def shift_note(rows: list[dict[str, Any]], zero: list[float]) -> str:
    """What the pair shows, read off the numbers: the best transfer against scratch and the untouched source."""
    pair = {r["command"].split("--strategy ")[1].split()[0]: r["accuracy"]["mean"] for r in rows
            if r["group"] == "bc_low->high" and "--strategy" in r["command"]}
    best = max((k for k in pair if k != "scratch"), key=pair.__getitem__)
    gain, over_source = 100 * (pair[best] - pair["scratch"]), 100 * (pair[best] - statistics.fmean(zero))
    mild = "the shift is mild: most of that gain is what the source already knew" if over_source < abs(gain) / 2 else \
        "training on the target adds to what the source knew"
    return (f"Best transfer: `{best}`, {gain:+.1f} points over `scratch` on the same shots and "
            f"{over_source:+.1f} over the untouched source model; {mild}.")


def render(result: dict[str, Any]) -> str:
    m, rows = result["machine"], result["rows"]
    out = ["# Tables: pretrain against a scaled logistic regression, and a tabular transfer pair", "",
           f"> Generated by `{result['command']}` on {result['generated']} ({m['cpu_model']}, {m['usable_cpus']} usable "
           f"cores, torch {m['torch']}). Do not edit by hand; the numbers are in `docs/tabular.json`.", "",
           "Data: scikit-learn's `load_wine` and `load_breast_cancer` (real tables shipped inside the package), written "
           "to CSV with a `label` column. Every row uses transferkit's seeded stratified split (55% train / 15% "
           f"validation / 30% test) of the same file with the same seed S in {result['seeds']}; accuracy on the test split, "
           "mean ± standard error over the seeds; seconds are wall time of the whole command (loading, training, "
           "writing the run).", "",
           "The mlp rows are `transferkit pretrain` with CLI defaults (only `--seed` changes): for a table that is "
           f"{result['tabular_epochs']} epochs at most (early stopping on the validation split), with the preprocessing "
           "fitted on the training split (standardised columns). The logistic regression "
           "(`StandardScaler` + `LogisticRegression(max_iter=5000)`) is fitted on train + validation, every row the "
           "mlp saw in any form.", "",
           "| data | command | accuracy (%) | seconds |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r['group']}` | `{r['command']}` | {pct(r['accuracy'])} | {r['seconds']['mean']:.1f} |")
    out += ["", "Target (within 2 points of the scaled logistic regression):", ""]
    out += [f"- {verdict(rows, g)}" for g in ("wine", "breast_cancer")]
    z = result["zero_shot"]
    out += ["", "## The transfer pair", "",
            f"Breast cancer split at the median of `{SHIFT_COLUMN}`: `bc_low.csv` (source, {result['pair']['source_rows']} "
            f"rows) and `bc_high.csv` (target, {result['pair']['target_rows']} rows). Both keep all 30 columns and the "
            "same class balance, so the shift is in the inputs (a population of cells with a higher fractal dimension), "
            "not in the labels: a covariate shift with a shared column set, which a tabular transfer needs. A transfer "
            "reuses the source run's preprocessing (its column set and statistics); a target whose columns differ is a "
            "one-line error.", "",
            f"Transfer rows: {SHOTS} labelled rows per class of the target's training split (strategy defaults "
            "otherwise); the logistic regression is fitted on the same shots. The source model itself, head kept and "
            f"no target training, scores {pct(summary(z))}% on the same target test splits.", "",
            shift_note(rows, z), "",
            *POLICY.format(max_categories=result["max_categories"], epochs=result["tabular_epochs"]).splitlines(),
            f"Wall time of this benchmark: {result['wall_minutes']:.1f} min.", "",
            "Reproduce: `python benchmarks/tabular.py` (runs are written under `runs/tabular/`)."]
    return "\n".join(out) + "\n"


def measure(ctx: Context) -> dict[str, Any]:
    from transferkit.data.tabular_prep import MAX_CATEGORIES, TABULAR_EPOCHS

    tables = write_tables(ctx.work / "data")
    rows = table_rows(tables, ctx.seeds, ctx.work)
    count = {k: sum(1 for _ in tables[k].open()) - 1 for k in ("bc_low", "bc_high")}
    return {"machine": ctx.machine, "seeds": ctx.seeds, "tabular_epochs": TABULAR_EPOCHS,
            "max_categories": MAX_CATEGORIES, "rows": rows,
            "zero_shot": zero_shot(ctx.seeds, tables["bc_high"], ctx.work),
            "pair": {"shift_column": SHIFT_COLUMN, "source_rows": count["bc_low"], "target_rows": count["bc_high"]},
            "wall_minutes": (time.perf_counter() - ctx.started) / 60}


BENCH = Bench("tabular", __doc__ or "", measure, render, seeds="0,1,2,3,4,5,6,7,8,9", indent=2)
main = BENCH.main


if __name__ == "__main__":
    sys.exit(main())
