"""Few-shot images: ``contrastive`` beside the best current strategies, EfficientNet-Lite0 at 10 shots (issue 19).

    python benchmarks/fewshot_image.py --seeds 0,1,2,3,4   # docs/FEWSHOT_IMAGE.md + docs/fewshot_image.json
    python benchmarks/fewshot_image.py --deadline-min 80   # starts no new run after 80 minutes (resume later)
    python benchmarks/fewshot_image.py --variants          # also the appendix: contrastive variants, chosen on
                                                           # validation accuracy only (--variants-only: just those)
    python benchmarks/fewshot_image.py --targets digits8   # one target's missing cells (same store)
    python benchmarks/fewshot_image.py --quick             # CI: digits8, seed 0, 2 short epochs
    python benchmarks/fewshot_image.py --render-only       # the page from docs/fewshot_image.json

Source: ImageNet EfficientNet-Lite0 (``efficientnet_lite0``) at the input size the CLI uses for it
(``transferkit.models.efficientnet.DEFAULT_RESOLUTION``, chosen in docs/IMAGE_RESOLUTION.md). Targets: digits8
and fontdigits, 10 labelled images per class. Every run is ``transferkit.transfer(source, target,
strategy=..., shots=10, seed=s)`` with nothing else: exactly what ``transferkit transfer --source
efficientnet_lite0 --data <target> --shots 10 --strategy <name> --seed s`` does (the backbone's recipe where one
exists, else the library's defaults), so every strategy of a seed trains on the same seeded split, the same 10
images per class and the same validation images, and is scored on the same test split (the split's fingerprint
is recorded once per target and seed, and each run's sizes are checked against it).

The current strategies beside ``contrastive`` are read from docs/image.json (benchmarks/image.py): its
EfficientNet-Lite0 rows at 10 shots, ranked by the mean over the two targets, keeping strategies a user runs
at their CLI defaults on labels alone (not ``scratch``, not the ``*_defaults`` columns that drop the recipe, not
``self_train``, which also reads the unlabelled rest of the training split); the top three are run here
again. "Best current" per target is the one of those with the highest mean test accuracy *in this run*
(a choice that favours the baseline). The criterion: contrastive minus best current, paired over seeds, is
at least -1 point.

CPU seconds are ``time.process_time`` around each ``transfer`` call (every thread of this process; data
preparation, training and the test evaluation); the load average is recorded before and after each run.
The appendix (``--variants``) runs contrastive with other options and picks a variant by the validation
accuracy of the final model only (the probe phase's best validation score); their test accuracies are
shown beside, labelled as tuned.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from harness import DOCS, Bench, Context, Store, generated_line, log, table

import transferkit
from transferkit.data import load_dataset
from transferkit.engine.features import extract_features
from transferkit.engine.precision import resolve_placement
from transferkit.models import from_pretrained
from transferkit.models.efficientnet import DEFAULT_RESOLUTION
from transferkit.pipeline.transfer import labelled_splits
from transferkit.strategies.recipes import resolve_settings
from transferkit.zeroshot import prototypes

SOURCE = "efficientnet_lite0"
TARGETS = ("digits8", "fontdigits")
SHOTS = 10
OURS = "contrastive"
N_CURRENT = 3
#: strategies of docs/image.json that are not "a current strategy at its CLI defaults on labels alone"
NOT_CURRENT = ("scratch", "self_train")
#: seeds a target needs before its verdict counts as measured
MIN_SEEDS = 3
#: the criterion: contrastive - best current >= this (a fraction)
LEAST = -0.01
#: quick mode: the training options of both runs (2 epochs of batch 16; CI smoke, not the measurement)
QUICK_TRAIN: dict[str, Any] = {"epochs": 2, "batch_size": 16}
#: quick mode fails when contrastive is more than this below the linear probe (a fraction)
QUICK_MARGIN = 0.10
#: appendix: contrastive variants (name -> transfer() keywords), chosen on validation accuracy only
VARIANTS: dict[str, dict[str, Any]] = {
    "recipe": {"lr": 1e-4, "batchnorm": "frozen", "batch_size": 16, "epochs": 5},
    "recipe_lr3e-4": {"lr": 3e-4, "batchnorm": "frozen", "batch_size": 16, "epochs": 5},
}


def current_strategies(image_doc: dict[str, Any], n: int = N_CURRENT) -> list[dict[str, Any]]:
    """The ``n`` strategies of docs/image.json's EfficientNet-Lite0 10-shot rows with the highest mean accuracy
    over the targets, among those a user runs at their CLI defaults on labels alone; with their per-target means."""
    rows = [r for r in image_doc["rows"] if r["source"] == SOURCE and r["shots"] == SHOTS and r["target"] in TARGETS]
    if {r["target"] for r in rows} != set(TARGETS):
        raise SystemExit(f"docs/image.json has no {SOURCE} {SHOTS}-shot row for each of {', '.join(TARGETS)}")
    names = set.intersection(*(set(r["accuracy"]) for r in rows))
    names = {s for s in names if s not in NOT_CURRENT and not s.endswith("_defaults")}
    means = {s: {r["target"]: statistics.fmean(r["accuracy"][s]) for r in rows} for s in names}
    ranked = sorted(names, key=lambda s: -statistics.fmean(means[s].values()))
    return [{"strategy": s, "image_json_mean": means[s]} for s in ranked[:n]]


def image_train(image_doc: dict[str, Any]) -> dict[str, Any]:
    """The training options docs/image.json's EfficientNet-Lite0 10-shot rows ran with (the same on each row)."""
    rows = [r for r in image_doc["rows"] if r["source"] == SOURCE and r["shots"] == SHOTS]
    return dict(rows[0].get("train", {})) if rows else {}


def fingerprint(target: str, seed: int) -> dict[str, Any]:
    """Sizes and a hash of the seeded split a transfer of ``target`` draws (train 10/class, validation, test)."""
    model = from_pretrained(SOURCE)
    ds = load_dataset(target, model=model.spec, seed=seed)
    parts = labelled_splits(ds, SHOTS, seed)
    h = hashlib.sha256()
    for p in parts:
        h.update(p.x.tobytes())
        h.update(p.require_labels().tobytes())
    return {"n_train": len(parts[0]), "n_val": len(parts[1]), "n_test": len(parts[2]), "sha256": h.hexdigest()[:16]}


def frozen_ncm(target: str, seed: int) -> dict[str, Any]:
    """The score contrastive's body phase early-stops on, before any tuning: nearest class mean (cosine to the
    normalised mean training feature of each class) of the frozen ImageNet features, on the validation split."""
    model = from_pretrained(SOURCE)
    train, val, _ = labelled_splits(load_dataset(target, model=model.spec, seed=seed), SHOTS, seed)
    place = resolve_placement(model, "fp32", "off")
    f_tr, f_va = (extract_features(model, torch.from_numpy(np.ascontiguousarray(d.x)), place) for d in (train, val))
    means = prototypes(f_tr, train.require_labels(), train.num_classes)
    pred = (torch.nn.functional.normalize(f_va, dim=-1) @ means.T).argmax(1).numpy()
    return {"val_accuracy": float((pred == val.require_labels()).mean())}


def one_run(target: str, strategy: str, seed: int, extra: dict[str, Any]) -> dict[str, Any]:
    """One ``transfer`` call: test accuracy, CPU and training seconds, the load around it, the phases."""
    load0 = os.getloadavg()
    c0 = time.process_time()
    r = transferkit.transfer(SOURCE, target, strategy=strategy, shots=SHOTS, seed=seed, progress="off", **extra)
    cpu = time.process_time() - c0
    m = r.metrics
    out: dict[str, Any] = {
        "accuracy": m["target"]["accuracy"], "cpu_seconds": cpu, "train_seconds": m["train_seconds"],
        "n_train": m["n_train"], "n_val": m["n_val"], "n_test": m["target"]["n"],
        "load_before": load0[0], "load_after": os.getloadavg()[0],
        "phases": [{k: p[k] for k in ("name", "epochs", "best_epoch", "best_val_acc", "seconds")} for p in m["phases"]],
        "val_accuracy": m["phases"][-1]["best_val_acc"], "notes": m.get("notes", [])}
    body = [h for h in r.history if h["name"] == "contrastive"]
    if body:  # the body phase's validation curve: nearest-class-mean accuracy per epoch
        out["body_val_curve"] = [e.get("val_score", e.get("val_acc")) for e in body[0]["history"]]
        out["contrastive"] = dict(m["strategy_info"].get("contrastive", {}))
    return out


def settings_of(strategy: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The training settings a run resolves (the recipe's, the user's, the defaults) and where each came from."""
    s = resolve_settings(SOURCE, strategy, extra, 0, new_run=False)
    keep = ("lr", "batch_size", "epochs", "batchnorm", "patience", "augment")
    return {"settings": {k: getattr(s.cfg, k) for k in keep} | {"head_lr_scale": s.head_lr_scale},
            "provenance": {k: s.provenance.get(k, "") for k in (*keep, "head_lr_scale")}}


def measure(ctx: Context) -> dict[str, Any]:
    quick = ctx.quick
    image_doc = json.loads((DOCS / "image.json").read_text())
    current: list[dict[str, Any]] = ([{"strategy": "linear_probe", "image_json_mean": {}}] if quick
                                     else current_strategies(image_doc))
    targets = ["digits8"] if quick else ctx.args.targets.split(",")
    if not set(targets) <= set(TARGETS):
        raise SystemExit(f"--targets: {ctx.args.targets!r} is not a comma-separated subset of {','.join(TARGETS)}")
    train = QUICK_TRAIN if quick else {}
    names = [OURS, *(c["strategy"] for c in current)]
    variants = VARIANTS if ctx.args.variants and not quick else {}
    store = Store(ctx.work / "results.json")
    deadline = ctx.started + 60 * ctx.args.deadline_min if ctx.args.deadline_min else None
    stopped = False

    def cell(key: str, run: Callable[[], dict[str, Any]]) -> None:
        nonlocal stopped
        if key not in store and deadline is not None and time.perf_counter() > deadline:
            stopped = True
            return
        store.cell(key, run, lambda r: f"{100 * r['accuracy']:.1f}% (val {100 * r.get('val_accuracy', 0):.1f}%, "
                                       f"{r['cpu_seconds']:.0f} CPU s, load {r['load_before']:.1f})")

    main_keys = [f"{t}|{n}|{seed}" for seed in ctx.seeds for t in targets for n in names]
    for seed in ctx.seeds:  # seed by seed, so that a deadline leaves whole seeds
        for target in targets:
            past = deadline is not None and time.perf_counter() > deadline
            if not past or any(f"{target}|{n}|{seed}" in store for n in names):  # its runs need them
                store.cell(f"{target}|split|{seed}", partial(fingerprint, target, seed), lambda r: str(r["sha256"]))
                store.cell(f"{target}|frozen_ncm|{seed}", partial(frozen_ncm, target, seed),
                           lambda r: f"validation {100 * r['val_accuracy']:.1f}%")
            for name in reversed(names) if not ctx.args.variants_only else ():  # cheap ones first, contrastive last
                cell(f"{target}|{name}|{seed}", partial(one_run, target, name, seed, train))
    for v, extra in variants.items():  # the appendix after the main table
        for seed in ctx.seeds:
            for target in targets:
                cell(f"{target}|{OURS}@{v}|{seed}", partial(one_run, target, OURS, seed, extra))
    if stopped:
        log(f"--deadline-min {ctx.args.deadline_min}: stopped starting runs; rerun to resume")
    missing = [k for k in main_keys + [f"{t}|{OURS}@{v}|{s}" for v in variants for s in ctx.seeds for t in targets]
               if k not in store]
    return {"source": SOURCE, "resolution": DEFAULT_RESOLUTION, "shots": SHOTS, "targets": targets,
            "seeds": ctx.seeds, "quick": quick, "train": train, "strategies": names, "current": current,
            "current_from": {"file": "docs/image.json", "generated": image_doc.get("generated"),
                             "excluded": [*NOT_CURRENT, "*_defaults"], "train": image_train(image_doc)},
            "settings": {n: settings_of(n, train) for n in names},
            "variants": {v: {"options": e, **settings_of(OURS, e)} for v, e in variants.items()},
            "complete": not missing, "missing": missing, "runs": store.done}


# --------------------------------------------------------------------------------------------- summaries


def _seeds(doc: dict[str, Any], target: str, names: list[str]) -> list[int]:
    """The seeds on which every one of ``names`` ran on ``target``."""
    return [s for s in doc["seeds"] if all(f"{target}|{n}|{s}" in doc["runs"] for n in names)]


def _acc(doc: dict[str, Any], target: str, name: str, seeds: list[int], key: str = "accuracy") -> list[float]:
    return [doc["runs"][f"{target}|{name}|{s}"][key] for s in seeds]


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (nan for one value)."""
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return statistics.fmean(values), se


def verdicts(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target: the best current strategy of this run and contrastive minus it, paired over the seeds all ran."""
    out = []
    for target in doc["targets"]:
        seeds = _seeds(doc, target, doc["strategies"])
        if not seeds:
            continue
        others = doc["strategies"][1:]
        best = max(others, key=lambda n: statistics.fmean(_acc(doc, target, n, seeds)))
        d = [a - b for a, b in zip(_acc(doc, target, OURS, seeds), _acc(doc, target, best, seeds), strict=True)]
        diff, se = mean_se(d)
        out.append({"target": target, "best": best, "seeds": seeds, "diff": diff, "se": se, "per_seed": d,
                    "held": diff >= (-QUICK_MARGIN if doc["quick"] else LEAST)})
    return out


def split_mismatches(doc: dict[str, Any]) -> list[str]:
    """Runs whose train / validation / test sizes differ from their target and seed's split fingerprint."""
    bad = []
    for key, r in doc["runs"].items():
        target, name, seed = key.split("|")
        split = doc["runs"].get(f"{target}|split|{seed}")
        sizes = ("n_train", "n_val", "n_test")
        if name not in ("split", "frozen_ncm") and split and any(r[k] != split[k] for k in sizes):
            bad.append(f"{key}: sizes {r['n_train']}/{r['n_val']}/{r['n_test']} differ from the seeded split's "
                       f"{split['n_train']}/{split['n_val']}/{split['n_test']}")
    return bad


def checks(doc: dict[str, Any]) -> list[str]:
    """Every run on its seed's split; in quick mode (CI) also contrastive no more than QUICK_MARGIN below the
    linear probe. The full run reports the criterion on its page (a result, not a failure of the script)."""
    if not doc["quick"]:
        return split_mismatches(doc)
    return split_mismatches(doc) + [f"{v['target']}: contrastive {100 * v['diff']:+.1f} pt against {v['best']} "
                                    f"(quick bound {-100 * QUICK_MARGIN:.0f})" for v in verdicts(doc) if not v["held"]]


# --------------------------------------------------------------------------------------------- the page


def _pm(values: list[float]) -> str:
    if not values:
        return "(not measured)"
    m, se = mean_se(values)
    return f"{100 * m:.1f} ± {100 * se:.1f}" if len(values) > 1 else f"{100 * m:.1f}"


def _main_rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = []
    for target in doc["targets"]:
        seeds = _seeds(doc, target, doc["strategies"])
        for n in doc["strategies"]:
            if not seeds:
                continue
            cpu = statistics.fmean(_acc(doc, target, n, seeds, "cpu_seconds"))
            load = statistics.fmean(_acc(doc, target, n, seeds, "load_before"))
            rows.append([target, f"`{n}`" + (" (new)" if n == OURS else ""),
                         f"`transferkit transfer --source {doc['source']} --data {target} --shots {doc['shots']} "
                         f"--strategy {n}`", _pm(_acc(doc, target, n, seeds)),
                         _pm(_acc(doc, target, n, seeds, "val_accuracy")), f"{cpu:.0f}", f"{load:.1f}",
                         str(len(seeds))])
    return rows


def _verdict_lines(doc: dict[str, Any]) -> list[str]:
    rows = []
    for v in verdicts(doc):
        n = len(v["seeds"])
        rows.append([v["target"], f"`{v['best']}`",
                     f"{100 * v['diff']:+.1f} ± " + (f"{100 * v['se']:.1f}" if n > 1 else "— (one seed)"),
                     ", ".join(f"{100 * d:+.1f}" for d in v["per_seed"]), str(n),
                     ("**yes**" if v["held"] else "**no**") + (f" (only {n} seed{'s' * (n > 1)}; 3 wanted)"
                                                               if n < MIN_SEEDS and not doc["quick"] else "")])
    bound = f"{100 * (-QUICK_MARGIN if doc['quick'] else LEAST):+.0f}"
    return table(["target", "best current (this run)", "contrastive − best (pt, paired, ± SE)", "per seed",
                  "seeds", f"held (≥ {bound} pt)?"], rows)


def _why_lines(doc: dict[str, Any]) -> list[str]:
    """The evidence: contrastive's body-phase validation curve (nearest class mean) and its final validation
    accuracy against each current strategy's, per target."""
    lines = []
    for target in doc["targets"]:
        seeds = _seeds(doc, target, doc["strategies"])
        if not seeds:
            continue
        runs = [doc["runs"][f"{target}|{OURS}|{s}"] for s in seeds]
        curves = [r.get("body_val_curve", []) for r in runs]
        body = [r["phases"][0] for r in runs]
        ncm = [doc["runs"][k]["val_accuracy"] for s in seeds if (k := f"{target}|frozen_ncm|{s}") in doc["runs"]]
        cap = doc["settings"][OURS]["settings"]["epochs"]
        cpu = {n: statistics.fmean(_acc(doc, target, n, seeds, "cpu_seconds")) for n in doc["strategies"]}
        lines.append(f"- **{target}** (seeds {', '.join(map(str, seeds))}): the contrastive body phase ran "
                     f"{', '.join(str(b['epochs']) for b in body)} epochs of at most {cap} (best at epoch "
                     f"{', '.join(str(b['best_epoch'] + 1) for b in body)}). Its early-stopping score, the "
                     f"nearest-class-mean validation accuracy, was {_pm(ncm)} % on the frozen ImageNet features "
                     f"before tuning, {_pm([c[0] for c in curves if c])} % after the first epoch and "
                     f"{_pm([max(c) for c in curves if c])} % at its best. Final validation accuracy: " + "; ".join(
                         f"`{n}` {_pm(_acc(doc, target, n, seeds, 'val_accuracy'))} %" for n in doc["strategies"])
                     + ". CPU seconds: " + "; ".join(f"`{n}` {c:.0f}" for n, c in cpu.items())
                     + f" (contrastive {cpu[OURS] / max(c for n, c in cpu.items() if n != OURS):.0f}x the "
                       "costliest current strategy).")
        for s, c, b in zip(seeds, curves, body, strict=True):
            first_full = next((i for i, x in enumerate(c) if x >= 1.0), None)
            stuck = (f" — the score reached 100 % at epoch {first_full + 1}; a tie is broken by the lower "
                     f"validation loss, which kept falling, so early stopping never fired before the {cap}-epoch cap"
                     if first_full is not None and b["epochs"] == cap else "")
            lines.append(f"  - seed {s} body curve (%): " + " ".join(f"{100 * x:.0f}" for x in c) + stuck)
    return lines


def _variant_lines(doc: dict[str, Any]) -> list[str]:
    if not doc["variants"]:
        return []
    rows, picked = [], None
    for target in doc["targets"]:
        names = [OURS, *(f"{OURS}@{v}" for v in doc["variants"])]
        seeds = _seeds(doc, target, names)
        if not seeds:
            continue
        best_val = max(names, key=lambda n: statistics.fmean(_acc(doc, target, n, seeds, "val_accuracy")))
        for n in names:
            opts = doc["variants"].get(n.split("@")[1], {}).get("options", {}) if "@" in n else {}
            rows.append([target, f"`{n}`" + (" ← best on validation" if n == best_val else ""),
                         ", ".join(f"{k}={v}" for k, v in opts.items()) or "CLI defaults",
                         _pm(_acc(doc, target, n, seeds, "val_accuracy")), _pm(_acc(doc, target, n, seeds)),
                         f"{statistics.fmean(_acc(doc, target, n, seeds, 'cpu_seconds')):.0f}", str(len(seeds))])
        picked = best_val
    if not rows:
        return []
    return ["", "## Appendix: tuned contrastive variants (chosen on validation accuracy; not the CLI default)", "",
            "Each variant is `contrastive` with the listed training options, on the same splits and seeds. The "
            "choice reads the **validation** column only (the final model's accuracy on the run's validation "
            "images, 10 per class); the test column is shown for the record and was not used to choose. "
            + (f"Last target's pick: `{picked}`." if picked else ""), "",
            *table(["target", "variant", "options", "validation (%)", "test (%)", "CPU s", "seeds"], rows)]


def render(doc: dict[str, Any]) -> str:
    vs = verdicts(doc)
    held = bool(vs) and all(v["held"] for v in vs) and len(vs) == len(doc["targets"])
    cur = doc["current"]
    lines = ["# Few-shot images: `contrastive` beside the current strategies (EfficientNet-Lite0, 10 shots)", "",
             generated_line(doc), "",
             f"Source `{doc['source']}` (ImageNet weights) at {doc['resolution']} px, the size the CLI uses for it "
             "(docs/IMAGE_RESOLUTION.md). 10 labelled images per class; every strategy of a seed trains on the same "
             "seeded split and images and is scored on the same test split (fingerprints in the JSON, "
             "`<target>|split|<seed>`). Each row is the command shown, with no other flag (the backbone's recipe "
             "where one exists, else the library defaults: settings and their provenance below). Accuracy: mean ± "
             "standard error over seeds; CPU s: `time.process_time` of the whole `transfer` call "
             f"({doc['machine']['torch_threads']} torch thread(s)), mean; load: the 1-minute load average when the run "
             f"started ({doc['machine']['usable_cpus']} usable cores, shared)."
             + (" **Quick mode** (CI smoke): training options " + ", ".join(f"{k}={v}" for k, v in
                                                                        doc["train"].items()) + "." if doc["quick"]
                else ""), "",
             "The current strategies beside it are the top " + str(len(cur)) + " of " + doc["current_from"]["file"]
             + f" ({doc['current_from']['generated']}) on these rows, by mean test accuracy over both targets, among "
             "strategies run at their CLI defaults on labels alone (excluded: "
             + ", ".join(f"`{x}`" for x in doc["current_from"]["excluded"]) + "): "
             + ", ".join(f"`{c['strategy']}` (" + ", ".join(f"{t} {100 * a:.1f}" for t, a in
                                                             c["image_json_mean"].items()) + ")" for c in cur)
             + ". That file ran every column with " + (", ".join(f"{k}={v}" for k, v in
                                                           doc["current_from"].get("train", {}).items()) or "defaults")
             + "; here each runs at its CLI defaults.", "",
             *table(["target", "strategy", "command", "test accuracy (%)", "validation accuracy (%)", "CPU s",
                     "load", "seeds"], _main_rows(doc)), "",
             "## The criterion", "",
             "Issue 19: on the image tasks `contrastive` is at least as accurate as the best current strategy (within "
             "1 point). Best current = the current strategy with the highest mean test accuracy in this run (picked "
             "after the fact, which favours it).", "", *_verdict_lines(doc), "",
             ("**Held on every target**" + ("." if all(len(v["seeds"]) >= MIN_SEEDS for v in vs) else
                                           ", but on fewer than 3 seeds for " + ", ".join(
                                               v["target"] for v in vs if len(v["seeds"]) < MIN_SEEDS)
                                           + ": provisional, not established (see the per-seed spread).")
              if held else "**Not held**: " + ", ".join(
                 [*(f"{v['target']} (contrastive {100 * v['diff']:+.1f} pt)" for v in vs if not v["held"]),
                  *(f"{t} (not run)" for t in doc["targets"] if t not in {v["target"] for v in vs})])
              + ". There `contrastive` at its CLI defaults is more than 1 point below the best current strategy, or "
                "was not measured; the evidence follows.")
             + ("" if doc.get("complete", True) else " **Unfinished**: not run in the time this run had (its "
                "deadline): " + ", ".join(f"`{k}`" for k in doc.get("missing", [])) + "."), "",
             "## Why (measured)", "", *_why_lines(doc), "",
             "Settings each row ran with (resolved as the CLI resolves them; provenance in brackets):", "",
             *[f"- `{n}`: " + ", ".join(f"{k}={v} ({doc['settings'][n]['provenance'][k]})"
                                        for k, v in doc["settings"][n]["settings"].items())
               for n in doc["strategies"]],
             *_variant_lines(doc)]
    return "\n".join(lines) + "\n"


def options(p: Any) -> None:
    p.add_argument("--variants", action="store_true", help="also run the appendix's contrastive variants")
    p.add_argument("--targets", default=",".join(TARGETS),
                   help="run only these targets' missing cells (the page reports these targets)")
    p.add_argument("--variants-only", action="store_true",
                   help="run no missing main-table cell, only the appendix's (stored main cells are still reported)")
    p.add_argument("--deadline-min", type=float, default=0.0, help="start no new run after this many minutes")


BENCH = Bench("fewshot_image", __doc__ or "", measure, render, checks, options=options, seeds="0,1,2",
              quick="digits8, seed 0, contrastive and linear_probe at 2 epochs of batch 16 (CI smoke)")
main = BENCH.main

if __name__ == "__main__":
    sys.exit(main())
