"""Unsupervised domain adaptation benchmark: every method on the six digit domain pairs, plus oracle and ``auto``.

For each source domain a LeNet-sized ``small_cnn`` is pre-trained once (a complete run under
``runs/uda/`` is reused). For each (pair, seed) one ``adapt(method="auto")`` call runs every
method as a candidate for a fixed number of *iterations* (not epochs over a capped source, so the
budget matches the reference's); each candidate's target accuracy (labels used *only* for
scoring) gives the method rows, on all target images (the reference protocol) and on the
held-out 30% never adapted on; the candidate the label-free validator picks gives the ``auto``
row. The ``oracle`` row fine-tunes the source model on the *labelled* target with
``transferkit.transfer(strategy="full")`` (scored on its test split). Pairs run one child
process each, sequentially.

Writes ``docs/uda.json`` (raw records, resumable: finished cells are not rerun) and the generated
``docs/UDA.md``. Run it with ``OMP_WAIT_POLICY=PASSIVE``::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/uda.py            # full: 6 pairs x 3 seeds
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/uda.py --quick    # 1 pair, 1 seed, 60 iterations
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import transferkit as tk
from transferkit.adaptation.api import adapt, method_candidates

#: The rows: every registered method; self-training runs on top of MCC (half the budget each), with
#: domain-specific BatchNorm, a mean teacher and the class-balance loss (see the notes in the doc).
RECOMMENDED = ("self_training:base=mcc:mcc=1:base_fraction=0.5:consistency=true:domain_bn=true:ema=0.99"
               ":class_balance=1")
METHODS = ["source_only", "dann", "cdan", "mmd", "coral", "mcc", "adabn", RECOMMENDED]
#: ``small_cnn`` width 32: 4.6M multiply-adds per 28x28 image (the reference LeNet: 2.3M; width 16: 1.4M).
MODEL_KWARGS = {"width": 32, "hidden": 256}
DEFAULT_ITERATIONS = 500
MAIN_PAIRS = [("mnist5k", "digits8"), ("fontdigits", "digits8"), ("mnist5k", "fontdigits")]
REVERSE_PAIRS = [("digits8", "mnist5k"), ("digits8", "fontdigits"), ("fontdigits", "mnist5k")]
#: Acceptance targets (percent): reference source-only / best, and transferkit's required label-free pick.
REFERENCE = {("mnist5k", "digits8"): (71.4, 86.7, 92.0), ("fontdigits", "digits8"): (62.9, 82.5, 88.0),
             ("mnist5k", "fontdigits"): (81.4, 99.5, 99.5)}
REFERENCE_ORACLE = {"digits8": 98.6}
NOTES = [
    ("Protocol vs the reference: the reference trains a LeNet from scratch for 500 iterations at batch 128 "
     "(64,000 source samples) with the adaptation loss on; here a `small_cnn` (width 32; see the compute note) is "
     "pre-trained on the source once (plain, no augmentation) and each method then trains the settings' iterations from it. Digits "
     "are in a 20x20 box inside 28x28 as in the reference (transferkit's own conversion of each data set)."),
    ("Choices without target labels: the validator picks each method's checkpoint (one per epoch) and `auto` "
     "picks the row; target labels are read only to fill these tables and the oracle row."),
    ("A seed varies the adaptation (label-free target split, shuffling, augmentation draws, new layers); "
     "each source model is pre-trained once (seed 0) and shared."),
    ("The oracle fine-tunes the same source model on the labelled target training split "
     "(`transfer(strategy='full', augment='off')`, as measured before small_cnn's `full` recipe turned "
     "augmentation on) and is scored on that split's test part."),
    ("`self_training(base=mcc, ...)`: MCC for half the iterations, then class-balanced confidence-thresholded "
     "pseudo-labels (tau 0.9) with the MCC term kept, for the other half: the same total budget as one method; "
     "with `consistency=true` the pseudo-labels come from the clean target batch and the loss is taken on a "
     "re-styled copy (FixMatch-style); `ema=0.99`: the pseudo-labels come from a mean teacher (EMA of the "
     "weights; French et al., ICLR 2018); `domain_bn=true`: source and target go through BatchNorm as separate "
     "batches and the running statistics follow the target (both phases); `class_balance=1`: both phases add "
     "KL(mean target prediction of the batch || uniform), which stops a whole target class being absorbed by a "
     "neighbour (e.g. the 9s of digits8 read as 3s on mnist5k->digits8)."),
    ("Timings above: one stream (one cell at a time) on a machine shared with other jobs, so they are upper "
     "bounds on the time of one adaptation alone."),
    ("Source re-styling (`restyle_source=True`, also the strong view of `consistency=true`) includes an elastic "
     "distortion (a smooth random displacement field, Simard et al., ICDAR 2003; sigma 4 px, alpha 34, on half "
     "the examples): printed fontdigits glyphs then get handwriting-like wobble. Its parameters are Simard's, "
     "fixed a priori and the same for every pair."),
    ("Rows not listed were not run in this invocation (see the command's `--methods`); every registered "
     "method runs by default. Rows marked † were run afterwards (`--extra-methods`, same split, budget and "
     "augmentation, on the seeds shown) and are *not* candidates of `auto`, so they do not enter the regret."),
]


#: The reference LeNet (two 5x5 conv layers, 20 and 50 channels; 500-unit hidden layer): multiply-adds per 28x28 image.
REFERENCE_MACS = 2.3e6
#: The reference budget: 500 iterations at batch 128 source + 128 target.
REFERENCE_ITERS, REFERENCE_BATCH = 500, 128


def model_macs(src_run: Path) -> float:
    """Multiply-adds of one forward pass of the source run's model on one input (Conv2d and Linear layers)."""
    from transferkit.runs import load_source

    model, _ = load_source(src_run)
    model.eval()
    total = [0.0]

    def hook(m: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(m, torch.nn.Conv2d):
            total[0] += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            total[0] += m.in_features * m.out_features * (out.numel() // m.out_features)

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, *model.spec.input_shape))
    for h in hs:
        h.remove()
    return total[0]


def compute_note(args: argparse.Namespace, runs: Path, pairs: list[str]) -> str:
    """The compute comparison with the reference, from the settings and the pre-trained source runs."""
    srcs = sorted({p.split("->")[0] for p in pairs})
    info = {}
    for s in srcs:
        hits = sorted(runs.glob(f"src-{s}-e{args.pretrain_epochs}*"))
        if hits and (hits[0] / "metrics.json").exists():
            info[s] = (model_macs(hits[0]), json.loads((hits[0] / "metrics.json").read_text())["n_train"])
    if not info:
        return "Compute vs the reference: not computed (no pre-trained source run found)."
    macs = max(m for m, _ in info.values())
    # recommended row: base phase 1 source + 1 target batch; self-training phase adds a re-styled target copy and
    # a forward-only teacher pass (a forward pass ~ 1/3 of a training step)
    per_method = args.iterations * args.batch_size * (0.5 * 2 + 0.5 * (3 + 1 / 3))
    big = max(info, key=lambda s: info[s][1])
    pre = args.pretrain_epochs * info[big][1]
    ours = (per_method + pre) * macs
    ref = REFERENCE_ITERS * 2 * REFERENCE_BATCH * REFERENCE_MACS
    return (f"Compute vs the reference: `small_cnn` {args.model_kwargs} costs {macs / 1e6:.1f}M multiply-adds per "
            f"28x28 image ({macs / REFERENCE_MACS:.1f}x the reference LeNet's {REFERENCE_MACS / 1e6:.1f}M); the "
            f"self-training row sees about {per_method:,.0f} images ({args.iterations} steps of {args.batch_size} source "
            f"+ {args.batch_size} target, its second half with an extra re-styled target copy and a forward-only teacher "
            f"pass) after a shared pre-training of {args.pretrain_epochs} epochs over the source training split "
            f"({pre:,} images for {big}): about {ours / 1e9:.0f} G multiply-adds per image pass in all vs the "
            f"reference's {REFERENCE_ITERS} x 2 x {REFERENCE_BATCH} x {REFERENCE_MACS / 1e6:.1f}M = {ref / 1e9:.0f} G "
            f"({ours / ref:.1f}x), for one method; in source samples: {args.iterations * args.batch_size:,} vs "
            f"{REFERENCE_ITERS * REFERENCE_BATCH:,}.")


def _machine() -> dict[str, Any]:
    try:
        from bench_common import machine_info

        return machine_info()
    except Exception as e:  # noqa: BLE001 - the description is best effort
        return {"error": repr(e), "cpus": os.cpu_count()}


def pretrained(data: str, runs: Path, epochs: int, model_kwargs: dict[str, Any]) -> Path:
    """The source run for ``data``: reused when ``runs/uda/src-<data>-...`` holds a complete run."""
    tag = "-".join(f"{k}{v}" for k, v in sorted(model_kwargs.items()))
    out = runs / (f"src-{data}-e{epochs}" + (f"-{tag}" if tag else ""))
    if (out / "metrics.json").exists() and (out / "model.safetensors").exists():
        return out
    tk.pretrain(data, out=out, epochs=epochs, overwrite=True, progress="off", model_kwargs=model_kwargs)
    return out


def run_cell(src_run: Path, s: str, t: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = adapt(src_run, s, t, method="auto", target_labels_for_eval=t, seed=seed, iterations=args.iterations,
              batch_size=args.batch_size, max_source=args.max_source, validator=args.validator, progress="off",
              restyle_source=args.augment, options={"candidates": ",".join(args.methods)})
    m = r.metrics
    cands = {c["label"]: {"acc": c["target_accuracy"], "acc_all": c["target_accuracy_all"], "validators": c["validators"],
                          "seconds": c["train_seconds"]} for c in m["candidates"]}
    return {"pair": f"{s}->{t}", "seed": seed, "target_before": m["target_before"]["accuracy"],
            "target_before_all": m["target_all_before"]["accuracy"], "candidates": cands,
            "auto_choice": m["chosen"], "auto_acc": m["target"]["accuracy"], "auto_acc_all": m["target_all"]["accuracy"],
            "auto_confusion": m["target"].get("confusion"),
            "selection": m.get("selection"), "epochs": r.history[0]["epochs_run"] if r.history else None,
            "seconds": time.perf_counter() - t0}


def run_extra(src_run: Path, s: str, t: str, seed: int, names: list[str], args: argparse.Namespace
              ) -> dict[str, Any]:
    """Methods run as extra rows for an existing cell (same split and budget; not ``auto`` candidates)."""
    r = adapt(src_run, s, t, method="auto", target_labels_for_eval=t, seed=seed, iterations=args.iterations,
              batch_size=args.batch_size, max_source=args.max_source, validator=args.validator, progress="off",
              restyle_source=args.augment, options={"candidates": ",".join(names)})
    return {c["label"]: {"acc": c["target_accuracy"], "acc_all": c["target_accuracy_all"], "validators": c["validators"],
                         "seconds": c["train_seconds"]} for c in r.metrics["candidates"]}


def _missing_extra(cell: dict[str, Any] | None, names: list[str]) -> list[str]:
    if cell is None:
        return []
    have = set(cell.get("extra", {})) | set(cell["candidates"])
    return [n for n in names if method_candidates("auto", {"candidates": n})[0][0] not in have]


def _row(c: dict[str, Any], k: str) -> dict[str, Any] | None:
    return c["candidates"].get(k) or c.get("extra", {}).get(k)


def run_oracle(src_run: Path, t: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = tk.transfer(src_run, t, strategy="full", seed=seed, epochs=args.oracle_epochs, progress="off", augment="off")
    return {"target": t, "seed": seed, "acc": r.metrics["target"]["accuracy"], "seconds": time.perf_counter() - t0}


def _ms(xs: list[float]) -> str:
    if not xs:
        return "—"
    m = 100 * statistics.mean(xs)
    return f"{m:.1f} ± {100 * statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{m:.1f}"


def _table(cells: dict[str, Any], oracles: dict[str, Any], pairs: list[str], key: str, args: argparse.Namespace
           ) -> list[str]:
    """Mean ± std per (row, pair) of accuracy ``key`` (``acc_all``: every target image; ``acc``: held out)."""
    before = "target_before_all" if key == "acc_all" else "target_before"
    auto = "auto_acc_all" if key == "acc_all" else "auto_acc"

    def per(pair: str) -> list[dict[str, Any]]:
        return [c for c in cells.values() if c["pair"] == pair]

    rows = list(dict.fromkeys(k for c in cells.values() for k in c["candidates"]))
    extra = [k for k in dict.fromkeys(k for c in cells.values() for k in c.get("extra", {})) if k not in rows]
    rows += extra
    best: dict[str, str] = {}
    for pair in pairs:
        means = {k: statistics.mean([_row(c, k)[key] for c in per(pair) if _row(c, k)])  # type: ignore[index]
                 for k in rows if any(_row(c, k) for c in per(pair))}
        best[pair] = max(means.items(), key=lambda kv: kv[1])[0]
    out = ["| method | " + " | ".join(pairs) + " |", "|" + "---|" * (len(pairs) + 1),
           "| source model before adaptation | " + " | ".join(_ms([c[before] for c in per(p)]) for p in pairs) + " |"]
    for k in rows:
        vals = []
        for p in pairs:
            got = [(c["seed"], _row(c, k)[key]) for c in per(p) if _row(c, k)]  # type: ignore[index]
            v = _ms([a for _, a in got])
            if k in extra and got and len(got) < len(per(p)):
                v += f" (seed {', '.join(str(sd) for sd, _ in got)})"
            vals.append(f"**{v}**" if best[p] == k else v)
        out.append(f"| {k}{' †' if k in extra else ''} | " + " | ".join(vals) + " |")
    out.append(f"| **auto ({args.validator}, label-free)** | " + " | ".join(_ms([c[auto] for c in per(p)]) for p in pairs) + " |")
    orow = [_ms([o["acc"] for o in oracles.values() if o["target"] == p.split("->")[1]]) for p in pairs]
    out.append("| oracle (labelled target, full fine-tune; its own test split) | " + " | ".join(orow) + " |")
    return out


def _weakest_classes(cells: dict[str, Any], pairs: list[str], k: int = 3) -> list[str]:
    """Per pair: the ``k`` target classes the ``auto`` choice recalls worst on the held-out part (confusion
    summed over seeds), each with the class it is most often read as. Empty when no cell has a confusion."""
    out = []
    for pair in pairs:
        cms = [c["auto_confusion"] for c in cells.values() if c["pair"] == pair and c.get("auto_confusion")]
        if not cms:
            continue
        cm = [[sum(m[i][j] for m in cms) for j in range(len(cms[0]))] for i in range(len(cms[0]))]
        rec = {i: row[i] / sum(row) for i, row in enumerate(cm) if sum(row)}
        worst = sorted(rec, key=lambda i: rec[i])[:k]
        desc = []
        for i in worst:
            j = max((j for j in range(len(cm)) if j != i), key=lambda j: cm[i][j])
            wrong = f" (read as {j}: {cm[i][j]} of {sum(cm[i])})" if cm[i][j] else ""
            desc.append(f"class {i}: {100 * rec[i]:.1f}%{wrong}")
        out.append(f"| {pair} | {len(cms)} | " + "; ".join(desc) + " |")
    if not out:
        return []
    return ["", "Weakest target classes of the `auto` choice (held-out part, confusions summed over seeds; class = "
            "model output index, the digit itself here):", "", "| pair | seeds | class: recall (most frequent wrong "
            "reading) |", "|---|---|---|", *out]


def render(db: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    cells, oracles = db["cells"], db["oracle"]
    pairs = [p for p in dict.fromkeys(c["pair"] for c in cells.values())]
    mk = db.get("settings", {}).get("model_kwargs", args.model_kwargs)
    lines = ["# Unsupervised domain adaptation benchmark", "",
             "<!-- generated by benchmarks/uda.py; do not edit by hand -->", "",
             *[f"- command: `{c}`" for c in db.get("commands") or [command]], f"- date (UTC): {db['date']}",
             (f"- machine: {db['machine'].get('cpu_model', '?')}, {db['machine'].get('usable_cpus', '?')} usable CPUs, "
             f"torch {db['machine'].get('torch', '?')}, {args.threads} torch thread(s); shared with other jobs"),
             (f"- model: `small_cnn` {mk} pre-trained {args.pretrain_epochs} epochs on the source (plain, shared by all "
             f"seeds); each method then trains {args.iterations} iterations at batch {args.batch_size} source + "
             f"{args.batch_size} target ({args.iterations * args.batch_size:,} source samples; the reference: 500 x 128 "
             f"= 64,000), SGD lr 0.01 momentum 0.9 with cosine decay, no gradient clipping"
             + (", source batches randomly re-styled (`restyle_source=True`: affine, elastic, stroke width, blur, resolution)"
                if args.augment else "")),
             (f"- label-free selection (`auto`): validator `{args.validator}` over every row below (method, checkpoint); "
              "target labels only score"),
             ("- accuracy (%) on **all target images** (the reference protocol; transductive) and, second table, on the "
              "held-out 30% of the target that no method adapted on"), ""]
    seeds = {p: sorted(c["seed"] for c in cells.values() if c["pair"] == p) for p in pairs}
    lines += ["Seeds per pair: " + "; ".join(f"{p} {v}" for p, v in seeds.items())
              + " (mean ± std over seeds where more than one).", "", "## Accuracy on all target images", ""]
    lines += _table(cells, oracles, pairs, "acc_all", args)
    lines += ["", "## Accuracy on the held-out target part", ""]
    lines += _table(cells, oracles, pairs, "acc", args)

    def per(pair: str) -> list[dict[str, Any]]:
        return [c for c in cells.values() if c["pair"] == pair]

    lines += ["", "## Label-free choice vs best (all target images)", "",
              "| pair | seed | auto choice | auto acc | best row (by label) | best acc | regret |", "|---|---|---|---|---|---|---|"]
    gaps = []
    for c in sorted(cells.values(), key=lambda c: (c["pair"], c["seed"])):
        bk, bv = max(c["candidates"].items(), key=lambda kv: kv[1]["acc_all"])
        gaps.append(bv["acc_all"] - c["auto_acc_all"])
        lines.append(f"| {c['pair']} | {c['seed']} | {c['auto_choice']} | {100 * c['auto_acc_all']:.1f} | {bk} | "
                     f"{100 * bv['acc_all']:.1f} | {100 * (bv['acc_all'] - c['auto_acc_all']):.1f} |")
    mean_gap = 100 * statistics.mean(gaps) if gaps else float("nan")
    matches = sum(g == 0 for g in gaps)
    lines += ["", (f"Mean regret of the label-free choice: {mean_gap:.1f} points "
              f"({'PASS' if mean_gap <= 3 else 'FAIL'}: criterion ≤ 3 points); it picks the label-best row in "
              f"{matches} of {len(gaps)} cells."), "",
              "## Acceptance targets (all target images, as the reference)", "",
              ("| pair | reference source-only | reference best | required (label-free) | transferkit source model | "
              "transferkit auto (all images) | transferkit auto (held out) | verdict |"), "|---|---|---|---|---|---|---|---|"]
    for (s, t), (ref_so, ref_best, need) in REFERENCE.items():
        pair = f"{s}->{t}"
        if pair not in pairs:
            lines.append(f"| {pair} | {ref_so} | {ref_best} | {need} | not run | not run | not run | NOT RUN |")
            continue
        auto = 100 * statistics.mean([c["auto_acc_all"] for c in per(pair)])
        held = 100 * statistics.mean([c["auto_acc"] for c in per(pair)])
        so = 100 * statistics.mean([c["target_before_all"] for c in per(pair)])
        lines.append(f"| {pair} | {ref_so} | {ref_best} | {need} | {so:.1f} | {auto:.1f} | {held:.1f} | "
                     f"{'PASS' if auto >= need else 'FAIL'} |")
    lines += _weakest_classes(cells, pairs)
    lines += ["", (f"Reference oracle on digits8: {REFERENCE_ORACLE['digits8']}; here: "
              f"{_ms([o['acc'] for o in oracles.values() if o['target'] == 'digits8'])}."), ""]
    per_method = {}
    for c in cells.values():
        for k, v in {**c.get("extra", {}), **c["candidates"]}.items():
            per_method.setdefault(k, []).append(v["seconds"])
    lines += ["## Time", "", "Mean seconds per method run (one pair, one seed, " + f"{args.threads} thread(s), shared machine): "
              + ", ".join(f"{k} {statistics.mean(v):.0f}s" for k, v in per_method.items()) + ".", "",
              "Per (pair, seed), all methods: " + ", ".join(
                  f"{c['pair']}/s{c['seed']} {c['seconds']:.0f}s" for c in cells.values()) + ".", ""]
    notes = NOTES[:5] + [compute_note(args, Path(args.runs), pairs)] + NOTES[5:]
    lines += ["## Notes", ""] + [f"- {n}" for n in notes + db.get("notes", [])] + [""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: one pair, one seed, 60 iterations, 3 methods; writes runs/uda/quick/")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--main-only", action="store_true", help="only the three pairs with acceptance targets")
    ap.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="optimizer steps per method")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--model-kwargs", default=json.dumps(MODEL_KWARGS), help="small_cnn options (JSON)")
    ap.add_argument("--pretrain-epochs", type=int, default=8)
    ap.add_argument("--oracle-epochs", type=int, default=5)
    ap.add_argument("--max-source", type=int, default=None)
    ap.add_argument("--no-augment", dest="augment", action="store_false", help="plain source batches")
    ap.add_argument("--validator", default="im")
    ap.add_argument("--methods", default=",".join(METHODS), help="auto candidates (name or name:key=value:...)")
    ap.add_argument("--pairs", default="", help="comma list like mnist5k->digits8 (default: all six pairs)")
    ap.add_argument("--extra-methods", default="",
                    help="methods added as extra rows to existing cells (same split and budget; not auto candidates)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--in-process", action="store_true", help="run everything in this process (default: one "
                    "child process per (seed, pair), sequentially, seed-major)")
    ap.add_argument("--only-seed", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--render-only", action="store_true", help="rewrite the Markdown from the JSON; run nothing")
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "uda"))
    args = ap.parse_args()
    argv = sys.argv[1:]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.extra_methods = [m.strip() for m in args.extra_methods.split(",") if m.strip()]
    args.model_kwargs = json.loads(args.model_kwargs)
    pairs = [tuple(p.split("->")) for p in args.pairs.split(",") if p] or (
        list(MAIN_PAIRS) + ([] if args.main_only else REVERSE_PAIRS))
    if args.quick:
        pairs, args.seeds, args.iterations = pairs[:1], 1, 60
        args.methods = ["source_only", "mcc", RECOMMENDED]
    torch.set_num_threads(args.threads)
    out, runs = Path(args.out), Path(args.runs)
    if args.quick and args.out == str(ROOT / "docs"):
        out = runs / "quick"  # a smoke run never overwrites the published docs/UDA.md
    out.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    name = "uda-quick" if args.quick else "uda"
    jpath = out / f"{name}.json"

    def load() -> dict[str, Any]:
        return json.loads(jpath.read_text()) if jpath.exists() else {"cells": {}, "oracle": {}}

    db = load()
    # where the files go (--out=/--runs=) is not a setting of the results: left out of the recorded command
    command = "OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/uda.py " + shlex.join(
        a for a in argv if not a.startswith(("--pairs=", "--only-seed=", "--out=", "--runs=")) and a != "--in-process")

    def save() -> None:
        # merge under a lock: two invocations (e.g. the main and the reverse pairs) may share one JSON
        with open(runs / f"{name}.json.lock", "w") as lock:  # under runs/, not next to the docs
            fcntl.flock(lock, fcntl.LOCK_EX)
            cur = load()
            for k in ("cells", "oracle"):
                db[k] = {**cur.get(k, {}), **db[k]}
            db["commands"] = list(dict.fromkeys(cur.get("commands", []) + db.get("commands", [])))
            jpath.write_text(json.dumps(db, indent=1))
        (out / ("UDA.md" if not args.quick else "UDA-quick.md")).write_text(render(db, args, command))

    if args.render_only:
        if not db["cells"]:
            sys.exit(f"--render-only: no results in {jpath}")
        for k, v in db.get("settings", {}).items():
            if k not in ("pairs",):
                setattr(args, k, v)
        command = db.get("command", command)
        save()
        return
    if not args.in_process:
        # one child process per (seed, pair), sequentially and seed-major: bounded memory, a crash loses one
        # cell, and a run cut short still has every pair at its first seed
        for seed in range(args.seeds):
            for s, t in pairs:
                cur = load()
                if (f"{s}->{t}/{seed}" not in cur["cells"] or f"{t}/{seed}" not in cur["oracle"]
                        or _missing_extra(cur["cells"].get(f"{s}->{t}/{seed}"), args.extra_methods)):
                    subprocess.run([sys.executable, __file__, *argv, f"--pairs={s}->{t}", "--in-process",
                                    f"--only-seed={seed}"], check=True)
        db = load()
        db["command"] = command
        db["commands"] = [c for c in db.get("commands", []) if c != command] + [command]
        save()
        return
    db.update(date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"), machine=_machine(),
              settings={k: v for k, v in vars(args).items() if k not in ("out", "runs", "pairs", "in_process", "only_seed")})
    db.setdefault("command", command)
    db["commands"] = list(dict.fromkeys(db.get("commands", []) + [command]))  # the parent's command, as run
    for seed in range(args.seeds) if args.only_seed is None else [args.only_seed]:
        for s, t in pairs:
            key = f"{s}->{t}/{seed}"
            src = pretrained(s, runs, args.pretrain_epochs, args.model_kwargs)
            if key not in db["cells"]:
                db["cells"][key] = run_cell(src, s, t, seed, args)
                c = db["cells"][key]
                print(key, c["auto_choice"], round(c["auto_acc_all"], 3),
                      {k: round(v["acc_all"], 3) for k, v in c["candidates"].items()}, f"{c['seconds']:.0f}s", flush=True)
                save()
            missing = _missing_extra(db["cells"][key], args.extra_methods)
            if missing:
                got = run_extra(src, s, t, seed, missing, args)
                db["cells"][key].setdefault("extra", {}).update(got)
                print(key, "extra", {k: round(v["acc_all"], 3) for k, v in got.items()}, flush=True)
                save()
            okey = f"{t}/{seed}"  # one oracle per target: fine-tuned from the first source that reaches it
            if okey not in db["oracle"]:
                db["oracle"][okey] = run_oracle(src, t, seed, args)
                print("oracle", okey, round(db["oracle"][okey]["acc"], 3), flush=True)
                save()
    save()


if __name__ == "__main__":
    main()
