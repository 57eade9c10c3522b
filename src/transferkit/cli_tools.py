"""The sub-commands that read runs (``evaluate``, ``predict``'s command, ``export``, ``rank``), ``demo`` and the
listings: their parsers and their runs, wired into :mod:`transferkit.cli` as a plug-in module is."""

from __future__ import annotations

import argparse
import json
from typing import Any

COMMANDS = ("evaluate", "predict", "export", "rank", "demo")


def add_parsers(sub: Any) -> None:
    """The parsers of ``evaluate``, ``export``, ``rank`` and ``demo``."""
    from transferkit.cli import add_column_args, add_read_args

    ev = sub.add_parser("evaluate", help="score a run on labelled data (and on the source task)")
    ev.add_argument("run")
    ev.add_argument("--data", required=True)
    ev.add_argument("--source-data", default=None)
    add_column_args(ev)
    add_read_args(ev)
    ex = sub.add_parser("export", help="export a finished run's model to ONNX, checked with onnxruntime against "
                        "PyTorch")
    ex.add_argument("run")
    ex.add_argument("--out", required=True, help="the .onnx file to write (beside it: FILE.json with the inputs it "
                    "expects, class names and preprocessing; FILE.tokenizer/ for text models)")
    ex.add_argument("--overwrite", action="store_true", help="replace existing export files")
    ex.add_argument("--check-data", default=None, metavar="DATA",
                    help="data whose inputs check the export (default: the data the run trained on)")
    ex.add_argument("--tolerance", type=float, default=1e-3, help="largest |onnxruntime - PyTorch| logit allowed")
    rk = sub.add_parser("rank", help="rank candidate source models for target data by transferability scores")
    rk.add_argument("--data", required=True, help="target dataset name or path")
    rk.add_argument("--candidates", nargs="+", required=True,
                    help="source run directories or pretrained backbone names")
    rk.add_argument("--shots", type=int, default=None, help="labelled examples per class to score on")
    rk.add_argument("--scores", default=None, help="comma-separated score names (see `transferkit scores`)")
    rk.add_argument("--max-samples", type=int, default=2000)
    rk.add_argument("--seed", type=int, default=0)
    rk.add_argument("--json", default=None, help="also write the result as JSON here")
    add_column_args(rk)
    add_read_args(rk)
    rk.add_argument("--overwrite", action="store_true", help="replace an existing --json file not written by rank")
    demo = sub.add_parser("demo", help="pretrain on mnist5k, transfer to digits8 with every strategy, print a table")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--shots", default="1,5,10", help="comma-separated shots per class")
    demo.add_argument("--strategies", default="*", help="glob over strategy names")
    demo.add_argument("--seeds", default="0", help="comma-separated seeds")
    demo.add_argument("--overwrite", action="store_true", help="replace results.json / results.md not written by demo")


def _listing(kind: str, pattern: str) -> None:
    if kind == "datasets":
        from transferkit.data import DATASETS as reg
    elif kind == "strategies":
        from transferkit.strategies import STRATEGIES as reg  # type: ignore[assignment]
    elif kind == "scores":
        from transferkit.transferability import SCORES as reg  # type: ignore[assignment]
    else:
        from transferkit.models import MODELS as reg  # type: ignore[assignment]
    entries = reg.list(pattern)
    width = max((len(e.name) for e in entries), default=0)
    for e in entries:
        print(f"{e.name.ljust(width)}  {e.summary}")


def run(args: argparse.Namespace) -> int | None:
    """``evaluate``, ``predict``, ``export``, ``rank``, ``demo`` and the listings (None: not one of these)."""
    import transferkit as tk
    from transferkit.cli import LISTINGS, column_args

    if args.command in LISTINGS:
        _listing(args.command, args.pattern)
        return 0
    if args.command not in COMMANDS:
        return None

    if args.command == "evaluate":
        out = tk.evaluate(args.run, args.data, args.source_data, skip_bad_files=args.skip_bad_files,
                          **column_args(args))
        print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "confusion"} for k, v in out.items()}, indent=2))
    elif args.command == "predict":
        from transferkit.io import check_output_file
        from transferkit.prediction import predict_to_csv

        if args.out is not None:
            check_output_file(args.out, args.overwrite, lambda head: head.startswith(b"input,class"),
                              "transferkit predict")
        options = _tta_options(args.adapt, args.adapt_frozen_norms)
        if args.adapt is not None:  # this process is short-lived: keep each batch's freed memory for the next
            from transferkit.testtime_speed import keep_freed_memory  # (a library caller decides for its own)

            keep_freed_memory()
        print(predict_to_csv(args.run, args.inputs, args.out, args.top_k, skip_bad_files=args.skip_bad_files,
                             label_column=args.label_column, text_column=args.text_column, adapt=args.adapt,
                             batch_size=args.batch_size, labels_if_any=args.labels_if_any,
                             overwrite=args.overwrite, options=options), end="")
    elif args.command == "export":
        from transferkit.export import export_onnx, result_line

        print(result_line(export_onnx(args.run, args.out, overwrite=args.overwrite, tolerance=args.tolerance,
                                      check_data=args.check_data)))
    elif args.command == "rank":
        _rank(args)
    elif args.command == "demo":
        from transferkit.demo import run_demo

        run_demo(args.out, shots=[int(s) for s in args.shots.split(",")], pattern=args.strategies,
                 seeds=[int(s) for s in args.seeds.split(",")], overwrite=args.overwrite)
    return 0


def _tta_options(adapt: str | None, frozen_norms: int | None) -> Any:
    """``predict``'s options for the ``--adapt`` method (None: its defaults); ``--adapt-frozen-norms`` only
    applies to the methods that train affine parameters."""
    if frozen_norms is None:
        return None
    from transferkit.errors import ConfigError
    from transferkit.testtime import TTA_METHODS, TentOptions

    cls = TTA_METHODS.get(adapt).options_type if adapt is not None else None
    if cls is None or not issubclass(cls, TentOptions):
        raise ConfigError(f"--adapt-frozen-norms {frozen_norms}: applies to --adapt tent or eata, not "
                          f"{'--adapt ' + adapt if adapt else 'plain predict'}")
    return cls(frozen_norms=frozen_norms)


def _rank(args: argparse.Namespace) -> None:
    import transferkit as tk
    from transferkit.cli import column_args
    from transferkit.io import check_output_file, write_json
    from transferkit.transferability.rank import DEFAULT_SCORES

    if args.json:
        check_output_file(args.json, args.overwrite, lambda head: b'"higher_is_better"' in head, "transferkit rank",
                          "--json")
    scores = tuple(args.scores.split(",")) if args.scores else DEFAULT_SCORES
    result = tk.rank(args.candidates, args.data, shots=args.shots, seed=args.seed, scores=scores,
                     max_samples=args.max_samples, skip_bad_files=args.skip_bad_files, **column_args(args))
    print(result.to_table().rstrip("\n"))
    if args.json:
        from pathlib import Path

        write_json(Path(args.json), result.to_json())
