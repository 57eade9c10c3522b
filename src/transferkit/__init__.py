"""transferkit: transfer learning done fast and measured.

The public API: :func:`pretrain`, :func:`transfer`, :func:`adapt`, :func:`federate`,
:func:`evaluate`, :func:`predict`, :func:`rank` and :func:`load_run`. Each loads its module
(and torch) on first use, so ``import transferkit`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported on first access).
_LAZY = {
    "pretrain": "transferkit.api",
    "transfer": "transferkit.api",
    "evaluate": "transferkit.api",
    "RunResult": "transferkit.api",
    "adapt": "transferkit.adaptation.api",
    "federate": "transferkit.federated.api",
    "predict": "transferkit.prediction",
    "rank": "transferkit.transferability.rank",
    "load_run": "transferkit.runs",
    "PretrainSpec": "transferkit.spec",
    "TransferSpec": "transferkit.spec",
    "SplitSpec": "transferkit.spec",
}
__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'transferkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
