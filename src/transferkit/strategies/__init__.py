"""Fine-tuning strategies, one small unit each, behind the ``strategies`` registry."""

from __future__ import annotations

from transferkit.registry import Registry
from transferkit.strategies.auto import Auto
from transferkit.strategies.base import Strategy, TransferContext, parse_options, run_strategy
from transferkit.strategies.gradual import GradualUnfreeze
from transferkit.strategies.peft import BitFit, LoRA  # peft itself is imported only when LoRA layers are made
from transferkit.strategies.regularized import L2SP, WiseFT
from transferkit.strategies.simple import LPFT, Full, LayerwiseLR, LinearProbe, Partial, Scratch

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
from transferkit.strategies.semi import SelfTrain  # noqa: E402
from transferkit.strategies.text_prior import ZeroShotInit  # noqa: E402

for _cls in (Scratch, LinearProbe, Full, Partial, LPFT, LayerwiseLR, GradualUnfreeze, L2SP, WiseFT, Auto, LoRA, BitFit,
             ZeroShotInit, SelfTrain):
    STRATEGIES.add(_cls.name, _cls, (_cls.__doc__ or "").strip().splitlines()[0])


def make_strategy(name: str, options: dict[str, str] | None = None) -> Strategy:
    """Instantiate the registered strategy ``name`` with ``key=value`` options."""
    cls = STRATEGIES.get(name)
    return cls(parse_options(cls.Options, options or {}))


__all__ = ["STRATEGIES", "Strategy", "TransferContext", "make_strategy", "run_strategy"]
