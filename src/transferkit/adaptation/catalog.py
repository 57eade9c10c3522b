"""The adaptation-method registry and :func:`make_method`.

:mod:`transferkit.adaptation.methods` registers every built-in method here (import it, or read
``transferkit.adaptation.METHODS``, to see them all). A method that runs another one by name
(``self_training`` after its ``base``) looks it up here when it runs, so it does not import the
module that registers it.
"""

from __future__ import annotations

from typing import Any

from transferkit.adaptation.base import Method
from transferkit.engine.plugin import make_plugin
from transferkit.registry import Registry

METHODS: Registry[type[Method]] = Registry("adaptation method")


def make_method(method: str | Method, options: Any = None) -> Method:
    """A configured method: a registered name with ``options`` (its ``Options`` instance, a dict of typed
    values or of CLI strings, or None for the defaults), or a configured :class:`Method` (returned as is)."""
    return make_plugin(METHODS, method, options)
