"""Transfer gain on images: pretrained image backbones against training from scratch, 3 seeds.

    python benchmarks/image.py            # writes docs/IMAGE.md and docs/image.json (see its time line)
    python benchmarks/image.py --targets digits8 & python benchmarks/image.py --targets fontdigits; wait
    python benchmarks/image.py            # the same, two targets in parallel, then the doc from the store
    python benchmarks/image.py --quick    # 1 seed, digits8, 10 shots, short training (< 3 min); runs/image-quick/

Sources: ImageNet EfficientNet-Lite0 (``efficientnet_lite0`` at its default resolution) and the
MNIST CNN from the ``ccexam`` package (``mnist_cnn``), both by name through the public API
(``transferkit.transfer(source=..., data=...)``). Targets: digits8 (UCI handwritten digits) and
fontdigits (printed digits). Strategies: ``scratch`` (same architecture, random weights: the
baseline), ``linear_probe``, ``lp_ft`` and ``lora`` (when registered), each at its defaults plus
the backbone's recipe where one exists, with 10 labelled examples per class and with the whole
training split; at 10 shots also ``self_train`` (the rest of the training split unlabelled); on
EfficientNet-Lite0's 10-shot rows also ``full``, ``l2sp``, ``wise_ft`` and ``layerwise_lr``,
and every one of those fine-tuning strategies again as ``<name>_defaults`` (lr 1e-3, BatchNorm
training: no recipe), which shows what the recipe changes. Fine-tuning
EfficientNet-Lite0 on the whole split (~1,000 images; a minute or more an epoch on 2 busy cores)
for 3 seeds and 3 strategies does not fit the time budget, so there it runs ``linear_probe``
only; the table says so. Accuracy on each target's test split; finished runs are kept in ``<work>/results.json`` (an
interrupted run resumes; the reported time is the sum of the recorded runs' wall times).
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from typing import Any

from harness import Bench, Context, Store, generated_line, mean_sd

import transferkit
from transferkit.models.efficientnet import DEFAULT_RESOLUTION
from transferkit.strategies import STRATEGIES

SOURCES = ["efficientnet_lite0", "mnist_cnn"]
TARGETS = ["digits8", "fontdigits"]
#: fine-tuning strategies that EfficientNet-Lite0 runs with its recipe and again at the library's defaults
RECIPE_STRATEGIES = ["lp_ft", "full", "l2sp", "wise_ft", "layerwise_lr"]
# a `<strategy>_defaults` column runs the strategy at the library's defaults (lr 1e-3, BatchNorm re-estimating its
# statistics per batch) instead of the backbone's recipe (src/transferkit/strategies/recipes.py), which the plain
# column gets where the row leaves those settings unset
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {f"{s}_defaults": (s, {"lr": 1e-3, "batchnorm": "train"})
                                                   for s in RECIPE_STRATEGIES}
# the first four run on every row (plan() slices them); the rest on EfficientNet's 10-shot rows
#: transfer() arguments beyond training options: self_train also reads the rest of the target's training split,
#: unlabelled (``--unlabelled rest``); it runs on the 10-shot rows only (the whole split leaves nothing unlabelled)
TRANSFER_KWARGS: dict[str, dict[str, Any]] = {"self_train": {"unlabelled": "rest"}}
ALL_STRATEGIES = ["scratch", "linear_probe", "lp_ft", "lora", "self_train", "lp_ft_defaults",
                  *(x for s in RECIPE_STRATEGIES[1:] for x in (s, f"{s}_defaults"))]


@dataclass(frozen=True)
class Cell:
    """One (source, target, shots) setting: the strategies run there and their training options."""

    source: str
    target: str
    shots: int | None
    strategies: tuple[str, ...]
    train: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def label(self) -> str:
        return f"{self.source}|{self.target}|{'all' if self.shots is None else self.shots}"


def plan(quick: bool, targets: list[str] = TARGETS) -> list[Cell]:
    """The settings to run. 10 shots: batch 16 (7 steps an epoch); EfficientNet fine-tunes 5 epochs
    (about a minute a run here), the small CNN 20; the whole split: the small CNN 10 epochs."""
    strategies = tuple(s for s in ALL_STRATEGIES if VARIANTS.get(s, (s,))[0] in STRATEGIES)
    if quick:
        return [Cell("efficientnet_lite0", "digits8", 10, strategies, {"epochs": 1, "batch_size": 16}),
                Cell("mnist_cnn", "digits8", 10, strategies[:5], {"epochs": 5, "batch_size": 16})]
    cells = []
    for target in targets:
        cells += [Cell("mnist_cnn", target, 10, strategies[:5], {"epochs": 20, "batch_size": 16}),  # cheap ones first
                  Cell("mnist_cnn", target, None, strategies[:4], {"epochs": 10}),
                  Cell("efficientnet_lite0", target, None, ("linear_probe",)),
                  Cell("efficientnet_lite0", target, 10, strategies, {"epochs": 5, "batch_size": 16})]
    return cells


def run(cells: list[Cell], seeds: list[int], store: Store) -> None:
    for cell in cells:
        for seed in seeds:  # strategies innermost: linear_probe and lp_ft share the cached features
            for name in cell.strategies:
                strategy, extra = VARIANTS.get(name, (name, {}))
                extra = {**extra, **TRANSFER_KWARGS.get(name, {})}

                def one(cell: Cell = cell, seed: int = seed, strategy: str = strategy,
                        extra: dict[str, Any] = extra) -> dict[str, Any]:
                    m = transferkit.transfer(cell.source, cell.target, strategy=strategy, shots=cell.shots,
                                             seed=seed, progress="off", **{**cell.train, **extra}).metrics
                    return {"accuracy": m["target"]["accuracy"], "train_seconds": m["train_seconds"],
                            "n_train": m["n_train"], "epochs": [p["epochs"] for p in m["phases"]],
                            "notes": m.get("notes", [])}

                store.cell(f"{cell.label}|{name}|{seed}", one,
                           lambda r: f"{100 * r['accuracy']:.1f}% ({r['wall_seconds']:.0f} s)")


def summarise(cells: list[Cell], seeds: list[int], done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for cell in cells:
        acc = {s: [done[f"{cell.label}|{s}|{seed}"]["accuracy"] for seed in seeds] for s in cell.strategies}
        secs = {s: statistics.median(done[f"{cell.label}|{s}|{seed}"]["train_seconds"] for seed in seeds)
                for s in cell.strategies}
        row: dict[str, Any] = {"source": cell.source, "target": cell.target, "shots": cell.shots,
                               "n_train": done[f"{cell.label}|{cell.strategies[0]}|{seeds[0]}"]["n_train"],
                               "train": cell.train, "accuracy": acc, "median_train_seconds": secs}
        if "scratch" in acc:
            best = max((s for s in acc if s != "scratch"), key=lambda s: statistics.fmean(acc[s]))
            gains = [a - b for a, b in zip(acc[best], acc["scratch"], strict=True)]
            row["best"] = best
            row["gain_vs_scratch"] = {"mean": statistics.fmean(gains), "per_seed": gains}
        rows.append(row)
    return rows


def render(doc: dict[str, Any]) -> str:
    rows, seeds = doc["rows"], doc["seeds"]
    strategies = [s for s in ALL_STRATEGIES if any(s in r["accuracy"] for r in rows)]
    lines = ["# Transfer gain on images", "",
             generated_line(doc, tail=f"; runs took {doc['wall_seconds'] / 60:.1f} min of wall time "
                            "(summed over runs)"), "",
             f"Test-split accuracy (%), mean ± std over seeds {seeds}. `scratch` is the source's architecture with "
             "random weights trained on the same examples with the same budget. Shots: labelled training "
             "examples per class (validation uses at most as many); `all` is the whole training split. "
             "Strategies at their defaults, plus the backbone's recipe where one exists "
             "(src/transferkit/strategies/recipes.py: EfficientNet-Lite0 fine-tunes at lr 1e-4 with BatchNorm "
             "frozen); training options per row as listed, and they win over a recipe. A source whose classes are "
             "the target's (`mnist_cnn`: digits 0-9) keeps its head as the starting head (`--head auto`). "
             + "`X_defaults` = `X` with " + ", ".join(f"{k}={x}" for k, x in next(iter(VARIANTS.values()))[1].items())
             + " on top of the row's options (no recipe). `self_train` (semi-supervised) also reads the rest of the "
             "target's training split without its labels (`--unlabelled rest`): a logistic-regression teacher on the "
             "frozen features pseudo-labels it, the most confident quarter (equal per class) joins the labelled "
             "examples and `lp_ft` (with the backbone's recipe) trains on both (src/transferkit/strategies/semi.py).",
             "",
             "| source | target | shots | " + " | ".join(f"`{s}`" for s in strategies)
             + " | best − scratch (pt) | training options |",
             "|---|---|---|" + "---|" * len(strategies) + "---|---|"]
    for r in rows:
        cells = []
        for s in strategies:
            if s in r["accuracy"]:
                mean, sd = mean_sd(r["accuracy"][s])
                cells.append(f"{100 * mean:.1f} ± {100 * sd:.1f}")
            else:
                cells.append("—")
        gain = (f"`{r['best']}` {100 * r['gain_vs_scratch']['mean']:+.1f}" if "best" in r else "—")
        opts = ", ".join(f"{k}={v}" for k, v in r["train"].items()) or "defaults"
        shots = "all" if r["shots"] is None else str(r["shots"])
        lines.append(f"| `{r['source']}` | {r['target']} | {shots} ({r['n_train']} images) | " + " | ".join(cells)
                     + f" | {gain} | {opts} |")
    lines += ["", "Median training seconds per run (features, probe and fine-tuning; not the test evaluation):", "",
              "| source | target | shots | " + " | ".join(f"`{s}`" for s in strategies) + " |",
              "|---|---|---|" + "---|" * len(strategies)]
    for r in rows:
        secs = [f"{r['median_train_seconds'][s]:.0f}" if s in r["median_train_seconds"] else "—" for s in strategies]
        shots = "all" if r["shots"] is None else str(r["shots"])
        lines.append(f"| `{r['source']}` | {r['target']} | {shots} | " + " | ".join(secs) + " |")
    lines += ["", f"— = not run. EfficientNet-Lite0 on the whole training split runs `linear_probe` only: fine-tuning "
              "its 4.65M parameters on ~1,000 images for 3 seeds and 3 strategies does not fit this benchmark's "
              f"time budget on 2 CPU cores. The input size ({DEFAULT_RESOLUTION} px) was chosen by measurement: see "
              "[IMAGE_RESOLUTION.md](IMAGE_RESOLUTION.md)."]
    return "\n".join(lines) + "\n"


def measure(ctx: Context) -> dict[str, Any]:
    cells = plan(ctx.quick, ctx.args.targets.split(","))
    store = Store(ctx.work / "results.json")
    run(cells, ctx.seeds, store)
    wall = sum(store[f"{c.label}|{s}|{seed}"]["wall_seconds"]
               for c in cells for s in c.strategies for seed in ctx.seeds)
    return {"seeds": ctx.seeds, "rows": summarise(cells, ctx.seeds, store.done), "runs": store.done,
            "wall_seconds": wall}


def options(p: Any) -> None:
    p.add_argument("--targets", default=",".join(TARGETS),
                   help="run only these targets (parallel processes may share --work; a final run without "
                        "--targets then finds every result stored and writes the doc for all)")


BENCH = Bench("image", __doc__ or "", measure, render, options=options,
              quick="1 seed, digits8, 10 shots, short training (< 3 min)")
main = BENCH.main


if __name__ == "__main__":
    sys.exit(main())
