"""Fine-tuning strategies, one small unit each, behind the ``strategies`` registry."""

from __future__ import annotations

from transferkit.strategies.auto import Auto
from transferkit.strategies.base import Strategy, TransferContext
from transferkit.strategies.catalog import STRATEGIES, make_strategy
from transferkit.strategies.contrastive import Contrastive
from transferkit.strategies.gradual import GradualUnfreeze
from transferkit.strategies.peft import BitFit, LoRA  # peft itself is imported only when LoRA layers are made
from transferkit.strategies.regularized import L2SP, WiseFT
from transferkit.strategies.runner import run_strategy
from transferkit.strategies.semi import SelfTrain
from transferkit.strategies.simple import LPFT, Full, LayerwiseLR, LinearProbe, Partial, Scratch
from transferkit.strategies.text_prior import ZeroShotInit

for _cls in (Scratch, LinearProbe, Full, Partial, LPFT, LayerwiseLR, GradualUnfreeze, L2SP, WiseFT, Auto, LoRA, BitFit,
             ZeroShotInit, SelfTrain, Contrastive):
    STRATEGIES.add(_cls.name, _cls, (_cls.__doc__ or "").strip().splitlines()[0])

__all__ = ["STRATEGIES", "Strategy", "TransferContext", "make_strategy", "run_strategy"]
