"""The built-in adaptation methods (``transferkit methods``), registered in :data:`METHODS`."""

from __future__ import annotations

from transferkit.adaptation.adversarial import CDAN, DANN
from transferkit.adaptation.catalog import METHODS, make_method
from transferkit.adaptation.regularization import MCC, SelfTraining
from transferkit.adaptation.simple import AdaBN, SourceOnly
from transferkit.adaptation.source_free import SHOT, AaD
from transferkit.adaptation.statistic import CORAL, MMD

for _cls in (SourceOnly, DANN, CDAN, MMD, CORAL, MCC, AdaBN, SelfTraining, SHOT, AaD):
    METHODS.add(_cls.name, _cls, (_cls.__doc__ or "").strip().splitlines()[0])

__all__ = ["METHODS", "make_method"]
