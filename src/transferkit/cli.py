"""The command line: parse, call the public API, print. Errors a user can cause end in one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, NoReturn

from transferkit.errors import TransferkitError
from transferkit.spec import add_spec_args

#: The commands that replay a run's own ``config.json`` given to ``--config``.
REPLAYABLE = ("pretrain", "transfer", "adapt")

LISTINGS = ("datasets", "strategies", "models", "scores")

#: Modules that add their own sub-commands: each has ``add_parsers(subparsers)`` and
#: ``run(args) -> int | None`` (``None``: not my command).
PLUGINS = (
    "transferkit.adaptation.cli",
    "transferkit.report.cli",
    "transferkit.federated.cli",
    "transferkit.zeroshot_cli",
    "transferkit.suggest_cli",
)


def _cli_tools() -> Any:
    import importlib

    return importlib.import_module("transferkit.cli_tools")


def _plugins() -> list[Any]:
    import importlib

    return [importlib.import_module(m) for m in PLUGINS]


def kv_flags(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    """Repeated ``key=value`` flag values (``--option k=v``) as a dict; a value without ``=`` is a one-line error."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TransferkitError(f"{flag} expects key=value, got {item!r}")
        out[key] = value
    return out


#: The training settings a backbone recipe (strategies/recipes.py) may set for ``transfer`` (kept equal
#: to the recipes' settings by tests/engine/test_train_help.py; importing the recipes here would load torch).
RECIPE_FIELDS = ("lr", "batch_size", "epochs", "patience", "precision", "batchnorm")

#: A command's training defaults where they are not TrainConfig's: what its ``--help`` states
#: (pretrain: api.pretrain; federate: federated/local.py; tests/engine/test_train_help.py checks them).
COMMAND_DEFAULTS: dict[str, dict[str, str]] = {
    "pretrain": {"epochs": "8; tables: 100"},
    "transfer": {"epochs": "from the backbone's recipe where it has one, else 40; a linear probe on cached "
                           "features: 100"},
    "federate": {"epochs": "not used: --local-epochs and --probe-epochs set each round's epochs", "progress": "off"},
}


def train_default(command: str, name: str) -> str:
    """The default of training setting ``name`` that ``command`` uses, as its ``--help`` states it."""
    from transferkit.engine.config import TrainConfig

    if name in COMMAND_DEFAULTS.get(command, {}):
        return COMMAND_DEFAULTS[command][name]
    default = TrainConfig.default(name)
    if command == "transfer" and name in RECIPE_FIELDS:
        return f"from the backbone's recipe where it has one, else {default}"
    return str(default)


def add_train_args(p: argparse.ArgumentParser) -> None:
    """A ``training`` group: one flag per :class:`TrainConfig` field but ``seed``, with the command's defaults."""
    from transferkit.engine.config import TrainConfig

    command = p.prog.split()[-1]
    g = p.add_argument_group("training")
    for f in fields(TrainConfig):
        if f.name == "seed":
            continue
        typ = {"int": int, "float": float}.get(str(f.type), str)
        g.add_argument(f"--{f.name.replace('_', '-')}", type=typ, default=None,
                       help=f"{f.metadata.get('help', '')} (default: {train_default(command, f.name)})")


def add_column_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label-column", default=None, metavar="NAME",
                   help="label column of a .csv / .jsonl file (default: 'label', or the one the run was trained with)")
    p.add_argument("--text-column", default=None, metavar="NAME",
                   help="text column of a .csv / .jsonl file (default: 'text'; without one the file is a table)")


def add_read_args(p: argparse.ArgumentParser) -> None:
    """``--skip-bad-files``, for every command that reads data folders."""
    p.add_argument("--skip-bad-files", action="store_true",
                   help="in an image or .wav folder, skip files that cannot be read (corrupt, truncated, over the "
                        "pixel limit) and list them on stderr, instead of stopping at the first")


def column_args(args: argparse.Namespace) -> dict[str, str | None]:
    return {"label_column": args.label_column, "text_column": args.text_column}


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`TrainConfig` fields the user gave on the command line (the flags of :func:`add_train_args`)."""
    from transferkit.engine.config import TrainConfig

    return {f.name: getattr(args, f.name) for f in fields(TrainConfig)
            if f.name != "seed" and getattr(args, f.name, None) is not None}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the usage block first); its
    sub-command parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"transferkit: error: {message} (see '{self.prog} --help')\n")


def _add_out_args(p: argparse.ArgumentParser) -> None:
    """``--out`` and ``--overwrite`` of a command that writes a run (never taken from a run's config.json)."""
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace a complete run in --out")


def _add_run_parsers(sub: Any, replay: bool) -> None:
    """``pretrain`` and ``transfer``: one flag per field of their spec (spec.py), ``--out``, the training group.
    ``replay``: the spec's required fields may come from a run's config.json (``--config``)."""
    from transferkit.spec import PretrainSpec, TransferSpec

    pre = sub.add_parser("pretrain", help="train a source model from scratch on source data")
    add_spec_args(pre, PretrainSpec, required=not replay)
    _add_out_args(pre)
    add_train_args(pre)
    tr = sub.add_parser("transfer", help="initialise from a source run and adapt to target data")
    add_spec_args(tr, TransferSpec, required=not replay)
    tr.add_argument("--budget", default=None, help="with --strategy auto: seconds for its search, e.g. 120 or 120s")
    _add_out_args(tr)
    add_train_args(tr)


def add_predict_parser(sub: Any) -> None:
    pr = sub.add_parser("predict", help="predict classes for new inputs (images, text, audio) with a run's model")
    pr.add_argument("run")
    pr.add_argument("inputs", help="image model: an image, a folder of images or an .npz with 'x'; text model: a "
                    ".txt (one input per line), .csv with a 'text' column or .jsonl; tabular model: a .csv / .jsonl "
                    "table with the training columns (a label column is ignored); audio model: a .wav or a folder of "
                    ".wav")
    pr.add_argument("--out", default=None, help="write predictions as CSV here")
    add_column_args(pr)
    add_read_args(pr)
    pr.add_argument("--overwrite", action="store_true", help="replace an existing --out file not written by predict")
    pr.add_argument("--top-k", type=int, default=1, metavar="K",
                    help="the K most probable classes per input: columns class, probability, class_2, "
                         "probability_2, ...")
    pr.add_argument("--adapt", default=None, choices=("bn", "tent", "eata"), help="adapt the model's normalisation "
                    "layers online while predicting, batch by batch in the order given (docs/TTA.md); per-batch log "
                    "beside --out as OUT.batches.csv/.json")
    pr.add_argument("--batch-size", type=int, default=128, help="inputs per batch (per adaptation step with --adapt)")
    pr.add_argument("--adapt-frozen-norms", type=int, default=None, metavar="N", help="--adapt tent/eata: the first "
                    "N normalisation layers with affine parameters (module order) keep their source values (a "
                    "BatchNorm among them still uses each batch's statistics); default 1 (0 on a model with only one "
                    "such layer): the backward skips the first layer, on a CNN its largest activations; 0: every "
                    "layer trains, as in the papers (docs/TTA.md measures both)")
    pr.add_argument("--labels-if-any", action="store_true", help="score accuracy (per batch and overall) when the "
                    "inputs carry labels: class sub-folders, an .npz with 'y', a label column")


def build_parser(replay: bool = False) -> argparse.ArgumentParser:
    """The ``transferkit`` parser. ``replay``: ``--config`` names a run's config.json (configfile.RunConfig),
    which supplies the spec's required flags."""
    p = OneLineParser(prog="transferkit", description="Transfer learning, fast and measured.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.add_argument("--config", metavar="FILE",
                   help="a .toml/.json file of the sub-command's flags (typed flags override it; paths in it are "
                        "relative to its folder and may not leave it), or a run's config.json (pretrain, transfer: "
                        "reproduces that run into --out; its relative paths are relative to the folder the run "
                        "started in; --out and --overwrite never come from it)")
    sub = p.add_subparsers(dest="command", required=True)
    _add_run_parsers(sub, replay)
    _cli_tools().add_parsers(sub)
    add_predict_parser(sub)
    for name in LISTINGS:
        ls = sub.add_parser(name, help=f"list the registered {name}")
        ls.add_argument("pattern", nargs="?", default="*", help="glob filter")
    for plugin in _plugins():
        plugin.add_parsers(sub)
    return p


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def result_lines(metrics: dict[str, Any], run_dir: Any, notes: Sequence[str] = (), strategy: Any = None) -> list[str]:
    """The standard lines a run command prints: its notes, the lines its strategy contributes
    (``strategy.summary_lines(strategy_info)``, when it has the hook) and the result line (the held-out
    accuracy, source accuracy before -> after, gain over scratch, the run directory)."""
    lines = [f"note: {n}" for n in notes]
    hook = getattr(strategy, "summary_lines", None)
    if hook is not None:
        lines += hook(metrics.get("strategy_info") or {})
    if "target" not in metrics:  # pretrain: the source model's own test split
        return [*lines, f"source accuracy {_pct(metrics['source']['accuracy'])} on {metrics.get('data')} (test "
                        f"split); run: {run_dir}"]
    t = metrics["target"]
    line = f"target accuracy {_pct(t['accuracy'])} (macro-F1 {_pct(t['macro_f1'])})"
    if "forgetting" in metrics:
        line += f"; source {_pct(metrics['source_before']['accuracy'])} -> {_pct(metrics['source_after']['accuracy'])}"
    if "gain_vs_scratch" in metrics:
        line += f"; gain vs scratch {100 * metrics['gain_vs_scratch']:+.2f} pt"
    return [*lines, f"{line}; run: {run_dir}"]


def _run_spec(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """The spec of ``pretrain`` / ``transfer`` from its flags over the replayed run's spec (``--config`` of a
    run's config.json), the training group's flags over the run's given settings."""
    from transferkit.spec import spec_from_args

    base = getattr(args, "replay", None)
    values = base.spec_values(cls) if base is not None else {}
    if getattr(args, "strategy", None) not in (None, values.get("strategy")):
        values.pop("options", None)  # another strategy: the recorded one's options do not apply to it
    train = {**values.get("train", {}), **train_overrides(args)}
    spec: Any = spec_from_args(cls, args, base=values, train=train, **extra)
    if base is not None:
        print(f"note: replaying the run recorded in {base.path} (the flags given override it)", file=sys.stderr)
    return spec


def _run_command(args: argparse.Namespace) -> int:
    """``pretrain`` and ``transfer``: the spec from the flags, the run, the standard lines."""
    import transferkit as tk
    from transferkit.spec import PretrainSpec, TransferSpec

    if args.command == "pretrain":
        pspec = _run_spec(PretrainSpec, args)
        res = tk.pretrain(pspec, out=args.out, overwrite=args.overwrite)
        print("\n".join(result_lines({**res.metrics, "data": pspec.data}, res.run_dir, res.notes)))
        return 0
    spec = _run_spec(TransferSpec, args)
    if args.budget is not None:
        if spec.strategy != "auto":
            raise TransferkitError(f"--budget applies to --strategy auto, not '{spec.strategy}'")
        spec.options = {**spec.options, "budget": args.budget.rstrip("s")}
    from transferkit.strategies import make_strategy

    strategy = make_strategy(spec.strategy, spec.options)
    res = tk.transfer(spec, strategy=strategy, out=args.out, overwrite=args.overwrite)
    print("\n".join(result_lines(res.metrics, res.run_dir, res.notes, strategy)))
    return 0


def run(args: argparse.Namespace) -> int:
    for plugin in _plugins():
        if (code := plugin.run(args)) is not None:
            return code
    if args.command in ("pretrain", "transfer"):
        return _run_command(args)
    code = _cli_tools().run(args)
    if code is None:
        raise AssertionError(args.command)
    return code


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to whatever ``sys.stderr`` is at the time (as :data:`logging.lastResort` does)."""

    @property  # type: ignore[override,unused-ignore]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(debug: bool = False) -> None:
    """transferkit's own messages on stderr, one line each (``transferkit: ...``), at INFO (DEBUG with
    ``--debug``). Only the ``transferkit`` logger: other libraries' INFO chatter (Flower, Ray, alembic
    plugins) stays off, and a library with its own handler is not printed twice. Where logging is
    already configured (handlers on the root logger), transferkit's records go there instead."""
    log = logging.getLogger("transferkit")
    quiet_rank = os.environ.get("RANK", "0") != "0"  # torchrun: only rank 0 speaks (distributed.setup agrees)
    log.setLevel(logging.ERROR if quiet_rank else logging.DEBUG if debug else logging.INFO)
    if logging.getLogger().handlers or any(isinstance(h, _Stderr) for h in log.handlers):
        return
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("transferkit: %(message)s"))
    log.addHandler(handler)


def check_device(args: argparse.Namespace) -> None:
    """A ``--device`` this machine lacks fails at once, before any data loads (one line)."""
    if getattr(args, "device", None) not in (None, "auto"):
        from transferkit.engine.precision import resolve_device

        resolve_device(args.device)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from transferkit.configfile import expand_config, split_run_config

        argv, replay = split_run_config(argv)  # --config of a run's config.json: that run's spec
        parser = build_parser(replay=replay is not None)
        argv = expand_config(parser, argv)
    except TransferkitError as e:
        print(f"transferkit: error: {e}", file=sys.stderr)
        return e.exit_code
    args = parser.parse_args(argv)
    args.replay = replay
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: join the group; rank 0 alone prints
        from transferkit.engine import distributed

        if not distributed.is_main():
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    setup_logging(debug=args.debug)
    try:
        if replay is not None and args.command not in REPLAYABLE:
            raise TransferkitError(f"--config {replay.path}: a run's config.json replays with "
                                   f"{' / '.join(REPLAYABLE)}, not {args.command}")
        check_device(args)
        return run(args)
    except TransferkitError as e:
        if args.debug:
            raise
        print(f"transferkit: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # permission denied, disk full, ...: still one line
        if args.debug:
            raise
        print(f"transferkit: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("transferkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
