"""The ``transferkit report`` sub-command: parse, call :func:`write_html_report`, print the path.

Wired into :mod:`transferkit.cli` by ``add_parsers(sub)`` and ``run(args)``; matplotlib and the
models load only when the command runs, so ``transferkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parsers(sub: Any) -> None:
    """Add ``report`` to the ``transferkit`` sub-command parsers ``sub``."""
    p = sub.add_parser("report", help="write a self-contained HTML report (plots inline) for one or more runs",
                       description="Training curves, confusion matrices, strategy comparison, forgetting, "
                                   "per-layer weight change and CKA, and saliency (image maps, text token scores), "
                                   "in one offline HTML file. "
                                   "Several runs are compared side by side. Nothing is opened.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="complete run directories (pretrain or transfer)")
    p.add_argument("--out", default="report.html", help="HTML file to write (default: report.html)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file not written by report")
    p.add_argument("--max-samples", type=int, default=256,
                   help="test examples per run used for CKA and saliency (default: 256)")
    p.add_argument("--saliency", type=int, default=4, metavar="N",
                   help="saliency of N correct and N wrong test predictions per image or text run; 0 = none "
                        "(default: 4)")
    p.add_argument("--title", default=None, help="page title (default: names the runs)")


def run(args: argparse.Namespace) -> int | None:
    """Handle ``report``; returns ``None`` for other commands so the caller can go on."""
    if args.command != "report":
        return None
    from transferkit.errors import ConfigError
    from transferkit.io import check_output_file
    from transferkit.report.html import write_html_report

    if args.max_samples < 2:
        raise ConfigError(f"--max-samples must be at least 2, got {args.max_samples}")
    if args.saliency < 0:
        raise ConfigError(f"--saliency must be zero or positive, got {args.saliency}")
    check_output_file(args.out, args.overwrite, _is_report, "transferkit report")
    path = write_html_report(args.runs, args.out, max_samples=args.max_samples, n_saliency=args.saliency,
                             title=args.title)
    print(f"report: {path}")
    return 0


def _is_report(head: bytes) -> bool:
    """Whether a file's first bytes are those of a page :func:`write_html_report` wrote."""
    return head.startswith(b"<!DOCTYPE html>") and b"&middot; transferkit " in head
