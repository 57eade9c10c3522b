"""Copy the headline numbers of ``docs/benchmarks.json`` into README.md (between marker comments).

    python benchmarks/headline.py          # rewrites the block; benchmarks/core.py calls it after a full run
    python benchmarks/headline.py --check  # exit 1 when README's block differs from the JSON (a test runs this)

README never holds a typed-in number: the block is rendered from the generated JSON only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- headline:start (benchmarks/headline.py writes this block) -->", "<!-- headline:end -->"


def render(doc: dict[str, Any]) -> str:
    """The README block: the summary checks of the last full ``benchmarks/core.py`` run."""
    meta, machine = doc["meta"], doc["machine"]
    lines = [START, "",
             (f"Headline checks from [`docs/BENCHMARKS.md`](docs/BENCHMARKS.md) ({meta['mode']} run of "
              f"{meta['date']}, {machine.get('cpu_model', 'unknown CPU')}, {machine.get('usable_cpus', '?')} usable "
              "cores; ratios measured within that one run):"), "",
             "| check | measured | target | result |", "|---|---|---|---|"]
    for c in doc["checks"]:
        lines.append(f"| {c['name']} | {c['value']} | {c['target']} | {'PASS' if c['passed'] else 'FAIL'} |")
    return "\n".join([*lines, "", END])


def splice_block(text: str, start: str, end: str, block: str, name: str = "README.md") -> str:
    """``text`` with the part from marker ``start`` to marker ``end`` (inclusive) replaced by ``block``, which
    carries the markers itself. Any generated README block uses this (benchmarks/uda.py too)."""
    if start not in text or end not in text:
        raise SystemExit(f"{name}: missing the markers {start!r} ... {end!r}")
    head, rest = text.split(start, 1)
    return head + block + rest.split(end, 1)[1]


def splice(readme: str, block: str) -> str:
    """``readme`` with the headline block between its markers (inclusive) replaced by ``block``."""
    return splice_block(readme, START, END, block)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=ROOT / "docs" / "benchmarks.json")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when the README block is stale")
    args = p.parse_args(argv)
    doc = json.loads(args.json.read_text())
    readme = args.readme.read_text()
    updated = splice(readme, render(doc))
    if args.check:
        if updated != readme:
            print(f"{args.readme}: headline block differs from {args.json}; run python benchmarks/headline.py",
                  file=sys.stderr)
            return 1
        return 0
    if updated != readme:
        args.readme.write_text(updated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
