"""Run every command block of README.md, in order, exactly as written; exit non-zero at the first failure.

    python3 scripts/readme_check.py              # from the repository root (CI: .ci/run)
    python3 scripts/readme_check.py --list       # print the script it would run, run nothing

The ```bash blocks run in one bash session (so the README's ``source .venv/bin/activate`` carries to
the blocks after it) with ``set -euo pipefail``; each ```python block runs through the ``python`` of
that session. Before each block a marker line names it, so a failure points at its README line.
Untagged or ``text`` blocks (layouts, output samples) are not commands and are skipped; any other
language tag is an error, so no command block can escape the check.

Quick mode: ``TRANSFERKIT_MAX_EPOCHS=N`` in the environment caps every training phase at N epochs
(the engine reads it); the commands themselves are never edited. ``.ci/run`` sets it to 1.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    language: str
    line: int  # 1-based line of the opening fence
    text: str


def blocks(markdown: str) -> list[Block]:
    """The fenced blocks of ``markdown`` in order (language as written after the fence, may be empty)."""
    found: list[Block] = []
    lang, start, body = None, 0, []  # type: tuple[str | None, int, list[str]]
    for n, line in enumerate(markdown.splitlines(), 1):
        m = FENCE.match(line.strip())
        if lang is None and m:
            lang, start, body = m.group(1), n, []
        elif lang is not None and line.strip() == "```":
            found.append(Block(lang, start, "\n".join(body)))
            lang = None
        elif lang is not None:
            body.append(line)
    if lang is not None:
        raise ValueError(f"README.md:{start}: unterminated code block")
    return found


#: fenced blocks that are not commands (layouts, output samples); any other language is refused
NOT_COMMANDS = ("", "text")


def script(found: list[Block]) -> str:
    """One bash script running the bash and python blocks in order, each announced by a marker line.

    A block tagged with another language (``sh``, ``console``...) is an error rather than skipped
    silently: it would look like a command to a reader and never run in CI."""
    parts = ["set -euo pipefail"]
    for i, b in enumerate(found, 1):
        if b.language in NOT_COMMANDS:
            continue
        if b.language not in ("bash", "python"):
            raise ValueError(f"README.md:{b.line}: a ```{b.language} block; tag commands as bash or python "
                             f"(or leave a non-command block untagged or 'text')")
        parts.append(f"echo '### README.md block {i} (line {b.line}, {b.language})' >&2")
        if b.language == "bash":
            parts.append(b.text)
        else:
            parts.append("python - <<'README_PYTHON_BLOCK'\n" + b.text + "\nREADME_PYTHON_BLOCK")
    parts.append("echo '### README.md: every block passed' >&2")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    ap.add_argument("--list", action="store_true", help="print the script, run nothing")
    args = ap.parse_args(argv)
    text = script(blocks(Path(args.readme).read_text()))
    if args.list:
        print(text, end="")
        return 0
    rc = subprocess.run(["bash", "-c", text], cwd=Path(args.readme).resolve().parent, env=os.environ.copy()).returncode
    if rc != 0:
        print(f"readme_check: a README block failed (exit {rc}); the last '### README.md block' line above names it",
              file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
