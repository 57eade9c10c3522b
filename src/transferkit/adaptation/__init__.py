"""Unsupervised domain adaptation: methods (``METHODS``), label-free validators and :func:`adapt`.

Target labels never reach a method; they are read only to *evaluate*, when the user supplies
them. Heavy modules load on first attribute access so the CLI stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["METHODS", "VALIDATORS", "adapt", "list_methods", "make_method"]


def __getattr__(name: str) -> Any:
    if name in ("METHODS", "make_method"):
        from transferkit.adaptation import methods

        return getattr(methods, name)
    if name == "VALIDATORS":
        from transferkit.adaptation.validators import VALIDATORS

        return VALIDATORS
    if name in ("adapt", "list_methods"):
        from transferkit.adaptation import api

        return getattr(api, name)
    raise AttributeError(f"module 'transferkit.adaptation' has no attribute {name!r}")
