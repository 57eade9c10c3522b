"""Source-free adaptation (SHOT, AaD) vs the best with-source method, on the three reference digit pairs.

For each (pair, seed): the source model of benchmarks/uda.py (``small_cnn`` width 32 hidden 256, pre-trained
8 epochs on the source, seed 0, shared by the seeds; ``uda.pretrained`` under ``runs/source_free/``), then
one ``transferkit.adapt(source_run, None, target, method="auto", options={"candidates": <source-free methods>})``
*without the source data*, as a user runs them, with uda.py's budget (500 optimizer steps at batch 64 over the
target inputs, SGD lr 0.01, validator ``im`` choosing each method's checkpoint). The methods: ``shot`` (its
default: SHOT then SHOT++'s consistency stage, see transferkit.adaptation.source_free), ``shot:stage2=none``
(the SHOT paper's method alone) and ``aad``. Target labels only score: accuracy on the held-out 30% of the
target (never adapted on) and on every target image.

Per cell the label-free choice among the source-free methods (highest ``im`` score) is set beside the
oracle choice (highest held-out accuracy, as papers pick) and the gap. The with-source method (uda.py's
recommended ``self_training`` recipe, uda.json's label-free ``auto`` choice in most cells) is rerun here on the
same source model and split, in its own ``adapt`` call with the source data and the same 500 steps; uda.json's
``auto`` row (its own source model) is shown beside it. The accuracy of the source model before adaptation is
measured in both calls and must agree (same source model, same held-out part).

Checks (the issue's must-hold): ``shot`` within 2 points of the with-source method on each pair (mean over
seeds, held-out part; the rerun when there is one, else uda.json's ``auto``).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/source_free.py --threads 2           # 3 pairs x 3 seeds
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/source_free.py --quick --threads 2   # 1 pair, 1 seed, 60 it.
    .venv/bin/python benchmarks/source_free.py --render-only                           # page from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from harness import DOCS, ROOT, Bench, Context, Store, generated_line, log, table

PAIRS = [("mnist5k", "digits8"), ("fontdigits", "digits8"), ("mnist5k", "fontdigits")]
#: The source-free candidates (``name`` or ``name:key=value:...``, as ``auto``'s candidates).
METHODS = ["shot", "shot:stage2=none", "aad"]
ITERATIONS, BATCH, PRETRAIN_EPOCHS = 500, 64, 8
TOLERANCE = 0.02  #: the must-hold: shot within 2 points of the with-source label-free choice


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", default=",".join(METHODS), help="source-free candidates, comma-separated")
    p.add_argument("--pairs", default="", help="e.g. mnist5k->digits8 (default: the three reference pairs)")
    p.add_argument("--no-with-source", dest="with_source", action="store_false",
                   help="do not rerun uda.py's recommended with-source method on this source model")


def _adapt_call(src: Path, s: str | None, t: str, seed: int, methods: list[str], iterations: int
                ) -> dict[str, dict[str, Any]]:
    """One ``adapt`` call with ``methods`` as ``auto``'s candidates (each from the same source model, on the same
    split), reading the source data ``s`` only when it is given: one record per method (the source model's
    accuracy before adaptation is measured once per call)."""
    from transferkit.adaptation.api import adapt

    load = os.getloadavg()
    r = adapt(src, s, t, method="auto", options={"candidates": ",".join(methods)}, target_labels_for_eval=t,
              seed=seed, iterations=iterations, batch_size=BATCH, validator="im", progress="off")
    m = r.metrics
    return {method: {"pair": f"?->{t}", "seed": seed, "method": method, "label": c["label"],
                     "acc": c["target_accuracy"], "acc_all": c["target_accuracy_all"], "validators": c["validators"],
                     "seconds": c["train_seconds"], "before": m["target_before"]["accuracy"],
                     "before_all": m["target_all_before"]["accuracy"], "source_data": s,
                     "info": c.get("info", {}), "load_average_start": list(load),
                     "load_average_end": list(os.getloadavg())}
            for method, c in zip(methods, m["candidates"], strict=True)}


def _cells(src: Path, s: str, t: str, seed: int, methods: list[str], iterations: int) -> dict[str, dict[str, Any]]:
    """The source-free methods among ``methods`` in one ``adapt`` call *without* the source data (as a user
    runs them; the budget is ``iterations`` steps over the target inputs), the with-source one in another."""
    free = [m for m in methods if m != _recommended()]
    out = _adapt_call(src, None, t, seed, free, iterations) if free else {}
    if len(free) < len(methods):
        out.update(_adapt_call(src, s, t, seed, [_recommended()], iterations))
    for rec in out.values():
        rec["pair"] = f"{s}->{t}"
    return out


def _recommended() -> str:
    from uda import RECOMMENDED

    return str(RECOMMENDED)


def measure(ctx: Context) -> dict[str, Any]:
    from uda import MODEL_KWARGS, RECOMMENDED, pretrained

    methods = [m for m in ctx.args.methods.split(",") if m]
    runs = methods + ([RECOMMENDED] if ctx.args.with_source else [])
    pairs = [tuple(p.split("->")) for p in ctx.args.pairs.split(",") if p] or PAIRS
    pairs, iterations = (pairs[:1], 60) if ctx.quick else (pairs, ITERATIONS)
    store = Store(ctx.work / "cells.json", timing="cell_seconds")
    for seed in ctx.seeds:
        for s, t in pairs:
            todo = [m for m in runs if f"{s}->{t}|{seed}|{m}" not in store]
            if not todo:
                continue
            src = pretrained(s, ROOT / "runs" / "source_free", PRETRAIN_EPOCHS, MODEL_KWARGS)
            for m, rec in _cells(src, s, t, seed, todo, iterations).items():  # stored as they finish: per call
                store.put(f"{s}->{t}|{seed}|{m}", rec)
                log(f"  {s}->{t}|{seed}|{m}: {100 * rec['acc']:.1f} held out ({100 * rec['acc_all']:.1f} all), "
                    f"im {rec['validators']['im']:.3f}, {rec['seconds']:.0f} s")
    keys = [f"{s}->{t}|{seed}|{m}" for seed in ctx.seeds for s, t in pairs for m in methods]
    uda = json.loads((DOCS / "uda.json").read_text())
    names = {f"{s}->{t}" for s, t in pairs}
    with_source = {f"{c['pair']}|{c['seed']}": {"choice": c["auto_choice"], "acc": c["auto_acc"],
                                                "acc_all": c["auto_acc_all"], "before": c["target_before"],
                                                "before_all": c["target_before_all"]}
                   for c in uda["cells"].values() if c["pair"] in names}
    return {"seeds": ctx.seeds, "pairs": [f"{s}->{t}" for s, t in pairs], "methods": methods, "iterations": iterations,
            "batch_size": BATCH, "pretrain_epochs": PRETRAIN_EPOCHS, "model_kwargs": MODEL_KWARGS, "validator": "im",
            "cells": {k: store[k] for k in keys if k in store}, "with_source": with_source, "rerun_method": RECOMMENDED,
            "with_source_rerun": {f"{s}->{t}|{seed}": store[k] for seed in ctx.seeds for s, t in pairs
                                  if (k := f"{s}->{t}|{seed}|{RECOMMENDED}") in store},
            "load_average_end": list(os.getloadavg())}


def _per_seed(doc: dict[str, Any], pair: str, seed: int) -> dict[str, Any] | None:
    """The cell's methods, the label-free (im) and oracle (held-out accuracy) choices among them, and the gap."""
    rows = {m: doc["cells"].get(f"{pair}|{seed}|{m}") for m in doc["methods"]}
    if not all(rows.values()):
        return None
    lf = max(rows, key=lambda m: rows[m]["validators"][doc["validator"]])  # type: ignore[index]
    oracle = max(rows, key=lambda m: rows[m]["acc"])  # type: ignore[index]
    return {"rows": rows, "label_free": lf, "oracle": oracle, "gap": rows[oracle]["acc"] - rows[lf]["acc"]}  # type: ignore[index]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ref(doc: dict[str, Any], pair: str, seed: int) -> tuple[str, dict[str, Any] | None]:
    """The with-source label-free result to compare with: the rerun on this source model when there is one,
    else uda.json's ``auto`` (its own source model)."""
    key = f"{pair}|{seed}"
    if key in doc.get("with_source_rerun", {}):
        return "rerun", doc["with_source_rerun"][key]
    return "uda.json", doc["with_source"].get(key)


def _cell_rows(doc: dict[str, Any]) -> list[list[str]]:
    out = []
    for pair in doc["pairs"]:
        for seed in doc["seeds"]:
            c, w = _per_seed(doc, pair, seed), doc["with_source"].get(f"{pair}|{seed}")
            if c is None:
                out.append([pair, str(seed)] + ["not run"] * (10 + len(doc["methods"])))
                continue
            r, (kind, ref) = c["rows"], _ref(doc, pair, seed)
            one = next(iter(r.values()))
            same = "—" if w is None else ("yes" if abs(w["before_all"] - one["before_all"]) < 1e-9
                                          else f"no: {_pct(w['before'])} ({_pct(w['before_all'])})")
            rerun = doc.get("with_source_rerun", {}).get(f"{pair}|{seed}")
            gap_ws = "—" if ref is None or "shot" not in r else f"{100 * (r['shot']['acc'] - ref['acc']):+.1f} ({kind})"
            out.append([pair, str(seed), f"{_pct(one['before'])} ({_pct(one['before_all'])})", same,
                        *[f"{_pct(v['acc'])} ({_pct(v['acc_all'])})" for v in r.values()],
                        c["label_free"], c["oracle"], f"{100 * c['gap']:.1f}",
                        "—" if rerun is None else f"{_pct(rerun['acc'])} ({_pct(rerun['acc_all'])})",
                        "—" if w is None else f"{_pct(w['acc'])} ({_pct(w['acc_all'])})", gap_ws,
                        " / ".join(f"{v['seconds']:.0f}" for v in [*r.values(), *([rerun] if rerun else [])]),
                        f"{one['load_average_start'][0]:.1f}"])
    return out


PAPER = "shot:stage2=none"  #: the SHOT paper's method alone (no consistency stage), shown beside ``shot``


def _paired(a: list[float], b: list[float]) -> str:
    """Mean paired difference ``a - b`` in points, its standard error over seeds, and the worst seed."""
    d = [100 * (x - y) for x, y in zip(a, b, strict=True)]
    se = f" ± {statistics.stdev(d) / len(d) ** 0.5:.1f}" if len(d) > 1 else ""
    return f"{statistics.mean(d):+.1f}{se} (worst seed {min(d):+.1f})"


def _pair_rows(doc: dict[str, Any]) -> list[list[str]]:
    out = []
    for pair in doc["pairs"]:
        seeds = [s for s in doc["seeds"] if _per_seed(doc, pair, s)]
        cells = [_per_seed(doc, pair, s) for s in seeds]
        refs = [_ref(doc, pair, s) for s in seeds]
        if not cells or "shot" not in doc["methods"] or any(ref is None for _, ref in refs):
            out.append([pair, str(len(cells))] + ["—"] * 7 + ["NOT RUN"])
            continue
        shot = [c["rows"]["shot"]["acc"] for c in cells]  # type: ignore[index]
        lf = statistics.mean(c["rows"][c["label_free"]]["acc"] for c in cells)  # type: ignore[index]
        gap = statistics.mean(c["gap"] for c in cells)  # type: ignore[index]
        w = [ref["acc"] for _, ref in refs]  # type: ignore[index]
        paper = [c["rows"][PAPER]["acc"] for c in cells] if PAPER in doc["methods"] else None  # type: ignore[index]
        ok = len(cells) == len(doc["seeds"]) and statistics.mean(shot) >= statistics.mean(w) - TOLERANCE
        out.append([pair, str(len(cells)), _pct(statistics.mean(shot)),
                    "—" if paper is None else _pct(statistics.mean(paper)), _pct(lf), f"{100 * gap:.1f}",
                    f"{_pct(statistics.mean(w))} ({', '.join(dict.fromkeys(k for k, _ in refs))})",
                    _paired(shot, w), "—" if paper is None else _paired(paper, w), "PASS" if ok else "FAIL"])
    return out


def _verdict(doc: dict[str, Any]) -> str:
    """The must-hold in one sentence: held on every pair, or where not, with the numbers."""
    rows = _pair_rows(doc)
    missed = [f"{r[0]} (shot {r[2]} vs {r[6]}: {r[7]})" for r in rows if r[-1] != "PASS"]
    held = [r[0] for r in rows if r[-1] == "PASS"]
    head = f"**Must-hold** (`shot` within {100 * TOLERANCE:.0f} points of the with-source method on each pair): "
    cells = [c for pair in doc["pairs"] for seed in doc["seeds"] if (c := _per_seed(doc, pair, seed))]
    picked = sum(c["label_free"] == "shot" for c in cells)
    note = (f" The `{doc['validator']}` validator picks `shot` among the source-free methods in {picked} of "
            f"{len(cells)} cells (see the label-free vs oracle gap): `auto` without source data does not always run "
            "the method this must-hold is about.") if cells and "shot" in doc["methods"] else ""
    if not missed:
        return head + f"held on every pair ({', '.join(held)})." + note
    return head + f"NOT held on {'; '.join(missed)}" + (f"; held on {', '.join(held)}." if held else ".") + note


def render(doc: dict[str, Any]) -> str:
    head = ["pair", "seed", "source model before", "same source model as uda.json?",
            *[f"`{m}`" for m in doc["methods"]], "label-free choice (im)", "oracle choice", "gap",
            "with-source rerun", "with-source (uda.json)", "shot − with-source", "seconds", "load avg"]
    picked = sum(w["choice"].startswith("self_training") for w in doc["with_source"].values())
    lines = ["# Source-free adaptation (SHOT, AaD) vs with-source", "", generated_line(doc), "",
             ("`shot` is transferkit's default: SHOT (Liang et al., ICML 2020) followed by the consistency stage of "
              "SHOT++ (Liang et al., TPAMI 2021: a mean teacher labels clean target batches, the model learns its "
              "confident labels on re-styled copies; half the steps each); `shot:stage2=none` is the SHOT paper's "
              "method alone. No source-free method reads source data: each runs in an `adapt` call without "
              "it. The second stage's settings were piloted on the target validation split (never the held-out "
              "part) of seed 0 of mnist5k->digits8 and fontdigits->digits8, so those two cells are design cells "
              "for it, not a held-out test."), "",
             (f"Source model: `small_cnn` {doc['model_kwargs']} pre-trained {doc['pretrain_epochs']} epochs on the "
              f"source (benchmarks/uda.py's recipe and function `pretrained`). Each source-free method: "
              f"{doc['iterations']} optimizer steps at batch {doc['batch_size']} on the unlabelled target training "
              f"part only; checkpoint chosen by the `{doc['validator']}` validator. Accuracy (%) on the held-out 30% "
              "of the target, in brackets on every target image. Label-free choice: the source-free method with the "
              f"highest `{doc['validator']}` score; oracle choice: the highest held-out accuracy (target labels, as "
              "papers pick); gap: the held-out accuracy the label-free choice gives up."), "",
             (f"With-source rerun: uda.py's recommended method `{doc['rerun_method']}` (its label-free `auto` choice "
              f"in {picked} of uda.json's {len(doc['with_source'])} cells of these pairs), "
              "run by this script in its own `adapt` call with the source data, on the same source model, split "
              "and step budget. uda.json's `auto` row is shown beside it; when the source model's accuracy before "
              "adaptation differs from uda.json's, uda.json was measured on another source model (same recipe and "
              "function; the pre-training is not bit-identical) and the rerun is what the must-hold compares with."),
             "",
             "## Per pair (mean over seeds, held-out part)", "", _verdict(doc), "",
             *table(["pair", "seeds", "shot", f"`{PAPER}` (SHOT paper)", "source-free label-free choice",
                     "label-free vs oracle gap", "with-source", "shot − with-source (± SE over seeds)",
                     "SHOT paper − with-source", f"shot within {100 * TOLERANCE:.0f} points"],
                    _pair_rows(doc)),
             "", "## Per cell", "", *table(head, _cell_rows(doc)), "",
             "Methods (candidate labels): " + "; ".join(dict.fromkeys(
                 f"`{c['method']}` = {c['label']}" for c in doc["cells"].values())) + ".", "",
             (f"Load averages (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in doc['load_average_end'])} "
              "(2 cores shared with other jobs: seconds are upper bounds)."), ""]
    return "\n".join(lines)


def checks(doc: dict[str, Any]) -> list[str]:
    out = [f"{r[0]}: shot {r[2]} vs with-source {r[6]}: {r[7]} (must be within {100 * TOLERANCE:.0f} points)"
           for r in _pair_rows(doc) if r[-1] != "PASS"]
    for key, rerun in doc.get("with_source_rerun", {}).items():  # same source model and split in both calls
        shot = doc["cells"].get(f"{key}|shot")
        if shot is not None and abs(shot["before_all"] - rerun["before_all"]) > 1e-9:
            out.append(f"{key}: the source model scores {_pct(shot['before_all'])} before adaptation in the "
                       f"source-free call but {_pct(rerun['before_all'])} in the with-source one: not comparable")
    return out


BENCH = Bench("source_free", __doc__ or "", measure, render, checks, options=options,
              quick="one pair, one seed, 60 iterations (runs/source_free-quick)")

if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.exit(BENCH.main())
