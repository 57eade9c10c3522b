"""``transferkit demo``: the seed's workflow on real data, end to end, with a results table.

Pretrain ``small_cnn`` on ``mnist5k``; transfer it to ``digits8`` at a few shot counts with every
registered strategy (``self_train`` also reads the rest of the target's training split, unlabelled);
measure target accuracy, source accuracy after transfer and time; write
``results.json`` and ``results.md`` into the output directory.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transferkit.api import pretrain, transfer
from transferkit.io import atomic_write_bytes, check_output_file, write_json
from transferkit.runs import RunDir, load_run
from transferkit.strategies import STRATEGIES

SOURCE, TARGET = "mnist5k", "digits8"


def _source(out: Path, log: Any) -> Path:
    src = out / "source"
    if RunDir(src).status() == "complete":
        log(f"reusing the source model in {src}")
        return src
    log(f"pretraining small_cnn on {SOURCE} -> {src}")
    res = pretrain(SOURCE, "small_cnn", src, seed=0, epochs=8, overwrite=True)
    log(f"  source test accuracy {100 * res.metrics['source']['accuracy']:.2f}% in {res.metrics['train_seconds']:.0f}s")
    return src


def _holds(mark: bytes) -> Callable[[bytes], bool]:
    """Whether the head of a file holds ``mark`` (so the demo wrote it)."""
    return lambda head: mark in head


def _mean(vals: list[float]) -> float:
    return statistics.fmean(vals) if vals else float("nan")


def run_demo(out: str | Path = "runs/demo", shots: list[int] | None = None, pattern: str = "*",
             seeds: list[int] | None = None, log: Any = print, overwrite: bool = False) -> dict[str, Any]:
    """Run the demo; returns the results written to ``results.json``.

    ``results.json`` / ``results.md`` in ``out`` that the demo did not write are replaced only with ``overwrite``.
    """
    out = Path(out)
    for name, mark in (("results.json", b'"source_accuracy"'), ("results.md", f"## {SOURCE} -> {TARGET}".encode())):
        check_output_file(out / name, overwrite, _holds(mark), "transferkit demo")
    shots = shots or [1, 5, 10]
    seeds = seeds or [0]
    names = [e.name for e in STRATEGIES.list(pattern)]
    t0 = time.perf_counter()
    src = load_run(_source(out, log))
    rows: list[dict[str, Any]] = []
    for k in shots:
        for name in names:
            per_seed = [transfer(src, TARGET, strategy=name, shots=k, seed=s, source_data=SOURCE).metrics
                        for s in seeds]
            row: dict[str, Any] = {
                "strategy": name, "shots": k, "seeds": seeds,
                "target_acc": _mean([m["target"]["accuracy"] for m in per_seed]),
                "target_acc_per_seed": [m["target"]["accuracy"] for m in per_seed],
                "source_after": _mean([m["source_after"]["accuracy"] for m in per_seed if "source_after" in m]),
                "forgetting": _mean([m["forgetting"] for m in per_seed if "forgetting" in m]),
                "seconds": _mean([m["train_seconds"] for m in per_seed]),
            }
            rows.append(row)
            log(f"  {k:>3} shots  {name:<17} target {100 * row['target_acc']:5.1f}%  "
                f"source after {_pct(row['source_after'])}  {row['seconds']:5.1f}s")
    results = {"source": SOURCE, "target": TARGET, "source_accuracy": src.metrics["source"]["accuracy"],
               "shots": shots, "seeds": seeds, "rows": rows, "total_seconds": time.perf_counter() - t0}
    write_json(out / "results.json", results)
    table = results_markdown(results)
    atomic_write_bytes(out / "results.md", table.encode())
    log("")
    log(table)
    log(f"wrote {out / 'results.json'} and {out / 'results.md'} in {results['total_seconds']:.0f}s")
    return results


def results_markdown(results: dict[str, Any]) -> str:
    """A strategy x shots table: target accuracy, source accuracy after transfer, seconds."""
    shots = results["shots"]
    by = {(r["strategy"], r["shots"]): r for r in results["rows"]}
    strategies = list(dict.fromkeys(r["strategy"] for r in results["rows"]))
    head = "| strategy | " + " | ".join(f"{k}-shot target / source after / s" for k in shots) + " |"
    lines = [f"## {results['source']} -> {results['target']} (source model: "
             f"{100 * results['source_accuracy']:.1f}% on its test split; seeds {results['seeds']})", "",
             head, "|---|" + "---|" * len(shots)]
    for s in strategies:
        cells = []
        for k in shots:
            r = by[(s, k)]
            src = "-" if r["source_after"] != r["source_after"] else f"{100 * r['source_after']:.1f}"
            cells.append(f"{100 * r['target_acc']:.1f} / {src} / {r['seconds']:.1f}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    if "self_train" in strategies:
        lines += ["", "`self_train` also reads the rest of the target's training split without its labels."]
    scratch = {k: by[("scratch", k)]["target_acc"] for k in shots if ("scratch", k) in by}
    if scratch:
        lines.append("")
        for k in shots:
            best = max((r for r in results["rows"] if r["shots"] == k and r["strategy"] != "scratch"),
                       key=lambda r: r["target_acc"], default=None)
            if best is not None:
                lines.append(f"- {k}-shot: best transfer `{best['strategy']}` {100 * best['target_acc']:.1f}% vs "
                             f"scratch {100 * scratch[k]:.1f}% ({100 * (best['target_acc'] - scratch[k]):+.1f} pt)")
    return "\n".join(lines) + "\n"


def _pct(v: float) -> str:
    return "    -" if v != v else f"{100 * v:5.1f}%"
