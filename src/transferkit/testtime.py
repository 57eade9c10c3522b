"""Test-time adaptation: a trained classifier adapts its normalisation layers online to the stream it predicts.

Three methods, registered in :data:`TTA_METHODS` (``transferkit predict RUN INPUTS --adapt NAME``):

- ``bn``: test-batch normalisation statistics (Schneider et al. 2020, "Improving robustness against
  common corruptions by covariate shift adaptation"; Nado et al. 2020, "Evaluating prediction-time
  batch normalization"): every BatchNorm layer normalises with the mean and variance of the current
  test batch instead of the source running statistics; no weight changes.
- ``tent`` (Wang et al., ICLR 2021): as ``bn``, and one optimiser step per batch on the mean
  prediction entropy ``H(x) = -sum_c p_c(x) log p_c(x)`` w.r.t. the affine parameters (``weight``,
  ``bias``) of the normalisation layers only (BatchNorm, LayerNorm, GroupNorm), but for the first
  ``frozen_norms`` of them (default 1; the paper: 0); every other weight is frozen.
- ``eata`` (Niu et al., ICML 2022): as ``tent``, but the entropy loss covers only reliable,
  non-redundant samples -- ``H(x) < E0`` (``E0 = e0 * ln C``) and ``|cos(p(x), m)| < margin`` with
  ``m`` the moving average of the selected samples' softmax -- each weighted by
  ``1 / exp(H(x) - E0)``, plus the anti-forgetting penalty ``beta * sum_i F_i (theta_i - theta_i^src)^2``
  with ``F`` the diagonal Fisher information of the affine parameters estimated on clean inputs.

Predictions for a batch come from the forward pass that computes its loss (before the step), as in
TENT. Collapse: with ``tent`` / ``eata``, when over the last ``window`` batches one class takes at
least ``share`` of the predictions *and* the mean entropy is below ``entropy * ln C``, the model is
reset to the source weights (optimiser state and EATA's moving average too) and the batch's record
says ``reset``. A stream sorted by class looks the same, so resets are recorded, never hidden.

Cost: a tent / eata batch is one forward and one backward, down to the first normalisation layer it trains:
the first ``frozen_norms`` layers (default 1) keep their source affine parameters, so the backward skips the
network's first, largest activations (:class:`TentOptions`; ``0`` is the papers' every-layer setting). What
makes it fast without changing a value is in :mod:`transferkit.testtime_speed` (channels-last gradients
under a channels-last placement; frozen convolution / linear weights cast to bf16 once per stream under
bf16 autocast). ``predict --adapt eata`` keeps EATA's Fisher estimate in the run folder
(:mod:`transferkit.prediction`).

Shape:
    - stream inputs: ``[N, *input_shape]`` (images, token ids, waveforms: whatever the model takes)
    - logits returned by :func:`adapt_stream`: ``[N, C]`` float32 on the CPU
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.engine.precision import Placement, set_memory_format
from transferkit.errors import ConfigError
from transferkit.registry import Registry
from transferkit.testtime_speed import frozen_weights_in_bf16, grad_like_output

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
NORM_LAYERS = (*BATCH_NORMS, nn.LayerNorm, nn.GroupNorm)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of the softmax of each row: ``[N, C] -> [N]`` (nats)."""
    logp = logits.float().log_softmax(1)
    return -(logp.exp() * logp).sum(1)


def norm_inventory(model: nn.Module) -> dict[str, int]:
    """How many normalisation layers of each kind ``model`` has (``{"BatchNorm2d": 2, ...}``)."""
    out: dict[str, int] = {}
    for m in model.modules():
        if isinstance(m, NORM_LAYERS):
            out[type(m).__name__] = out.get(type(m).__name__, 0) + 1
    return out


def affine_parameters(model: nn.Module, skip: int = 0) -> list[nn.Parameter]:
    """The affine ``weight`` / ``bias`` of the normalisation layers that have them, in module order, less the
    first ``skip`` such layers: what ``tent`` and ``eata`` train (``skip``: :attr:`TentOptions.frozen_norms`)."""
    return [p for ps in _affine_layers(model)[skip:] for p in ps]


def _affine_layers(model: nn.Module) -> list[list[nn.Parameter]]:
    """Per normalisation layer with affine parameters (module order), its ``weight`` / ``bias``."""
    layers = [[p for p in (getattr(m, "weight", None), getattr(m, "bias", None)) if isinstance(p, nn.Parameter)]
              for m in model.modules() if isinstance(m, NORM_LAYERS)]
    return [ps for ps in layers if ps]


@dataclass
class CollapseOptions:
    """When to reset to the source weights (tent / eata)."""

    enabled: bool = True
    window: int = 4  # batches looked at
    share: float = 0.9  # one class takes at least this share of the window's predictions ...
    entropy: float = 0.1  # ... and their mean entropy is below this fraction of ln C

    def __post_init__(self) -> None:
        if self.window < 1 or not 0 < self.share <= 1 or not 0 < self.entropy <= 1:
            raise ConfigError(f"collapse options {self}: window >= 1, share and entropy in (0, 1]")


@dataclass
class BNOptions:
    """``bn`` has no options: each batch's own statistics replace the source running statistics."""


@dataclass
class TentOptions:
    """``tent``: one optimiser step per batch on the mean entropy (Wang et al. 2021)."""

    lr: float = 1e-3  # Adam learning rate (TENT's CIFAR setting); SGD: 0.00025 on ImageNet in the paper
    optimizer: str = "adam"  # "adam" or "sgd" (momentum 0.9)
    collapse: CollapseOptions = field(default_factory=CollapseOptions)
    # The first ``frozen_norms`` normalisation layers (module order) keep their source affine parameters;
    # a BatchNorm among them still normalises with each test batch's statistics, as in ``bn``. 0: every
    # layer trains (the papers' setting). 1 (default): the gradient no longer runs back through the
    # network's first, largest activations -- on small_cnn's corruption stream 1.5x the samples/s of 0
    # for a 0.1-point accuracy change (docs/TTA.md measures both). None: 1, or 0 for a model with a
    # single such layer (never nothing to train).
    frozen_norms: int | None = None

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"tta lr {self.lr}: must be > 0")
        if self.frozen_norms is not None and self.frozen_norms < 0:
            raise ConfigError(f"--adapt-frozen-norms {self.frozen_norms}: must be >= 0")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"tta optimizer '{self.optimizer}': must be adam or sgd")


@dataclass
class EataOptions(TentOptions):
    """``eata``: tent on reliable, non-redundant samples plus a Fisher penalty (Niu et al. 2022)."""

    e0: float = 0.4  # entropy threshold E0 as a fraction of ln C (the paper's 0.4)
    margin: float | None = None  # drop |cos(p, m)| >= margin; None: 1.5/sqrt(C) (the paper: 0.05 at C=1000)
    ema: float = 0.1  # moving-average rate of m
    fisher_weight: float = 2000.0  # beta, the paper's value
    fisher_samples: int = 500  # clean inputs used to estimate the Fisher information

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.e0 <= 1 or not 0 < self.ema <= 1 or self.fisher_weight < 0 or self.fisher_samples < 1:
            raise ConfigError(f"eata options {self}: e0, ema in (0, 1], fisher_weight >= 0, fisher_samples >= 1")
        if self.margin is not None and not 0 < self.margin <= 1:
            raise ConfigError(f"eata margin {self.margin}: must be in (0, 1]")


@dataclass
class StepRecord:
    """What one batch did: the row of the per-batch log."""

    batch: int
    n: int
    entropy: float  # mean prediction entropy of the batch (nats)
    selected: int | None  # samples in the loss (eata: after both filters; tent: all; bn: none)
    reset: bool  # the model was reset to the source weights after this batch


class Adapter:
    """Base: puts the model in adaptation mode, predicts a batch, adapts, records. Subclasses set ``step``."""

    name: ClassVar[str] = ""
    options_type: ClassVar[type] = BNOptions
    needs_batchnorm: ClassVar[bool] = True
    trains: ClassVar[bool] = False  # the affine parameters get gradients

    def __init__(self, model: nn.Module, options: Any, place: Placement, num_classes: int) -> None:
        if not isinstance(options, self.options_type):
            raise ConfigError(f"--adapt {self.name}: options must be {self.options_type.__name__}")
        self.model, self.place, self.num_classes = model, place, num_classes
        self.options: Any = options
        self._check_model()
        self.source = copy.deepcopy(model.state_dict())
        frozen = options.frozen_norms if isinstance(options, TentOptions) else 0
        if frozen is None:
            frozen = max(0, min(1, len(_affine_layers(model)) - 1))
        self.frozen_norms = frozen
        self.params = affine_parameters(model, frozen)
        if self.trains and not self.params:
            raise ConfigError(f"--adapt {self.name} --adapt-frozen-norms {frozen}: model "
                              f"{getattr(getattr(model, 'spec', None), 'name', type(model).__name__)} has "
                              f"{len(_affine_layers(model))} normalisation layer(s) with affine "
                              "parameters, so none is left to train; give a smaller --adapt-frozen-norms")
        self.batches = 0

    def _check_model(self) -> None:
        kinds = norm_inventory(self.model)
        spec = getattr(self.model, "spec", None)
        label = f"model {getattr(spec, 'name', type(self.model).__name__)}"
        if not kinds:
            raise ConfigError(f"--adapt {self.name}: {label} has no normalisation layers (BatchNorm, LayerNorm, "
                              "GroupNorm) to adapt; predict without --adapt")
        if self.needs_batchnorm and not any(isinstance(m, BATCH_NORMS) for m in self.model.modules()):
            raise ConfigError(f"--adapt {self.name}: {label} has no BatchNorm layers (only {', '.join(kinds)}, which "
                              "normalise each input by itself); use --adapt tent or eata")
        if not self.needs_batchnorm and not affine_parameters(self.model):
            raise ConfigError(f"--adapt {self.name}: {label}'s normalisation layers have no affine parameters to adapt")

    @contextmanager
    def active(self) -> Iterator[Adapter]:
        """Adaptation mode for the duration: BatchNorm on batch statistics (running ones untouched),
        everything else in eval mode, only the affine parameters trainable, under bf16 autocast the frozen
        convolution / linear weights held in bf16; all restored after."""
        m = self.model
        modes, grads = [(mod, mod.training) for mod in m.modules()], [p.requires_grad for p in m.parameters()]
        bns = [b for b in m.modules() if isinstance(b, BATCH_NORMS)]
        tracked = [b.track_running_stats for b in bns]
        m.eval()
        for b in bns:
            b.train()
            b.track_running_stats = False
        for p in m.parameters():
            p.requires_grad_(False)
        for p in self.params if self.trains else []:
            p.requires_grad_(True)
        hooks = []
        if self.place.channels_last:
            set_memory_format(m, torch.channels_last)
            if self.trains:
                hooks = [mod.register_forward_hook(grad_like_output) for mod in m.modules() if not any(mod.children())]
        try:
            with frozen_weights_in_bf16(m, self.params if self.trains else [], self.place):
                yield self
        finally:
            for h in hooks:
                h.remove()
            if self.place.channels_last:
                set_memory_format(m, torch.contiguous_format)
            for b, t in zip(bns, tracked, strict=True):
                b.track_running_stats = t
            for p, g in zip(m.parameters(), grads, strict=True):
                p.requires_grad_(g)
            for mod, mode in modes:
                mod.training = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.place.autocast():
            return self.model(self.place.to_input(x)).float()

    def step(self, x: torch.Tensor) -> tuple[torch.Tensor, StepRecord]:
        with torch.no_grad():
            logits = self.forward(x)
        self.batches += 1
        return logits.cpu(), StepRecord(self.batches - 1, len(x), float(entropy(logits).mean()), None, False)


class BNAdapter(Adapter):
    """Test-batch statistics in every BatchNorm layer (Schneider et al. 2020; Nado et al. 2020)."""

    name = "bn"


class TentAdapter(Adapter):
    """Entropy minimisation on the normalisation affine parameters, one step per batch (Wang et al. 2021)."""

    name = "tent"
    options_type = TentOptions
    needs_batchnorm = False
    trains = True

    def __init__(self, model: nn.Module, options: Any, place: Placement, num_classes: int) -> None:
        super().__init__(model, options, place, num_classes)
        self.optimizer = self._optimizer()
        self.window: deque[tuple[torch.Tensor, float, int]] = deque(maxlen=options.collapse.window)
        self.resets = 0

    def _optimizer(self) -> torch.optim.Optimizer:
        if self.options.optimizer == "sgd":
            return torch.optim.SGD(self.params, lr=self.options.lr, momentum=0.9)
        return torch.optim.Adam(self.params, lr=self.options.lr, betas=(0.9, 0.999))

    def loss(self, logits: torch.Tensor, ent: torch.Tensor) -> tuple[torch.Tensor | None, int]:
        """The batch's loss (None: no step) and the number of samples in it."""
        return ent.mean(), len(ent)

    def step(self, x: torch.Tensor) -> tuple[torch.Tensor, StepRecord]:
        with torch.enable_grad():
            logits = self.forward(x)
            ent = entropy(logits)
            loss, selected = self.loss(logits, ent)
            if loss is not None:
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        logits = logits.detach()
        self.batches += 1
        rec = StepRecord(self.batches - 1, len(x), float(ent.detach().mean()), selected, self._collapsed(logits, ent))
        return logits.cpu(), rec

    def _collapsed(self, logits: torch.Tensor, ent: torch.Tensor) -> bool:
        """Record the batch; reset to the source weights when the window has collapsed (see module doc)."""
        opt = self.options.collapse
        if not opt.enabled:
            return False
        counts = torch.bincount(logits.argmax(1).cpu(), minlength=self.num_classes)
        self.window.append((counts, float(ent.detach().sum()), len(ent)))
        if len(self.window) < opt.window:
            return False
        total = torch.stack([c for c, _, _ in self.window]).sum(0)
        n = sum(k for _, _, k in self.window)
        mean_ent = sum(e for _, e, _ in self.window) / n
        if float(total.max()) / n < opt.share or mean_ent >= opt.entropy * math.log(self.num_classes):
            return False
        self.reset()
        return True

    def reset(self) -> None:
        """Back to the source weights; optimiser state and the collapse window cleared."""
        self.model.load_state_dict(self.source)
        self.optimizer = self._optimizer()
        self.window.clear()
        self.resets += 1


class EataAdapter(TentAdapter):
    """Reliable, non-redundant sample entropy minimisation with a Fisher anti-forgetting penalty (Niu et al. 2022)."""

    name = "eata"
    options_type = EataOptions

    def __init__(self, model: nn.Module, options: Any, place: Placement, num_classes: int) -> None:
        super().__init__(model, options, place, num_classes)
        self.e0 = options.e0 * math.log(num_classes)
        self.margin = options.margin if options.margin is not None else min(1.0, 1.5 / math.sqrt(num_classes))
        self.average: torch.Tensor | None = None
        self.anchor = [p.detach().clone() for p in self.params]
        self.fisher: list[torch.Tensor] | None = None

    def estimate_fisher(self, x: torch.Tensor, batch_size: int) -> None:
        """Diagonal Fisher of the affine parameters on clean inputs ``x``: the mean over batches of
        the squared gradient of the cross-entropy with the model's own predictions (EATA, Eq. 9).
        Call inside :meth:`active`."""
        sums = [torch.zeros_like(p) for p in self.params]
        batches = 0
        for i in range(0, len(x), batch_size):
            with torch.enable_grad():
                logits = self.forward(x[i : i + batch_size])
                loss = F.cross_entropy(logits, logits.argmax(1).detach())
                grads = torch.autograd.grad(loss, self.params)
            for s, g in zip(sums, grads, strict=True):
                s += g.detach().float() ** 2
            batches += 1
        self.fisher = [s / max(batches, 1) for s in sums]

    def loss(self, logits: torch.Tensor, ent: torch.Tensor) -> tuple[torch.Tensor | None, int]:
        keep = ent.detach() < self.e0
        probs = logits.detach().softmax(1)
        if self.average is not None:
            keep &= F.cosine_similarity(probs, self.average[None], dim=1).abs() < self.margin
        selected = int(keep.sum())
        if selected == 0:
            return None, 0
        mean = probs[keep].mean(0)
        self.average = mean if self.average is None else (1 - self.options.ema) * self.average + self.options.ema * mean
        weight = torch.exp(self.e0 - ent[keep].detach())  # 1 / exp(H - E0)
        loss = (weight * ent[keep]).mean()
        if self.fisher is not None and self.options.fisher_weight > 0:
            loss = loss + self.options.fisher_weight * sum(
                (f * (p - a) ** 2).sum() for f, p, a in zip(self.fisher, self.params, self.anchor, strict=True))
        return loss, selected

    def reset(self) -> None:
        super().reset()
        self.average = None


#: Test-time adaptation methods by name (``predict --adapt NAME``).
TTA_METHODS: Registry[type[Adapter]] = Registry("test-time adaptation method")
for _cls in (BNAdapter, TentAdapter, EataAdapter):
    TTA_METHODS.add(_cls.name, _cls)


def make_adapter(method: str, model: nn.Module, place: Placement, num_classes: int, options: Any = None) -> Adapter:
    """The registered adapter ``method`` for ``model`` with ``options`` (default: the method's defaults)."""
    cls = TTA_METHODS.get(method)
    return cls(model, options if options is not None else cls.options_type(), place, num_classes)


def adapt_stream(adapter: Adapter, x: torch.Tensor, batch_size: int,
                 fisher_x: torch.Tensor | None = None) -> tuple[torch.Tensor, list[StepRecord]]:
    """Predict ``x`` in batches of ``batch_size``, in order, adapting after each; returns the logits
    ``[N, C]`` and one :class:`StepRecord` per batch. ``fisher_x``: clean inputs for EATA's Fisher
    (default: the first ``fisher_samples`` inputs of the stream); an adapter whose ``fisher`` is
    already set (a cached estimate) keeps it."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    outs, records = [], []
    with adapter.active():
        if isinstance(adapter, EataAdapter) and adapter.fisher is None:  # None: not given (cached) beforehand
            clean = fisher_x if fisher_x is not None else x[: adapter.options.fisher_samples]
            adapter.estimate_fisher(clean, batch_size)
        for i in range(0, len(x), batch_size):
            logits, rec = adapter.step(x[i : i + batch_size])
            outs.append(logits)
            records.append(rec)
    return torch.cat(outs), records


__all__ = ["TTA_METHODS", "Adapter", "BNAdapter", "BNOptions", "CollapseOptions", "EataAdapter", "EataOptions",
           "StepRecord", "TentAdapter", "TentOptions", "adapt_stream", "affine_parameters", "entropy", "make_adapter",
           "norm_inventory"]
