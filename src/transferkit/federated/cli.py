"""The ``federate`` sub-command (wired into :mod:`transferkit.cli`). Thin: parse, call
:func:`transferkit.federated.api.federate`, print. ``flwr`` is imported only when it runs."""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = ("federate",)


def add_parsers(sub: Any) -> None:
    from transferkit.cli import add_train_args
    from transferkit.federated.spec import FederateSpec
    from transferkit.spec import add_spec_args

    p = sub.add_parser("federate", help="federated transfer with Flower: clients keep their data, weights travel")
    add_spec_args(p, FederateSpec)  # one flag per spec field, its help and default stated there once
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace a complete run in --out")
    add_train_args(p)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.2f}%"


def run(args: argparse.Namespace) -> int | None:
    if args.command not in COMMANDS:
        return None
    from transferkit.cli import train_overrides
    from transferkit.federated.api import federate
    from transferkit.federated.spec import FederateSpec
    from transferkit.spec import spec_from_args

    m = federate(spec_from_args(FederateSpec, args, train=train_overrides(args)), out=args.out,
                 overwrite=args.overwrite)
    for r in m["history"]:
        per = ", ".join(f"{k}: {_pct(v.get('accuracy'))}" for k, v in sorted(r["clients"].items()))
        failed = f"; failed: {', '.join(str(f['node_id']) for f in r['failed'])}" if r["failed"] else ""
        print(f"round {r['round']}: pooled {_pct(r.get('pooled_accuracy'))} [{per}] "
              f"bytes down {r['bytes_down']:,} up {r['bytes_up']:,}{failed}")
    line = f"final pooled accuracy {_pct(m['pooled_accuracy'])}; {m['bytes_total']:,} bytes in all"
    if "baselines" in m:
        b = m["baselines"]
        line += (f"; centralised {_pct(b['centralised']['pooled_accuracy'])}, "
                 f"local-only {_pct(b['local_only']['pooled_accuracy'])}")
    print(f"{line}; run: {args.out}")
    return 0
