"""The adaptation-method registry (``transferkit methods``) and :func:`make_method`."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from transferkit.adaptation.adversarial import CDAN, DANN
from transferkit.adaptation.base import Method
from transferkit.adaptation.regularization import MCC, SelfTraining
from transferkit.adaptation.simple import AdaBN, SourceOnly
from transferkit.adaptation.statistic import CORAL, MMD
from transferkit.errors import ConfigError
from transferkit.registry import Registry
from transferkit.strategies.base import parse_options

METHODS: Registry[type[Method]] = Registry("adaptation method")
for _cls in (SourceOnly, DANN, CDAN, MMD, CORAL, MCC, AdaBN, SelfTraining):
    METHODS.add(_cls.name, _cls, (_cls.__doc__ or "").strip().splitlines()[0])

_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def make_method(name: str, options: dict[str, str] | None = None) -> Method:
    """Instantiate the registered method ``name`` with ``key=value`` options."""
    cls = METHODS.get(name)
    raw: dict[str, Any] = dict(options or {})
    for f in fields(cls.Options):
        if str(f.type) in ("bool", "<class 'bool'>") and isinstance(raw.get(f.name), str):
            text = raw[f.name].strip().lower()
            if text not in _BOOLS:
                raise ConfigError(f"{name}: option {f.name}={raw[f.name]!r} is not true or false")
            raw[f.name] = _BOOLS[text]
    return cls(parse_options(cls.Options, raw))
