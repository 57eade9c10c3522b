"""The ``federate`` sub-command (wired into :mod:`transferkit.cli`). Thin: parse, call
:func:`transferkit.federated.api.federate`, print. ``flwr`` is imported only when it runs."""

from __future__ import annotations

import argparse
import json
from typing import Any

COMMANDS = ("federate",)


def add_parsers(sub: Any) -> None:
    from dataclasses import fields

    from transferkit.federated.config import FedConfig

    h = {f.name: f.metadata.get("help", "") for f in fields(FedConfig)}
    p = sub.add_parser("federate", help="federated transfer with Flower: clients keep their data, weights travel")
    p.add_argument("--source", required=True, help=h["source"])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help=h["data"])
    src.add_argument("--clients-from", help=h["clients_from"])
    p.add_argument("--clients", type=int, default=4, help=h["clients"])
    p.add_argument("--partition", default="iid", help=h["partition"])
    p.add_argument("--rounds", type=int, default=10, help=h["rounds"])
    p.add_argument("--share", default="head", choices=("head", "lora", "all"), help=h["share"])
    p.add_argument("--aggregator", default="fedavg", choices=("fedavg", "fedprox"), help=h["aggregator"])
    p.add_argument("--mu", type=float, default=0.01, help=h["mu"])
    p.add_argument("--personal-head", action="store_true", help=h["personal_head"])
    p.add_argument("--local-epochs", type=int, default=1, help=h["local_epochs"])
    p.add_argument("--probe-epochs", type=int, default=20, help=h["probe_epochs"])
    p.add_argument("--min-fit-fraction", type=float, default=0.5, help=h["min_fit_fraction"])
    p.add_argument("--round-timeout", type=float, default=600.0, help=h["round_timeout"])
    p.add_argument("--mode", default="simulation", choices=("simulation", "deployment"),
                   help="simulation: Flower's engine on this machine; deployment: SuperLink + SuperNode processes")
    p.add_argument("--superlink", default=None,
                   help="deployment: address of a running SuperLink's control API (default: start one on 127.0.0.1)")
    p.add_argument("--baselines", action="store_true", help="also train centralised and local-only models on the same splits")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace a complete run in --out")
    from transferkit.cli import add_train_args

    add_train_args(p)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.2f}%"


def run(args: argparse.Namespace) -> int | None:
    if args.command not in COMMANDS:
        return None
    from transferkit.cli import train_overrides
    from transferkit.federated.api import federate

    m = federate(args.source, args.data, clients_from=args.clients_from, clients=args.clients,
                 partition=args.partition, rounds=args.rounds, share=args.share, aggregator=args.aggregator,
                 out=args.out, mode=args.mode, superlink=args.superlink, baselines=args.baselines,
                 overwrite=args.overwrite, mu=args.mu, personal_head=args.personal_head,
                 local_epochs=args.local_epochs, probe_epochs=args.probe_epochs,
                 min_fit_fraction=args.min_fit_fraction, round_timeout=args.round_timeout, seed=args.seed,
                 train=json.dumps(train_overrides(args)))
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
