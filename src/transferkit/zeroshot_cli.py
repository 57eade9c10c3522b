"""The ``zeroshot`` sub-command (a :mod:`transferkit.cli` plug-in): zero-shot text classification
by prompted label names, or with ``--shots`` a nearest-class-mean (prototype) classifier."""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = ("zeroshot",)


def add_parsers(sub: Any) -> None:
    zs = sub.add_parser("zeroshot", help="classify text by similarity to label-name prompts (or --shots prototypes)")
    zs.add_argument("--source", default="minilm", help="text backbone name or run directory (default: minilm)")
    zs.add_argument("--data", required=True, help="labelled dataset name or path (.csv with a text column, .jsonl)")
    zs.add_argument("--labels", default=None,
                    help="class names to prompt, matched by name (any order), or CLASS=WORD items to prompt a "
                         "class by another word, e.g. \"0=negative,1=positive\" (default: the class names)")
    zs.add_argument("--template", action="append", default=None, metavar="TEXT",
                    help="prompt template with {} for the label, repeatable (averaged); default: a generic set")
    zs.add_argument("--shots", type=int, default=None,
                    help="instead of prompts: nearest class mean of this many labelled examples per class")
    zs.add_argument("--split", default="test", choices=("test", "all"),
                    help="score the held-out split transfer uses (test) or every example (all)")
    zs.add_argument("--model-opt", action="append", metavar="KEY=VALUE", help="backbone option, repeatable")
    zs.add_argument("--seed", type=int, default=0)
    zs.add_argument("--json", default=None, help="also write the metrics as JSON here")


def run(args: argparse.Namespace) -> int | None:
    if args.command not in COMMANDS:
        return None
    from transferkit.cli import kv_flags
    from transferkit.errors import ConfigError
    from transferkit.zeroshot import DEFAULT_TEMPLATES, nearest_class_mean, zero_shot

    opts = kv_flags(args.model_opt, "--model-opt")
    if args.shots is not None:
        if args.labels or args.template:
            raise ConfigError("--shots (prototypes) uses labelled examples, not --labels / --template")
        out = nearest_class_mean(args.source, args.data, args.shots, seed=args.seed, model_kwargs=opts)
    else:
        templates = tuple(args.template) if args.template else DEFAULT_TEMPLATES
        out = zero_shot(args.source, args.data, args.labels, templates=templates, seed=args.seed,
                        split_part=args.split, model_kwargs=opts)
    what = f"{args.shots}-shot nearest class mean" if args.shots else "zero-shot"
    print(f"{what} on {out['data']} (n={out['n']}): accuracy {100 * out['accuracy']:.2f}%, balanced accuracy "
          f"{100 * out['balanced_accuracy']:.2f}%, macro-F1 {100 * out['macro_f1']:.2f}% "
          f"(majority class {100 * out['majority_rate']:.2f}%)")
    if args.json:
        from pathlib import Path

        from transferkit.io import write_json

        write_json(Path(args.json), out)
    return 0


__all__ = ["add_parsers", "run"]
