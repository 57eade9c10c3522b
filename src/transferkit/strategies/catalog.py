"""The strategy registry (``transferkit strategies``) and :func:`make_strategy`.

:mod:`transferkit.strategies` (the package) registers every built-in strategy here when it is
imported, which happens before any of its modules is; strategies that run other strategies by
name (``auto``, ``self_train``) look them up here at run time, so they need not import the package
that registers them.
"""

from __future__ import annotations

from transferkit.registry import Registry
from transferkit.strategies.base import Strategy, parse_options

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def make_strategy(name: str, options: dict[str, str] | None = None) -> Strategy:
    """Instantiate the registered strategy ``name`` with ``key=value`` options."""
    cls = STRATEGIES.get(name)
    return cls(parse_options(cls.Options, options or {}))
