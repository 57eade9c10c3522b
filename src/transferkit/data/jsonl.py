"""JSON Lines files: the parsed value of every non-blank line, with its line number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transferkit.errors import DataError, one_line_reason


def jsonl_values(path: Path) -> list[tuple[int, Any]]:
    """``(line number, parsed value)`` for each non-blank line of ``path`` (UTF-8, a BOM allowed); an
    unreadable file or a line that is not JSON is a one-line :class:`DataError` naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({one_line_reason(err)})") from None
    values = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            values.append((n, json.loads(line)))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {n} is not JSON ({one_line_reason(err)})") from None
    return values
