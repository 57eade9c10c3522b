"""Which input size for EfficientNet-Lite0 on small digit images: frozen-probe accuracy vs cost.

    python benchmarks/image_resolution.py     # writes docs/IMAGE_RESOLUTION.md, docs/image_resolution.json

For each resolution in 64, 96, 128, 160, 224 px: ``transferkit.transfer(source="efficientnet_lite0",
model_kwargs={"resolution": r}, strategy="linear_probe")`` on digits8 and fontdigits (the whole
training split, seed 0, default options; the 28x28 grey digits are made RGB and resized
bilinearly by the image preparer). Cost: backbone forward milliseconds per image at each size,
measured in interleaved rounds in this one run (median), plus the wall time of each transfer.

The rule that picks the default (``efficientnet.DEFAULT_RESOLUTION``; a test checks they agree):
the smallest resolution whose accuracy, averaged over the two data sets, is within
``TOLERANCE`` (1 point, about one binomial standard error on these test splits) of the best one.
Finished transfers are kept in ``runs/image_resolution/results.json`` (an interrupted run resumes).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch
from bench_common import Spread, interleave
from harness import Bench, Context, Store, generated_line, log

import transferkit
from transferkit.engine.precision import predict_logits, resolve_placement
from transferkit.models import from_pretrained

RESOLUTIONS = [64, 96, 128, 160, 224]
DATASETS = ["digits8", "fontdigits"]
TOLERANCE = 0.01


def choose(acc: dict[int, float], tolerance: float = TOLERANCE) -> int:
    """The smallest resolution whose accuracy is within ``tolerance`` of the best one."""
    best = max(acc.values())
    return min(r for r, a in acc.items() if a >= best - tolerance)


def probe_runs(store: Store, resolutions: list[int], seed: int) -> None:
    for res in resolutions:
        for data in DATASETS:
            def one(res: int = res, data: str = data) -> dict[str, Any]:
                m = transferkit.transfer("efficientnet_lite0", data, strategy="linear_probe", seed=seed,
                                         model_kwargs={"resolution": res}, progress="off").metrics
                return {"accuracy": m["target"]["accuracy"], "train_seconds": m["train_seconds"],
                        "n_train": m["n_train"]}

            store.cell(f"{data}|{res}|{seed}", one, lambda r: f"{100 * r['accuracy']:.1f}% ({r['wall_seconds']:.0f} s)")


def forward_cost(resolutions: list[int], batch: int, rounds: int) -> dict[int, Spread]:
    """Milliseconds per image of the backbone forward (eval, automatic precision) at each size."""
    variants: dict[str, Callable[[], Any]] = {}
    for res in resolutions:
        model = from_pretrained("efficientnet_lite0", {"resolution": res}).eval()
        place = resolve_placement(model, "auto", "auto")
        x = torch.rand(batch, 3, res, res, generator=torch.Generator().manual_seed(0))
        predict_logits(model, x[:4], place)  # warm-up

        def run(model: torch.nn.Module = model, x: torch.Tensor = x, place: Any = place) -> None:
            predict_logits(model, x, place)

        variants[str(res)] = run
    out = interleave(variants, rounds, log)
    return {int(r): Spread.of([1000 * s / batch for s, _ in v]) for r, v in out.items()}


def render(doc: dict[str, Any]) -> str:
    acc = {d: {int(r): a for r, a in by.items()} for d, by in doc["accuracy"].items()}  # JSON keys are strings
    cost = {int(r): Spread.from_dict(s) for r, s in doc["forward_ms_per_image"].items()}
    done, chosen, seed = doc["runs"], doc["chosen"], doc["seed"]
    ref = cost[max(cost)].median
    lines = ["# EfficientNet-Lite0 input size on small digit images", "",
             generated_line(doc), "",
             f"Frozen ImageNet EfficientNet-Lite0 + linear probe (`linear_probe`, cached features) on the whole "
             f"training split, seed {seed}; test-split accuracy. The 28x28 grey digits are made RGB and resized "
             "bilinearly to each size by the image preparer. Forward cost: milliseconds per image (median "
             "[range] of interleaved rounds in this run, automatic precision); `relative` is against the "
             "largest size; `wall s` is the whole transfer call (data preparation, features of the training "
             "and validation splits, probe, test evaluation).", "",
             "| px | " + " | ".join(f"{d} acc | {d} wall s" for d in acc) + " | mean acc | forward ms/img | relative |",
             "|---|" + "---|---|" * len(acc) + "---|---|---|"]
    for res in sorted(cost):
        cells = []
        for d in acc:
            cells += [f"{100 * acc[d][res]:.1f}", f"{done[f'{d}|{res}|{seed}']['wall_seconds']:.0f}"]
        mean = statistics.fmean(acc[d][res] for d in acc)
        mark = " **chosen**" if res == chosen else ""
        lines.append(f"| {res}{mark} | " + " | ".join(cells) + f" | {100 * mean:.1f} | {cost[res].fmt(1)} | "
                     f"{cost[res].median / ref:.2f} |")
    lines += ["", f"Rule: the smallest size whose mean accuracy is within {100 * TOLERANCE:.0f} point of the best "
              f"(about one binomial standard error on these test splits) -> **{chosen} px**, the default of "
              "`efficientnet_lite0` (`--model-opt resolution=N` overrides it)."]
    return "\n".join(lines) + "\n"


def measure(ctx: Context) -> dict[str, Any]:
    if len(ctx.seeds) != 1:
        raise SystemExit(f"--seeds: one seed, not {len(ctx.seeds)}")
    seed, resolutions = ctx.seeds[0], [int(r) for r in ctx.args.resolutions.split(",")]
    store = Store(ctx.work / "results.json")
    probe_runs(store, resolutions, seed)
    log("forward cost")
    cost = forward_cost(resolutions, ctx.args.batch, ctx.args.rounds)
    acc = {d: {r: store[f"{d}|{r}|{seed}"]["accuracy"] for r in resolutions} for d in DATASETS}
    chosen = choose({r: statistics.fmean(acc[d][r] for d in DATASETS) for r in resolutions})
    log(f"chosen resolution {chosen} px")
    return {"chosen": chosen, "tolerance": TOLERANCE, "seed": seed, "accuracy": acc,
            "forward_ms_per_image": {r: s.as_dict() for r, s in cost.items()}, "runs": store.done}


def options(p: Any) -> None:
    p.add_argument("--resolutions", default=",".join(map(str, RESOLUTIONS)))
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the forward timing")
    p.add_argument("--batch", type=int, default=32, help="images per timed forward")


BENCH = Bench("image_resolution", __doc__ or "", measure, render, options=options, seeds="0")
main = BENCH.main


if __name__ == "__main__":
    sys.exit(main())
