"""The adaptation-method registry (``transferkit methods``) and :func:`make_method`."""

from __future__ import annotations

from transferkit.adaptation.adversarial import CDAN, DANN
from transferkit.adaptation.base import Method
from transferkit.adaptation.regularization import MCC, SelfTraining
from transferkit.adaptation.simple import AdaBN, SourceOnly
from transferkit.adaptation.statistic import CORAL, MMD
from transferkit.registry import Registry
from transferkit.strategies.base import parse_options

METHODS: Registry[type[Method]] = Registry("adaptation method")
for _cls in (SourceOnly, DANN, CDAN, MMD, CORAL, MCC, AdaBN, SelfTraining):
    METHODS.add(_cls.name, _cls, (_cls.__doc__ or "").strip().splitlines()[0])


def make_method(name: str, options: dict[str, str] | None = None) -> Method:
    """Instantiate the registered method ``name`` with ``key=value`` options."""
    cls = METHODS.get(name)
    return cls(parse_options(cls.Options, dict(options or {}), kind=f"{name}"))
