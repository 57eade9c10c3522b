"""Does light augmentation of the training batches help transfer? Paired runs with and without it.

    python benchmarks/augment.py            # writes docs/AUGMENT.md and docs/augment.json
    python benchmarks/augment.py --targets digits8 & python benchmarks/augment.py --targets fontdigits; wait
    python benchmarks/augment.py            # the same, two targets in parallel, then the doc from the store
    python benchmarks/augment.py --effnet   # also EfficientNet-Lite0 lp_ft, 10 shots on digits8 (slow on a CPU)
    python benchmarks/augment.py --quick    # seconds: a 1-epoch source, 1 seed, 2-epoch runs; runs/augment-quick/

Source: small_cnn pretrained here on mnist5k (8 epochs, the library's defaults). Targets: digits8
(UCI handwritten digits) and fontdigits (printed digits), at 5 and 10 labelled examples per class,
strategies ``lp_ft`` and ``full`` at the library's defaults (at most 40 epochs, early stopping with
patience 10, batch 64). With ``--effnet`` also ImageNet EfficientNet-Lite0 ``lp_ft`` at 10 shots on
digits8 with its recipe (src/transferkit/strategies/recipes.py). Every run is made twice with the
same seed, so with the same split, the same few-shot draw and the same initial head: ``augment=off``
and ``augment=on`` (:mod:`transferkit.data.augment`; these images are grey, so the glyph policy:
small affine, no flip, no crop). The difference on - off of each pair is the measurement; the table
gives its mean over seeds and its standard error (sd / sqrt(n)). Finished runs are kept in
``<work>/results.json`` (an interrupted benchmark resumes).

The default follows a rule fixed before the runs: augmentation becomes the recipe's default for a
(backbone, strategy) pair when its pooled paired difference (every target, shot count and seed) is
positive by at least two standard errors (:data:`DECISION_SE`); else it stays off.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import Bench, Context, Store, generated_line

import transferkit

TARGETS = ["digits8", "fontdigits"]
SHOTS = [5, 10]
STRATEGIES = ["lp_ft", "full"]
SEEDS = [0, 1, 2]
#: a pair's pooled mean difference must reach this many standard errors for augmentation to become its default
DECISION_SE = 2.0


@dataclass(frozen=True)
class Cell:
    """One (backbone, target, shots, strategy) setting, run with and without augmentation per seed."""

    backbone: str
    target: str
    shots: int
    strategy: str
    train: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def label(self) -> str:
        return f"{self.backbone}|{self.target}|{self.shots}|{self.strategy}"


def plan(quick: bool, targets: list[str], effnet: bool) -> list[Cell]:
    """The settings to run: quick is one short cell."""
    if quick:
        return [Cell("small_cnn", "digits8", 5, "lp_ft", {"epochs": 2})]
    cells = [Cell("small_cnn", t, k, s) for t in targets for k in SHOTS for s in STRATEGIES]
    if effnet and "digits8" in targets:
        cells.append(Cell("efficientnet_lite0", "digits8", 10, "lp_ft"))
    return cells


def source_run(work: Path, quick: bool) -> Path:
    """small_cnn pretrained on mnist5k (reused when a complete run is there)."""
    path = work / "source"
    if not (path / "metrics.json").exists():
        kwargs: dict[str, Any] = {"epochs": 1, "model_kwargs": {"width": 8, "hidden": 32}} if quick else {}
        transferkit.pretrain("mnist5k", "small_cnn", path, seed=0, progress="off", overwrite=True, **kwargs)
    return path


def run(cells: list[Cell], seeds: list[int], store: Store, work: Path, quick: bool) -> None:
    for cell in cells:
        source: str | Path = cell.backbone if cell.backbone != "small_cnn" else source_run(work, quick)
        for seed in seeds:
            for aug in ("off", "on"):  # the pair back to back: the same machine load for both
                def one(cell: Cell = cell, seed: int = seed, aug: str = aug,
                        source: str | Path = source) -> dict[str, Any]:
                    m = transferkit.transfer(source, cell.target, strategy=cell.strategy, shots=cell.shots,
                                             seed=seed, progress="off", augment=aug, **cell.train).metrics
                    return {"accuracy": m["target"]["accuracy"], "train_seconds": m["train_seconds"],
                            "n_train": m["n_train"], "epochs": [p["epochs"] for p in m["phases"]],
                            "augmented": m["strategy_info"].get("augment", {}).get("augmented", [])}

                store.cell(f"{cell.label}|{aug}|{seed}", one,
                           lambda r: f"{100 * r['accuracy']:.1f}% ({r['wall_seconds']:.0f} s)")


def paired(diffs: list[float]) -> dict[str, Any]:
    """Mean of paired differences, its standard error (sd / sqrt(n)) and the differences."""
    n = len(diffs)
    se = statistics.stdev(diffs) / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": statistics.fmean(diffs), "se": se, "n": n, "diffs": diffs}


def summarise(cells: list[Cell], seeds: list[int], done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for c in cells:
        off = [done[f"{c.label}|off|{s}"] for s in seeds]
        on = [done[f"{c.label}|on|{s}"] for s in seeds]
        rows.append({"backbone": c.backbone, "target": c.target, "shots": c.shots, "strategy": c.strategy,
                     "train": c.train, "n_train": off[0]["n_train"],
                     "accuracy_off": statistics.fmean(r["accuracy"] for r in off),
                     "accuracy_on": statistics.fmean(r["accuracy"] for r in on),
                     "difference": paired([b["accuracy"] - a["accuracy"] for a, b in zip(off, on, strict=True)]),
                     "seconds_off": statistics.fmean(r["train_seconds"] for r in off),
                     "seconds_on": statistics.fmean(r["train_seconds"] for r in on),
                     "epochs_off": statistics.fmean(sum(r["epochs"]) for r in off),
                     "epochs_on": statistics.fmean(sum(r["epochs"]) for r in on),
                     "augmented_phases": on[0]["augmented"]})
    return rows


def decide(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (backbone, strategy): the pooled paired difference and the default it earns (:data:`DECISION_SE`)."""
    pairs: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        pairs.setdefault((r["backbone"], r["strategy"]), []).extend(r["difference"]["diffs"])
    out = []
    for (backbone, strategy), diffs in pairs.items():
        d = paired(diffs)
        better = d["n"] > 1 and d["mean"] > 0 and d["mean"] >= DECISION_SE * d["se"]
        out.append({"backbone": backbone, "strategy": strategy, "pooled": d, "default": "on" if better else "off"})
    return out


def op_seconds(repeats: int = 20) -> dict[str, float]:
    """Median seconds of one :func:`~transferkit.data.augment.augment_batch` call on a training batch."""
    import torch

    from transferkit.data.augment import LightAugment, augment_batch

    gen = torch.Generator().manual_seed(0)
    out = {}
    for label, shape, kind in (("64 x 1 x 28 x 28, glyph", (64, 1, 28, 28), "glyph"),
                               ("16 x 3 x 224 x 224, photo", (16, 3, 224, 224), "photo")):
        x, policy = torch.rand(shape), LightAugment.for_kind(kind)  # type: ignore[arg-type]
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            augment_batch(x, policy, gen)
            times.append(time.perf_counter() - t0)
        out[label] = statistics.median(times)
    return out


def _pt(d: dict[str, Any]) -> str:
    se = "" if math.isnan(d["se"]) else f" ± {100 * d['se']:.1f}"
    return f"{100 * d['mean']:+.1f}{se}"


def render(doc: dict[str, Any]) -> str:
    rows, decisions, seeds, ops = doc["rows"], doc["decisions"], doc["seeds"], doc["augment_call_seconds"]
    lines = ["# Light augmentation for transfer on images", "",
             generated_line(doc, tail=f"; runs took {doc['wall_seconds'] / 60:.1f} min of wall time "
                            "(summed over runs)"), "",
             "`--augment on|affine|off|auto` (`transfer` and `pretrain`; `augment=` in the Python API) applies a "
             "light, label-preserving policy to every training batch, on the fly (src/transferkit/data/augment.py): a "
             "random rotation within ±10°, a shift within ±8% of the side (about 2 px on 28x28) and a scale in "
             "0.9-1.1 for every image; colour photos also get a random resized crop (50-100% of the area, aspect "
             "3/4-4/3) and a horizontal flip. Grey images (one channel, or three equal ones, as these digits are "
             "for EfficientNet) are treated as glyphs: never flipped or cropped, since a mirrored digit is not the "
             "digit. Validation and test inputs are never augmented. A probe on cached features cannot be: "
             "`linear_probe` trains no augmented batch and `lp_ft` augments its fine-tuning phase only "
             "(metrics.json `strategy_info.augment` lists the phases each way).", "",
             f"Each run is made twice with the same seed (same split, few-shot draw and initial head), off and on; "
             f"the difference on − off is paired. Test-split accuracy (%), means over seeds {seeds}; the "
             "difference is mean ± standard error of the paired differences (points). Seconds and epochs: mean "
             "training time and epochs run (all phases; early stopping ends them) per run.", "",
             "| backbone | target | shots | strategy | off | on | on − off (pt) | seconds off | seconds on "
             "| epochs off | epochs on |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['backbone']}` | {r['target']} | {r['shots']} ({r['n_train']} images) | `{r['strategy']}` "
                     f"| {100 * r['accuracy_off']:.1f} | {100 * r['accuracy_on']:.1f} | {_pt(r['difference'])} "
                     f"| {r['seconds_off']:.1f} | {r['seconds_on']:.1f} | {r['epochs_off']:.1f} "
                     f"| {r['epochs_on']:.1f} |")
    lines += ["", f"The default, by a rule fixed before the runs: on for a (backbone, strategy) pair when its pooled "
              f"paired difference (all its rows and seeds) is positive by at least {DECISION_SE:g} standard errors; "
              "otherwise off. `--augment auto` (the default) takes it from the pair's recipe "
              "(src/transferkit/strategies/recipes.py), which config.json records under `recipe`; every pair "
              "not listed here, every other strategy and every other backbone stays off.", "",
              "| backbone | strategy | pooled on − off (pt) | pairs | default |", "|---|---|---|---|---|"]
    for d in decisions:
        lines.append(f"| `{d['backbone']}` | `{d['strategy']}` | {_pt(d['pooled'])} | {d['pooled']['n']} "
                     f"| **{d['default']}** |")
    off = [f"`{d['backbone']}` `{d['strategy']}`" for d in decisions if d["default"] == "off"]
    if off:
        lines += ["", "Off by default: " + ", ".join(off) + ": the measured difference did not clear the rule, so "
                  "augmentation stays an option there (`--augment on`), not a default."]
    lines += ["", "Where the time goes: one augmentation call costs "
              + "; ".join(f"{1000 * v:.2f} ms on a {k} batch" for k, v in ops.items())
              + " (median of 20 here): the differences in training time come mostly from the epochs that early "
              "stopping lets run (columns epochs), not from the augmentation itself.", "",
              "Not measured here: the photo policy (crop + flip) has no run in this table, since no real colour "
              "photo data set installs offline here, so a recipe turns on the measured part only "
              "(`augment = affine`: the small affine map, also for colour images); crop + flip apply only with an "
              "explicit `--augment on`, and `--augment off` turns it all off."]
    return "\n".join(lines) + "\n"


def measure(ctx: Context) -> dict[str, Any]:
    cells = plan(ctx.quick, ctx.args.targets.split(","), ctx.args.effnet)
    store = Store(ctx.work / "results.json")
    run(cells, ctx.seeds, store, ctx.work, ctx.quick)
    keys = [f"{c.label}|{a}|{s}" for c in cells for a in ("off", "on") for s in ctx.seeds]
    rows = summarise(cells, ctx.seeds, store.done)
    return {"seeds": ctx.seeds, "decision_se": DECISION_SE, "rows": rows, "augment_call_seconds": op_seconds(),
            "decisions": decide(rows), "runs": {k: store[k] for k in keys},
            "wall_seconds": sum(store[k]["wall_seconds"] for k in keys)}


def options(p: Any) -> None:
    p.add_argument("--targets", default=",".join(TARGETS), help="run only these targets (parallel processes may "
                   "share --work; a final run without --targets writes the doc for all)")
    p.add_argument("--effnet", action="store_true", help="also EfficientNet-Lite0 lp_ft, 10 shots on digits8")


BENCH = Bench("augment", __doc__ or "", measure, render, options=options, seeds=",".join(map(str, SEEDS)),
              quick="seconds: 1-epoch source, 1 seed, 2-epoch runs")
main = BENCH.main


if __name__ == "__main__":
    sys.exit(main())
