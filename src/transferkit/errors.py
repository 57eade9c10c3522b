"""User-facing errors: one clear line naming the culprit; the CLI prints it and exits non-zero."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TransferkitError(Exception):
    """An error the user can fix (bad path, bad value, mismatched checkpoint).

    The message must be a single line that names the file, field or value at fault.
    """

    exit_code = 2


class DataError(TransferkitError):
    """Unreadable, empty or malformed data."""


class ConfigError(TransferkitError):
    """An invalid configuration value."""


class CheckpointError(TransferkitError):
    """A run directory or weights file that is missing, corrupt or does not fit."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_line_reason(err: BaseException) -> str:
    """An exception as one short line (at most 200 characters; its type name when it has no message),
    for wrapping a library's error into a :class:`DataError` that names the file."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:200]
