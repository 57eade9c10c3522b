"""The adaptation-method registry and :func:`make_method`.

:mod:`transferkit.adaptation.methods` registers every built-in method here (import it, or read
``transferkit.adaptation.METHODS``, to see them all). A method that runs another one by name
(``self_training`` after its ``base``) looks it up here when it runs, so it does not import the
module that registers it.
"""

from __future__ import annotations

from transferkit.adaptation.base import Method
from transferkit.registry import Registry
from transferkit.strategies.base import parse_options

METHODS: Registry[type[Method]] = Registry("adaptation method")


def make_method(name: str, options: dict[str, str] | None = None) -> Method:
    """Instantiate the registered method ``name`` with ``key=value`` options."""
    cls = METHODS.get(name)
    return cls(parse_options(cls.Options, dict(options or {}), kind=f"{name}"))
