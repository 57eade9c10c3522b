"""The model contract every strategy relies on: ordered layer groups, features, a replaceable head.

In the spirit of timm's ``forward_features`` / ``forward_head`` / ``reset_classifier``: with this
contract, linear probing, LP-FT, partial freezing and layer-wise learning rates need no
per-model code.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model's architecture (stored as ``model.json``)."""

    name: str
    input_shape: tuple[int, ...]
    class_names: list[str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    modality: str = "image"
    #: input preprocessing fitted on the training data (tabular: see transferkit.data.tabular_prep), or None
    preprocess: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        if d["preprocess"] is None:
            del d["preprocess"]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(
            name=str(d["name"]),
            input_shape=tuple(int(v) for v in d["input_shape"]),
            class_names=[str(c) for c in d["class_names"]],
            kwargs=dict(d.get("kwargs", {})),
            modality=str(d.get("modality", "image")),
            preprocess=d.get("preprocess"),
        )


class TransferModel(nn.Module):
    """A backbone made of named groups (input -> output) followed by a linear head.

    Shape:
        - input: ``[N, *spec.input_shape]``
        - ``forward_features``: ``[N, feature_dim]``
        - ``forward``: ``[N, num_classes]``
    """

    def __init__(self, groups: OrderedDict[str, nn.Module], feature_dim: int, spec: ModelSpec) -> None:
        super().__init__()
        if not groups:
            raise ValueError("a TransferModel needs at least one backbone group")
        self.groups = nn.ModuleDict(groups)
        self.feature_dim = feature_dim
        self.spec = spec
        self.head: nn.Module = nn.Linear(feature_dim, spec.num_classes)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for g in self.groups.values():
            x = g(x)
        return x

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_head(self, class_names: list[str]) -> None:
        """Replace the head with a freshly initialised one for ``class_names``."""
        ref = next(self.parameters())
        self.head = nn.Linear(self.feature_dim, len(class_names)).to(ref.device)
        self.spec.class_names = list(class_names)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        """Named groups from input to output, the head last."""
        return [*self.groups.items(), ("head", self.head)]

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for g in self.groups.values() for p in g.parameters()]

    def uses_conv(self) -> bool:
        return any(isinstance(m, nn.Conv2d) for m in self.modules())

    def has_batchnorm(self) -> bool:
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules())
