"""transferkit: transfer learning done fast and measured.

The public API: :func:`pretrain`, :func:`transfer`, :func:`evaluate`, :func:`predict` and
:func:`load_run`. Heavy modules (torch) load on first use, so ``import transferkit`` is cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {"pretrain", "transfer", "evaluate", "predict", "RunResult"}
__all__ = ["__version__", "load_run", "rank", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        from transferkit import api

        return getattr(api, name)
    if name == "rank":
        from transferkit.transferability.rank import rank

        return rank
    if name == "load_run":
        from transferkit.runs import load_run

        return load_run
    raise AttributeError(f"module 'transferkit' has no attribute {name!r}")
