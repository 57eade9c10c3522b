"""Wrap any user ``nn.Module`` into the :class:`TransferModel` contract by naming its head."""

from __future__ import annotations

import torch
from torch import nn

from transferkit.errors import ConfigError, did_you_mean
from transferkit.models.base import ModelSpec, TransferModel


class WrappedModel(TransferModel):
    """A user module whose head (a ``nn.Linear`` named ``head_name``) is swapped for an identity.

    ``forward_features`` runs the user's own ``forward`` with the head removed; layer groups are
    the module's top-level children in registration order (the head excluded).
    """

    def __init__(self, body: nn.Module, head_name: str, spec: ModelSpec) -> None:
        nn.Module.__init__(self)
        old = _get(body, head_name)
        if not isinstance(old, nn.Linear):
            raise ConfigError(f"head '{head_name}' must be an nn.Linear, got {type(old).__name__}")
        _set(body, head_name, nn.Identity())
        self.body = body
        self.head_name = head_name
        self.feature_dim = old.in_features
        self.spec = spec
        self.head = old if old.out_features == spec.num_classes else nn.Linear(old.in_features, spec.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        groups = [(n, m) for n, m in self.body.named_children() if any(True for _ in m.parameters())]
        return [*groups, ("head", self.head)]

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.body.parameters())


def _get(module: nn.Module, dotted: str) -> nn.Module:
    names = [n for n, _ in module.named_modules() if n]
    try:
        return module.get_submodule(dotted)
    except AttributeError:
        raise ConfigError(f"module has no submodule '{dotted}'{did_you_mean(dotted, names)}") from None


def _set(module: nn.Module, dotted: str, new: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, leaf, new)


def wrap_module(
    module: nn.Module,
    head: str,
    input_shape: tuple[int, ...],
    class_names: list[str],
    name: str = "user_module",
) -> WrappedModel:
    """Wrap ``module`` (its head submodule named ``head``) for use with every strategy.

    The head is kept when it already has ``len(class_names)`` outputs, otherwise replaced.
    """
    spec = ModelSpec(name=name, input_shape=tuple(input_shape), class_names=list(class_names))
    return WrappedModel(module, head, spec)
