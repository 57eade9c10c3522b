"""One registry class, instantiated once per kind of plug-in (datasets, models, strategies...)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from transferkit.errors import ConfigError, did_you_mean

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    summary: str


class Registry(Generic[T]):
    """A named collection of plug-ins of one kind.

    Duplicate names raise at registration time; unknown names raise a :class:`ConfigError` with a
    "did you mean" suggestion; :meth:`list` takes a glob filter (it backs the CLI listings).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, summary: str = "") -> Callable[[T], T]:
        """Decorator form: ``@REG.register("name", "one line")``."""

        def deco(obj: T) -> T:
            self.add(name, obj, summary)
            return obj

        return deco

    def add(self, name: str, obj: T, summary: str = "") -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{self.kind} name {name!r} must be alphanumeric with '_' or '-'")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if not summary and isinstance(obj, Lazy):
            raise ValueError(f"{self.kind} {name!r}: a lazily imported entry needs a summary")
        if not summary:
            doc = getattr(obj, "__doc__", None) or ""
            summary = doc.strip().splitlines()[0] if doc.strip() else ""
        self._entries[name] = Entry(name, obj, summary)

    def get(self, name: str) -> T:
        try:
            return self._entries[name].obj
        except KeyError:
            hint = did_you_mean(name, self._entries)
            known = ", ".join(sorted(self._entries))
            raise ConfigError(f"unknown {self.kind} '{name}'{hint}; known: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def list(self, pattern: str = "*") -> list[Entry[T]]:
        """Entries whose name matches the glob ``pattern``, sorted by name."""
        return [self._entries[n] for n in sorted(self._entries) if fnmatch.fnmatch(n, pattern)]


class Lazy:
    """A registry entry that imports ``module.attr`` on first use.

    Keeps ``import transferkit`` fast when a plug-in needs heavy packages (transformers, peft,
    flwr): the module is imported only when the entry is called or inspected. ``inspect.signature``
    and ``__doc__`` see the target's, so typed options and listings work unchanged.
    """

    def __init__(self, module: str, attr: str) -> None:
        self.module, self.attr = module, attr

    def resolve(self) -> Any:
        import importlib

        return getattr(importlib.import_module(self.module), self.attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # class attributes of a lazily imported class
        if name.startswith("__") and name not in ("__signature__", "__wrapped__"):
            raise AttributeError(name)
        if name == "__signature__":
            import inspect

            return inspect.signature(self.resolve())
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"Lazy({self.module}.{self.attr})"


def lazy(module: str, attr: str) -> Any:
    """``Lazy(module, attr)``, typed loosely so it can stand in for the real object in a registry."""
    return Lazy(module, attr)
