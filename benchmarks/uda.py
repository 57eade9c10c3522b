"""Unsupervised domain adaptation benchmark: every method on six digit domain pairs, ``auto``, a labelled fine-tune.

For each source domain a LeNet-sized ``small_cnn`` is pre-trained once (a complete run under
``runs/uda/`` is reused). For each (pair, seed) one ``adapt(method="auto")`` call runs every
method as a candidate for a fixed number of *iterations* (not epochs over a capped source, so the
budget matches the reference's); each candidate's target accuracy (labels used *only* for
scoring) gives the method rows, on all target images (the reference protocol) and on the
held-out 30% never adapted on; the candidate the label-free validator picks gives the ``auto``
row. The fine-tune row fine-tunes the source model on the *labelled* target with
``transferkit.transfer(strategy="full")`` (scored on its test split). Pairs run one child
process each, sequentially.

Per cell the page sets the label-free choice (highest validator score: ``auto``'s pick when no lead is within
resampling noise, which this page does not resample) beside the
oracle choice (the candidate with the best held-out target accuracy: selected on target test labels, as
published results are) and the gap between them, for every validator recorded, with their agreement.

Writes ``docs/uda.json`` (raw records, resumable: finished cells are not rerun), the generated
``docs/UDA.md`` and README.md's ``uda`` block (label-free vs test-label-selected accuracy per pair). Every
page is a pure function of the JSON, rendered by ``uda_report.py`` (``render``, ``render_readme``). Run it with
``OMP_WAIT_POLICY=PASSIVE``::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/uda.py            # full: 6 pairs x 3 seeds
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/uda.py --quick    # 1 pair, 1 seed, 60 iterations
    .venv/bin/python benchmarks/uda.py --render-only                      # docs/UDA.md + README block from the JSON
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from uda_report import render, write_readme  # noqa: E402 - benchmarks/ is on the path only from here

import transferkit as tk  # noqa: E402 - after OMP_WAIT_POLICY (torch reads it at import)
from transferkit.adaptation.api import adapt, method_candidates  # noqa: E402

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
def model_macs(model: torch.nn.Module) -> float:
    """Multiply-adds of one forward pass of ``model`` on one input (Conv2d and Linear layers)."""
    model.eval()
    total = [0.0]

    def hook(m: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(m, torch.nn.Conv2d):
            total[0] += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            total[0] += m.in_features * m.out_features * (out.numel() // m.out_features)

    kinds = (torch.nn.Conv2d, torch.nn.Linear)
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(torch.zeros(1, *model.spec.input_shape))  # type: ignore[union-attr, misc]
    for h in hs:
        h.remove()
    return total[0]


def source_compute(data: str, model_kwargs: dict[str, Any], src_run: Path | None = None) -> dict[str, float]:
    """The source model's multiply-adds per input and its training-split size (``uda.json["compute"]``): read
    from the pre-trained run ``src_run``, or, without one, from pre-training's own preparation of ``data`` (the
    same split and architecture, built but not trained)."""
    if src_run is not None:
        from transferkit.runs import load_source

        model, _ = load_source(src_run)
        n_train = json.loads((src_run / "metrics.json").read_text())["n_train"]
    else:
        from transferkit.pipeline.pretrain import prepare
        from transferkit.spec import PretrainSpec

        p = prepare(PretrainSpec(data=data, model_kwargs=dict(model_kwargs)))
        model, n_train = p.model, len(p.train)
    return {"macs": model_macs(model), "n_train": n_train}


def _machine() -> dict[str, Any]:
    try:
        from bench_common import machine_info

        return machine_info()
    except Exception as e:
        return {"error": repr(e), "cpus": os.cpu_count()}


def pretrained(data: str, runs: Path, epochs: int, model_kwargs: dict[str, Any]) -> Path:
    """The source run for ``data``: reused when ``runs/uda/src-<data>-...`` holds a complete run."""
    tag = "-".join(f"{k}{v}" for k, v in sorted(model_kwargs.items()))
    out = runs / (f"src-{data}-e{epochs}" + (f"-{tag}" if tag else ""))
    if (out / "metrics.json").exists() and (out / "model.safetensors").exists():
        return out
    tk.pretrain(data, out=out, epochs=epochs, overwrite=True, progress="off", model_kwargs=model_kwargs)
    return out


def _candidates(m: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["label"]: {"acc": c["target_accuracy"], "acc_all": c["target_accuracy_all"],
                         "validators": c["validators"], "seconds": c["train_seconds"]} for c in m["candidates"]}


def run_cell(src_run: Path, s: str, t: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = adapt(src_run, s, t, method="auto", target_labels_for_eval=t, seed=seed, iterations=args.iterations,
              batch_size=args.batch_size, max_source=args.max_source, validator=args.validator, progress="off",
              restyle_source=args.augment, options={"candidates": ",".join(args.methods)})
    m = r.metrics
    return {"pair": f"{s}->{t}", "seed": seed, "target_before": m["target_before"]["accuracy"],
            "target_before_all": m["target_all_before"]["accuracy"], "candidates": _candidates(m),
            "auto_choice": m["chosen"], "auto_acc": m["target"]["accuracy"],
            "auto_acc_all": m["target_all"]["accuracy"], "auto_confusion": m["target"].get("confusion"),
            "selection": m.get("selection"), "epochs": r.history[0]["epochs_run"] if r.history else None,
            "seconds": time.perf_counter() - t0}


def run_extra(src_run: Path, s: str, t: str, seed: int, names: list[str], args: argparse.Namespace
              ) -> dict[str, Any]:
    """Methods run as extra rows for an existing cell (same split and budget; not ``auto`` candidates)."""
    r = adapt(src_run, s, t, method="auto", target_labels_for_eval=t, seed=seed, iterations=args.iterations,
              batch_size=args.batch_size, max_source=args.max_source, validator=args.validator, progress="off",
              restyle_source=args.augment, options={"candidates": ",".join(names)})
    return _candidates(r.metrics)


def _missing_extra(cell: dict[str, Any] | None, names: list[str]) -> list[str]:
    if cell is None:
        return []
    have = set(cell.get("extra", {})) | set(cell["candidates"])
    return [n for n in names if method_candidates("auto", {"candidates": n})[0][0] not in have]


def run_oracle(src_run: Path, t: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = tk.transfer(src_run, t, strategy="full", seed=seed, epochs=args.oracle_epochs, progress="off", augment="off")
    return {"target": t, "seed": seed, "acc": r.metrics["target"]["accuracy"], "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
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
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite docs/UDA.md and README's uda block from the JSON; run nothing")
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "uda"))
    ap.add_argument("--readme", default=str(ROOT / "README.md"),
                    help="the README whose uda block is rewritten (not by --quick)")
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
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
    name = "uda-quick" if args.quick else "uda"
    jpath = out / f"{name}.json"

    def load() -> dict[str, Any]:
        return json.loads(jpath.read_text()) if jpath.exists() else {"cells": {}, "oracle": {}}

    db = load()
    # where the files go (--out=/--runs=) is not a setting of the results: left out of the recorded command
    command = "OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/uda.py " + shlex.join(
        a for a in argv if not a.startswith(("--pairs=", "--only-seed=", "--out=", "--runs=")) and a != "--in-process")

    def publish() -> None:
        (out / ("UDA.md" if not args.quick else "UDA-quick.md")).write_text(render(db))
        if not args.quick:
            write_readme(db, Path(args.readme))

    def save() -> None:
        # merge under a lock: two invocations (e.g. the main and the reverse pairs) may share one JSON
        runs.mkdir(parents=True, exist_ok=True)
        with open(runs / f"{name}.json.lock", "w") as lock:  # under runs/, not next to the docs
            fcntl.flock(lock, fcntl.LOCK_EX)
            cur = load()
            for k in ("cells", "oracle", "compute"):
                db[k] = {**cur.get(k, {}), **db.get(k, {})}
            db["commands"] = list(dict.fromkeys([*cur.get("commands", []), *db.get("commands", [])]))
            jpath.write_text(json.dumps(db, indent=1))
        publish()

    if args.render_only:
        if not db["cells"] or "settings" not in db:
            sys.exit(f"--render-only: no results in {jpath}")
        if not db.get("compute"):  # records older than the "compute" key: the sources' size, from their preparation
            srcs = sorted({c["pair"].split("->")[0] for c in db["cells"].values()})
            db["compute"] = {s: source_compute(s, db["settings"]["model_kwargs"]) for s in srcs}
            jpath.write_text(json.dumps(db, indent=1))  # no lock: only records this old lack a measured run
        publish()  # reads and writes no work folder (runs/): only the docs
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
    where = ("out", "runs", "readme", "pairs", "in_process", "only_seed")
    db.update(date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"), machine=_machine(),
              settings={k: v for k, v in vars(args).items() if k not in where})
    db.setdefault("command", command)
    db["commands"] = list(dict.fromkeys([*db.get("commands", []), command]))  # the parent's command, as run
    for seed in range(args.seeds) if args.only_seed is None else [args.only_seed]:
        for s, t in pairs:
            key = f"{s}->{t}/{seed}"
            src = pretrained(s, runs, args.pretrain_epochs, args.model_kwargs)
            if s not in db.setdefault("compute", {}):
                db["compute"][s] = source_compute(s, args.model_kwargs, src)
            if key not in db["cells"]:
                db["cells"][key] = run_cell(src, s, t, seed, args)
                c = db["cells"][key]
                print(key, c["auto_choice"], round(c["auto_acc_all"], 3),
                      {k: round(v["acc_all"], 3) for k, v in c["candidates"].items()}, f"{c['seconds']:.0f}s",
                      flush=True)
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
