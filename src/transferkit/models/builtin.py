"""Built-in backbones: ``small_cnn`` (the seed's architecture, written correctly) and ``mlp``."""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from transferkit.errors import ConfigError
from transferkit.models.base import ModelSpec, TransferModel


def small_cnn(spec: ModelSpec, width: int = 64, hidden: int = 512, dropout: float = 0.25) -> TransferModel:
    """conv 64 -> conv 128 -> fc 512 -> head, with BatchNorm; for small images such as 28x28 digits.

    Groups: ``conv1``, ``conv2``, ``fc`` (features, ``hidden``-d), then the head. A conv block is conv,
    BatchNorm, max-pool, ReLU: ``relu(maxpool(x)) == maxpool(relu(x))`` exactly, and the pooled tensor is a
    quarter of the size, so the ReLU (and its backward: ``predict --adapt tent``) costs a quarter. Weights
    saved with the ReLU first load unchanged (indices 2 and 3 hold no parameters or buffers).
    """
    if len(spec.input_shape) != 3:
        raise ConfigError(f"small_cnn needs image input (C, H, W), got shape {spec.input_shape}")
    c, h, w = spec.input_shape
    if h < 4 or w < 4:
        raise ConfigError(f"small_cnn needs images of at least 4x4, got {h}x{w}")

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.MaxPool2d(2),  # before the ReLU: the same values (ReLU is monotone), the ReLU on a quarter of them
            nn.ReLU(inplace=True),
        )

    flat = 2 * width * (h // 4) * (w // 4)
    groups: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=block(c, width),
        conv2=block(width, 2 * width),
        fc=nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, hidden), nn.ReLU(inplace=True)),
    )
    return TransferModel(groups, hidden, spec)


def mlp(spec: ModelSpec, hidden: int = 256, depth: int = 2, dropout: float = 0.1) -> TransferModel:
    """A multilayer perceptron on flattened inputs (images or tabular features).

    Groups: ``fc1`` .. ``fc{depth}`` (each Linear + ReLU + Dropout), then the head.
    """
    if depth < 1:
        raise ConfigError(f"mlp depth must be at least 1, got {depth}")
    d_in = math.prod(spec.input_shape)
    groups: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(depth):
        layers: list[nn.Module] = [nn.Flatten()] if i == 0 else []
        layers += [nn.Linear(d_in if i == 0 else hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        groups[f"fc{i + 1}"] = nn.Sequential(*layers)
    return TransferModel(groups, hidden, spec)
