"""The strategy registry (``transferkit strategies``) and :func:`make_strategy`.

:mod:`transferkit.strategies` (the package) registers every built-in strategy here when it is
imported, which happens before any of its modules is; strategies that run other strategies by
name (``auto``, ``self_train``) look them up here at run time, so they need not import the package
that registers them.
"""

from __future__ import annotations

from typing import Any

from transferkit.engine.plugin import make_plugin
from transferkit.registry import Registry
from transferkit.strategies.base import Strategy

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def make_strategy(strategy: str | Strategy, options: Any = None) -> Strategy:
    """A configured strategy: a registered name with ``options`` (its ``Options`` instance, a dict of typed
    values or of CLI strings, or None for the defaults), or a configured :class:`Strategy` (returned as is)."""
    return make_plugin(STRATEGIES, strategy, options)
