"""The ``adapt`` and ``methods`` sub-commands (wired into :mod:`transferkit.cli`).

Thin: parse, call :func:`transferkit.adaptation.api.adapt`, print. Nothing heavy is imported
until a command of this module runs.
"""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = ("adapt", "methods")


def add_parsers(sub: Any) -> None:
    """Add ``adapt`` and ``methods`` to the ``transferkit`` sub-parsers ``sub``."""
    from transferkit.cli import add_train_args, add_read_args

    ad = sub.add_parser("adapt", help="unsupervised domain adaptation of a source run to unlabelled target data")
    ad.add_argument("--source", required=True, help="source run directory (from `transferkit pretrain`)")
    ad.add_argument("--source-data", required=True, help="labelled source data (name or path)")
    ad.add_argument("--target-data", required=True,
                    help="target inputs (name or path; .npz with only x, flat image folder, CSV without label); labels unread")
    ad.add_argument("--method", default="dann", help="see `transferkit methods`; 'auto' picks one by --validator")
    ad.add_argument("--option", action="append", metavar="KEY=VALUE",
                    help="method option, repeatable (auto: candidates=dann,mcc trade_offs=0.3,1)")
    ad.add_argument("--validator", default="im", help="label-free selection score: im | snd | entropy | dev")
    ad.add_argument("--eval-data", default=None,
                    help="labelled target data used only to report accuracy (the held-out part when it is --target-data)")
    ad.add_argument("--max-source", type=int, default=None, help="cap source training examples (seeded subsample)")
    ad.add_argument("--max-target", type=int, default=None, help="cap target training inputs (seeded subsample)")
    ad.add_argument("--out", required=True, help="run directory to create")
    ad.add_argument("--seed", type=int, default=0)
    ad.add_argument("--overwrite", action="store_true", help="replace a complete run in --out")
    ad.add_argument("--iterations", type=int, default=None,
                    help="training budget in optimizer steps per method (overrides --epochs)")
    add_train_args(ad)
    ad.add_argument("--restyle-source", action="store_true",
                    help="re-style source batches at random (affine, stroke width, blur) -- for digit/glyph images")
    add_read_args(ad)
    _adapt_defaults(ad)

    ls = sub.add_parser("methods", help="list the domain-adaptation methods and validators")
    ls.add_argument("pattern", nargs="?", default="*", help="glob filter")


#: ``adapt()``'s own training defaults, which differ from :class:`TrainConfig`'s (see its docstring).
ADAPT_DEFAULTS = {"optimizer": "sgd", "lr": "0.01 with sgd, else the TrainConfig default", "epochs": 10,
                  "grad_clip": "0 with sgd"}


def _adapt_defaults(parser: argparse.ArgumentParser) -> None:
    """Make ``adapt --help`` show the defaults ``adapt()`` applies, not the pre-training ones."""
    for action in parser._actions:
        if action.dest in ADAPT_DEFAULTS and action.help:
            action.help = action.help.rsplit(" (default: ", 1)[0] + f" (default for adapt: {ADAPT_DEFAULTS[action.dest]})"


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def run(args: argparse.Namespace) -> int | None:
    """Run ``args.command`` if it is one of this module's; ``None`` otherwise."""
    if args.command not in COMMANDS:
        return None
    if args.command == "methods":
        from transferkit.adaptation.methods import METHODS
        from transferkit.adaptation.validators import VALIDATORS

        entries = [(e.name, e.summary) for e in METHODS.list(args.pattern)]
        if args.pattern == "*" or args.pattern == "auto":
            entries.append(("auto", "run several methods and keep the one a label-free validator prefers"))
        width = max((len(n) for n, _ in entries), default=0)
        for name, summary in entries:
            print(f"{name.ljust(width)}  {summary}")
        if args.pattern == "*":
            print("\nvalidators (--validator): " + ", ".join(VALIDATORS))
        return 0
    from transferkit.adaptation.api import adapt
    from transferkit.cli import kv_flags, train_overrides

    res = adapt(args.source, args.source_data, args.target_data, method=args.method, out=args.out, seed=args.seed,
                target_labels_for_eval=args.eval_data, options=kv_flags(args.option, "--option"), validator=args.validator,
                overwrite=args.overwrite, max_source=args.max_source, max_target=args.max_target,
                iterations=args.iterations, restyle_source=args.restyle_source,
                skip_bad_files=args.skip_bad_files, **train_overrides(args))
    m = res.metrics
    if len(m.get("candidates", [])) > 1:
        for c in m["candidates"]:
            acc = f"  target {_pct(c['target_accuracy'])}" if "target_accuracy" in c else ""
            print(f"  {c['label']}: {args.validator} {c['validators'][args.validator]:.4f}{acc}")
        line = f"chose {m['chosen']} by {args.validator}"
        if "selection" in m:
            sel = m["selection"]["validators"][args.validator]
            line += f" ({'matches' if sel['matches'] else 'differs from'} the label oracle {m['selection']['oracle']})"
        print(line)
    parts = []
    if "target" in m:
        parts.append(f"target accuracy {_pct(m['target_before']['accuracy'])} -> {_pct(m['target']['accuracy'])}"
                     + (" (held-out part)" if "target_all" in m else ""))
    if "target_all" in m:
        parts.append(f"all target images {_pct(m['target_all_before']['accuracy'])} -> {_pct(m['target_all']['accuracy'])}")
    parts.append(f"source {_pct(m['source_before']['accuracy'])} -> {_pct(m['source_after']['accuracy'])}")
    parts.append(f"A-distance {m['a_distance']['before']:.3f} -> {m['a_distance']['after']:.3f}")
    print(f"{'; '.join(parts)}; run: {res.run_dir}")
    return 0
