"""The ``adapt`` and ``methods`` sub-commands (wired into :mod:`transferkit.cli`).

Thin: flags generated from :class:`~transferkit.adaptation.spec.AdaptSpec` (each default stated once,
there), :func:`transferkit.adaptation.api.adapt` on the spec, one summary printed. Nothing heavy is
imported until a command of this module runs.
"""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = ("adapt", "methods")


def add_parsers(sub: Any) -> None:
    """Add ``adapt`` and ``methods`` to the ``transferkit`` sub-parsers ``sub``."""
    from transferkit.adaptation.spec import AdaptSpec
    from transferkit.cli import add_train_args
    from transferkit.spec import add_spec_args

    ad = sub.add_parser("adapt", help="unsupervised domain adaptation of a source run to unlabelled target data")
    # required fields are checked by spec_from_args: with --config RUN/config.json they come from that run
    add_spec_args(ad, AdaptSpec, skip=("restyle_source",), required=False)
    restyle = AdaptSpec.field_help()["restyle_source"]
    ad.add_argument("--restyle-source", nargs="?", const="on", default=None, metavar="on|off", help=restyle)
    ad.add_argument("--out", required=True, help="run directory to create")
    ad.add_argument("--overwrite", action="store_true", help="replace a complete run in --out")
    add_train_args(ad)
    _adapt_defaults(ad)

    ls = sub.add_parser("methods", help="list the domain-adaptation methods and validators")
    ls.add_argument("pattern", nargs="?", default="*", help="glob filter")


def adapt_defaults() -> dict[str, str]:
    """adapt's training defaults where they are not TrainConfig's, as ``--help`` states them (read from
    :mod:`transferkit.adaptation.spec`, where they are set)."""
    from transferkit.adaptation.spec import DEFAULT_ITERATIONS, SGD_DEFAULTS, TRAIN_DEFAULTS
    from transferkit.engine.config import TrainConfig

    out = {k: str(v) for k, v in TRAIN_DEFAULTS.items()}
    out.update({k: f"{v} with sgd, else {TrainConfig.default(k)}" for k, v in SGD_DEFAULTS.items()})
    out["epochs"] = f"as many as --iterations takes ({DEFAULT_ITERATIONS} steps unless given)"
    return out


def _adapt_defaults(parser: argparse.ArgumentParser) -> None:
    """Make the training flags' help state the defaults ``adapt`` applies, not the pre-training ones."""
    defaults = adapt_defaults()
    for action in parser._actions:
        if action.dest in defaults and action.help:
            action.help = action.help.rsplit(" (default: ", 1)[0] + f" (default for adapt: {defaults[action.dest]})"


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def candidate_lines(m: dict[str, Any], validator: str) -> list[str]:
    """``auto``'s candidates with their validator scores (and accuracy where labelled), then its choice."""
    if len(m.get("candidates", [])) < 2:
        return []
    lines = []
    for c in m["candidates"]:
        acc = f"  target {_pct(c['target_accuracy'])}" if "target_accuracy" in c else ""
        lines.append(f"  {c['label']}: {validator} {c['validators'][validator]:.4f}{acc}")
    line = f"chose {m['chosen']} by {validator}"
    if "selection" in m:
        sel = m["selection"].get("chosen") or m["selection"]["validators"][validator]
        line += f" ({'matches' if sel['matches'] else 'differs from'} the label oracle {m['selection']['oracle']})"
    return [*lines, line]


def change_line(m: dict[str, Any]) -> str:
    """Before -> after: target accuracy (held-out part, all images), source accuracy, A-distance."""
    parts = []
    if "target" in m:
        parts.append(f"target accuracy {_pct(m['target_before']['accuracy'])} -> {_pct(m['target']['accuracy'])}"
                     + (" (held-out part)" if "target_all" in m else ""))
    if "target_all" in m:
        before, after = m["target_all_before"]["accuracy"], m["target_all"]["accuracy"]
        parts.append(f"all target images {_pct(before)} -> {_pct(after)}")
    if "source_after" in m:
        parts.append(f"source {_pct(m['source_before']['accuracy'])} -> {_pct(m['source_after']['accuracy'])}")
        parts.append(f"A-distance {m['a_distance']['before']:.3f} -> {m['a_distance']['after']:.3f}")
    return "; ".join(parts or [f"adapted with {m['chosen']}"])


class Summary:
    """adapt's own lines for :func:`transferkit.cli.result_lines` (its ``summary_lines`` hook)."""

    def __init__(self, metrics: dict[str, Any], validator: str) -> None:
        self.metrics, self.validator = metrics, validator

    def summary_lines(self, _: Any) -> list[str]:
        return [*candidate_lines(self.metrics, self.validator), change_line(self.metrics)]


def _methods(pattern: str) -> int:
    from transferkit.adaptation.methods import METHODS
    from transferkit.adaptation.validators import VALIDATORS

    entries = [(e.name, e.summary) for e in METHODS.list(pattern)]
    if pattern in ("*", "auto"):
        entries.append(("auto", "run several methods and keep the one a label-free validator prefers"))
    width = max((len(n) for n, _ in entries), default=0)
    for name, summary_ in entries:
        print(f"{name.ljust(width)}  {summary_}")
    if pattern == "*":
        print("\nvalidators (--validator): " + ", ".join(VALIDATORS))
    return 0


def run(args: argparse.Namespace) -> int | None:
    """Run ``args.command`` if it is one of this module's; ``None`` otherwise."""
    if args.command not in COMMANDS:
        return None
    if args.command == "methods":
        return _methods(args.pattern)
    from transferkit.adaptation.api import adapt
    from transferkit.adaptation.spec import AdaptSpec
    from transferkit.cli import result_lines, train_overrides
    from transferkit.spec import spec_from_args

    replay = getattr(args, "replay", None)  # --config RUN/config.json: that run's spec, flags given override it
    base = replay.spec_values(AdaptSpec) if replay is not None else {}
    train = {**base.get("train", {}), **train_overrides(args)}
    spec = spec_from_args(AdaptSpec, args, base=base, train=train)
    res = adapt(spec, out=args.out, overwrite=args.overwrite)
    m, notes = res.metrics, res.notes
    if "target" in m:  # the one result formatter, adapt's own lines before its result line
        print("\n".join(result_lines(m, res.run_dir, notes, Summary(m, spec.validator))))
    else:  # no labelled target: no accuracy line to give
        lines = [f"note: {n}" for n in notes] + candidate_lines(m, spec.validator)
        print("\n".join([*lines, f"{change_line(m)}; run: {res.run_dir}"]))
    return 0
