"""Source-free adaptation: a source model and unlabelled target inputs, never the source data.

- **SHOT** (Liang, Hu & Feng, ICML 2020, "Do we really need to access the source data?"): keep the
  source hypothesis (the head) frozen and train the feature extractor with information maximisation,
  ``L_IM = E_x H(p(x)) - H(E_x p(x))`` (confident *and* diverse predictions), plus ``beta`` times the
  cross-entropy to self-supervised pseudo-labels: class centroids of the target features weighted by the
  current predictions, each input labelled by its nearest centroid (cosine), refined once with the hard
  labels (their eqs. 4-6). The pseudo-labels are recomputed at every epoch start. This is ``shot`` with
  ``stage2=none``.
- **SHOT + consistency** (``shot``'s default on single-channel images, ``stage2=auto`` -> ``consistency``):
  SHOT, then the second, *labeling-transfer* stage of SHOT++ (Liang, Hu, Wang, He & Feng, TPAMI 2021,
  "Source data-absent unsupervised domain adaptation through hypothesis transfer and labeling transfer"),
  which trains on SHOT's confident target pseudo-labels with a semi-supervised consistency loss (they use
  MixMatch). Here FixMatch-style (Sohn et al., NeurIPS 2020): a mean teacher (EMA of the model; French et
  al., ICLR 2018) labels each clean target batch, and the model learns those labels, class-balanced and
  above a confidence threshold, on a randomly re-styled copy of the batch
  (:func:`~transferkit.adaptation.augment.augment_glyphs`), plus a class-balance term
  ``KL(p_bar || uniform)`` (:func:`consistency_loss`). The epoch budget is split between the two stages
  (``stage2_fraction``, half each); still no source data. Other inputs (RGB, audio, text) get SHOT alone
  under ``auto``: the re-styling is made for glyphs.
- **AaD** (Yang, van de Weijer, Herranz & Jui, NeurIPS 2022, "Attracting and Dispersing"): each
  prediction is pulled toward the predictions of its ``k`` nearest target neighbours in feature space
  (kept in a memory bank) and pushed from the other predictions of its batch, the push weighted by
  ``lambda(t) = (1 + 10 t / T)^(-decay)``: ``L = -sum_{j in kNN(i)} p_i . p_j + lambda sum_{j in batch} p_i . p_j``.

Both train the backbone only (the source head stays: the classes keep their meaning; SHOT's second stage
too unless ``stage2_head``) and read only ``ctx.target_train`` / ``ctx.target_val``; every phase's
checkpoint is chosen by the context's label-free validator. Each input's position travels as its "label"
through the training loop, so the losses can look up per-input state (pseudo-labels, memory bank) without a
second loop.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.adaptation.augment import augment_glyphs
from transferkit.adaptation.base import AdaptContext, AdaptModule, Method, make_val_score
from transferkit.adaptation.functional import class_balance_loss, class_balanced_pseudo_label_loss
from transferkit.adaptation.teacher import ema_update
from transferkit.engine.features import extract_features
from transferkit.engine.loop import Phase, steps_per_epoch
from transferkit.engine.precision import Placement, predict_logits
from transferkit.errors import ConfigError
from transferkit.models.base import TransferModel
from transferkit.options import opt


def information_maximization(logits: torch.Tensor) -> torch.Tensor:
    """``E_i H(p_i) - H(mean_i p_i)`` of softmax predictions (SHOT, eq. 4); lowest for confident, diverse ones.

    Shape: ``logits [N, C]`` -> scalar.
    """
    p = logits.float().softmax(dim=1)
    log_p = logits.float().log_softmax(dim=1)
    entropy = -(p * log_p).sum(dim=1).mean()
    mean = p.mean(dim=0)
    diversity = -(mean * torch.log(mean + 1e-8)).sum()
    return entropy - diversity


def centroid_pseudo_labels(features: torch.Tensor, probs: torch.Tensor, rounds: int = 2) -> torch.Tensor:
    """SHOT's self-supervised labels: centroids ``c_k = sum_i p_ik f_i / sum_i p_ik``, each input labelled by
    its nearest centroid in cosine distance, then ``rounds - 1`` refinements with the hard labels (eqs. 5-6).

    Shape: ``features [N, D]``, ``probs [N, C]`` -> ``labels [N]`` (int64).
    """
    f = F.normalize(features.float(), dim=1)
    weights = probs.float()
    labels = weights.argmax(dim=1)
    for _ in range(rounds):
        centroids = F.normalize(weights.t() @ f / (weights.sum(dim=0)[:, None] + 1e-8), dim=1)
        labels = (f @ centroids.t()).argmax(dim=1)
        weights = F.one_hot(labels, probs.shape[1]).float()
    return labels


def attract_disperse(p: torch.Tensor, neighbour_p: torch.Tensor, dispersion: float) -> torch.Tensor:
    """AaD's loss: ``-mean_i sum_j p_i . q_ij`` over the neighbours' predictions ``q``, plus ``dispersion``
    times the mean dot product of ``p_i`` with the other predictions of the batch.

    Shape: ``p [B, C]``, ``neighbour_p [B, K, C]`` -> scalar.
    """
    attract = -(p[:, None, :] * neighbour_p).sum(dim=2).sum(dim=1).mean()
    gram = p @ p.t()
    off = gram.sum() - gram.diagonal().sum()
    return attract + dispersion * off / max(1, p.shape[0])


def check_options(method: str, **checks: tuple[float, bool, str]) -> None:
    """A one-line :class:`ConfigError` naming the first option whose check failed (``name=(value, ok, rule)``;
    a NaN value fails every comparison)."""
    for name, (value, ok, rule) in checks.items():
        if not ok:
            raise ConfigError(f"{method} option {name}={value!r} must be {rule}")


def _target_outputs(model: TransferModel, x: torch.Tensor, place: Placement) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[N, D]`` and softmax predictions ``[N, C]`` of ``model`` on every input of ``x`` (eval mode)."""
    feats = extract_features(model, x, place)
    logits = predict_logits(model.head, feats, Placement(place.device, place.bf16, False))
    return feats.float(), logits.float().softmax(dim=1)


def _backbone_phase(ctx: AdaptContext, name: str, step_loss: Any, on_epoch_start: Any, lr_scale: float) -> Phase:
    """A phase over the target inputs (each one's position as its label) training the backbone only."""
    model = ctx.model
    if ctx.target_val is None:
        raise ConfigError(f"{name}: needs target validation inputs to choose the checkpoint")
    params = _trainable(model, head=False)
    n = len(ctx.target_train)
    return Phase(name=name, module=model, train=(ctx.target_train, torch.arange(n)), val=None,
                 param_groups=[{"params": params, "lr_scale": lr_scale}], placement=ctx.placement(),
                 step_loss=step_loss, on_epoch_start=on_epoch_start, val_score=make_val_score(ctx))


def consistency_loss(model: nn.Module, teacher: nn.Module, x: torch.Tensor, threshold: float, ema: float,
                     class_balance: float) -> torch.Tensor:
    """SHOT++'s labeling-transfer step, FixMatch-style: ``PL_cb(z(aug(x)); teacher(x), tau) + class_balance *
    KL(p_bar(x) || uniform)``.

    The mean teacher first moves toward ``model`` (:func:`~transferkit.adaptation.teacher.ema_update`, decay
    ``ema``); its predictions on the clean batch ``x`` give the pseudo-labels, learnt on a re-styled copy
    (:func:`~transferkit.adaptation.augment.augment_glyphs`) with
    :func:`~transferkit.adaptation.functional.class_balanced_pseudo_label_loss`; the class-balance term
    (:func:`~transferkit.adaptation.functional.class_balance_loss`) is taken on the clean batch.
    Clean and re-styled inputs share one BatchNorm batch. Shape: ``x [B, C, H, W]`` -> scalar.
    """
    ema_update(teacher, model, ema)
    teacher.eval()
    with torch.no_grad():
        label_logits = teacher(x).float()
        xa = augment_glyphs(x)
    z = model(torch.cat([x, xa]))
    clean, restyled = z[: len(x)], z[len(x) :]
    out = class_balanced_pseudo_label_loss(restyled, threshold, label_logits)[0]
    return out + class_balance * class_balance_loss(clean) if class_balance > 0 else out


def _trainable(model: TransferModel, head: bool) -> list[nn.Parameter]:
    """Only the backbone (and with ``head`` the head) requires gradients; returns those parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = model.backbone_parameters() + (list(model.head.parameters()) if head else [])
    for p in params:
        p.requires_grad_(True)
    return params


@dataclass(frozen=True)
class SHOTOptions:
    beta: float = opt(0.3, "weight of the cross-entropy to the centroid pseudo-labels (0: information "
                           "maximisation alone, SHOT-IM)")
    rounds: int = opt(2, "centroid rounds per pseudo-labelling (the first weighted by the predictions)")
    lr_scale: float = opt(0.1, "the backbone's learning rate relative to --lr (a tenth, as for AaD: on digits "
                               "at adapt's lr 0.01, 6 epochs, a tenth adapted better)")
    stage2: Literal["auto", "consistency", "none"] = opt(
        "auto", "second stage after SHOT (SHOT++'s labeling transfer): consistency = mean-teacher pseudo-labels "
                "learnt on re-styled target inputs; none = the paper's SHOT alone; auto = consistency for "
                "single-channel images (glyphs: the re-styling assumes them), none otherwise")
    stage2_fraction: float = opt(0.5, "share of the epoch budget for the second stage (SHOT gets the rest)")
    threshold: float = opt(0.9, "second stage: the teacher's confidence needed for a pseudo-label")
    ema: float = opt(0.99, "second stage: the mean teacher's EMA decay")
    class_balance: float = opt(1.0, "second stage: weight of KL(mean target prediction || uniform)")
    stage2_lr_scale: float = opt(1.0, "second stage: the learning rate relative to --lr")
    stage2_head: bool = opt(False, "second stage: train the head too (default: it stays the source's)")

    def __post_init__(self) -> None:
        f, t = self.stage2_fraction, self.threshold
        check_options("shot", beta=(self.beta, self.beta >= 0, ">= 0"), rounds=(self.rounds, self.rounds >= 1, ">= 1"),
                      lr_scale=(self.lr_scale, self.lr_scale > 0, "> 0"),
                      stage2_fraction=(f, 0 < f < 1, "in (0, 1)"), threshold=(t, 0 < t <= 1, "in (0, 1]"),
                      ema=(self.ema, 0 <= self.ema < 1, "in [0, 1)"),
                      class_balance=(self.class_balance, self.class_balance >= 0, ">= 0"),
                      stage2_lr_scale=(self.stage2_lr_scale, self.stage2_lr_scale > 0, "> 0"))


def _consistency_phase(ctx: AdaptContext, o: SHOTOptions, epochs: int) -> Phase:
    """SHOT++'s second stage over the target inputs: a mean teacher (a copy of the model as SHOT left it)
    labels clean batches, the model learns them on re-styled copies (:func:`consistency_loss`)."""
    model = ctx.model
    teacher = copy.deepcopy(model)
    for p in teacher.parameters():
        p.requires_grad_(False)
    module = AdaptModule(model, teacher=teacher)
    params = _trainable(model, o.stage2_head)
    tau, ema, cb = o.threshold, o.ema, o.class_balance

    def loss(m: nn.Module, x: torch.Tensor, idx: torch.Tensor, _: torch.Tensor | None) -> torch.Tensor:
        return consistency_loss(m.model, m.teacher, x, tau, ema, cb)  # type: ignore[arg-type]

    n = len(ctx.target_train)
    return Phase(name="shot_consistency", module=module, train=(ctx.target_train, torch.arange(n)), val=None,
                 param_groups=[{"params": params, "lr_scale": o.stage2_lr_scale}], epochs=epochs,
                 placement=ctx.placement(module), step_loss=loss, val_score=make_val_score(ctx))


def resolve_stage2(stage2: str, x: torch.Tensor) -> str:
    """``auto`` -> ``consistency`` for single-channel image inputs ``[N, 1, H, W]`` (glyphs), else ``none``."""
    if stage2 != "auto":
        return stage2
    return "consistency" if x.dim() == 4 and x.shape[1] == 1 else "none"


class SHOT(Method):
    """SHOT (Liang et al., ICML 2020): source-free; frozen head, information maximisation, centroid pseudo-labels;
    then (SHOT++, TPAMI 2021) mean-teacher consistency training on its confident target pseudo-labels."""

    name = "shot"
    Options = SHOTOptions
    needs_source: ClassVar[bool] = False

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        o: SHOTOptions = self.options
        place = ctx.placement()
        labels = torch.zeros(len(ctx.target_train), dtype=torch.long)
        stage2 = resolve_stage2(o.stage2, ctx.target_train)
        if stage2 == "consistency" and ctx.target_train.dim() != 4:
            raise ConfigError(f"shot option stage2=consistency re-styles images [N, C, H, W]; these target inputs "
                              f"have shape {tuple(ctx.target_train.shape)}: use stage2=none")
        ctx.info["shot_stage2"] = stage2
        total = ctx.cfg.epochs
        second = max(1, round(total * o.stage2_fraction)) if stage2 == "consistency" else 0
        first = max(1, total - second)

        def relabel(epoch: int) -> None:  # from the model as it starts the epoch (a resume relabels the same)
            if o.beta > 0:
                feats, probs = _target_outputs(ctx.model, ctx.target_train, place)
                labels.copy_(centroid_pseudo_labels(feats, probs, o.rounds))

        def loss(m: nn.Module, x: torch.Tensor, idx: torch.Tensor, _: torch.Tensor | None) -> torch.Tensor:
            z = m(x)
            out = information_maximization(z)
            return out + o.beta * F.cross_entropy(z.float(), labels[idx]) if o.beta > 0 else out

        phase = _backbone_phase(ctx, "shot", loss, relabel, o.lr_scale)
        phase.epochs = first
        yield phase
        if second:
            yield _consistency_phase(ctx, o, second)


@dataclass(frozen=True)
class AaDOptions:
    k: int = opt(5, "nearest target neighbours each prediction is pulled toward")
    decay: float = opt(0.75, "the dispersion weight is (1 + 10 t/T)^(-decay) at step t of T")
    lr_scale: float = opt(0.1, "the backbone's learning rate relative to --lr (the summed attraction and dispersion "
                               "terms are large: on digits at adapt's lr 0.01 the predictions collapsed to one class)")

    def __post_init__(self) -> None:
        check_options("aad", k=(self.k, self.k >= 1, ">= 1"), decay=(self.decay, self.decay >= 0, ">= 0"),
                      lr_scale=(self.lr_scale, self.lr_scale > 0, "> 0"))


class AaD(Method):
    """AaD (Yang et al., NeurIPS 2022): source-free; attract neighbours' predictions, disperse the rest of the batch."""

    name = "aad"
    Options = AaDOptions
    needs_source: ClassVar[bool] = False

    def phases(self, ctx: AdaptContext) -> Iterator[Phase]:
        o: AaDOptions = self.options
        place = ctx.placement()
        n = len(ctx.target_train)
        k = min(o.k, n - 1)
        if k < 1:
            raise ConfigError("aad: needs at least two target inputs")
        bank: dict[str, torch.Tensor] = {}
        total = steps_per_epoch(n, ctx.cfg.batch_size) * ctx.cfg.epochs
        step = [0]

        def refresh(epoch: int) -> None:  # the memory bank from the model as it starts the epoch
            feats, probs = _target_outputs(ctx.model, ctx.target_train, place)
            bank["f"], bank["p"] = F.normalize(feats, dim=1), probs
            step[0] = epoch * (total // max(1, ctx.cfg.epochs))

        def loss(m: nn.Module, x: torch.Tensor, idx: torch.Tensor, _: torch.Tensor | None) -> torch.Tensor:
            feats = m.forward_features(x)  # type: ignore[operator]
            p = m.head(feats).float().softmax(dim=1)  # type: ignore[operator]
            f = F.normalize(feats.detach().float(), dim=1)
            with torch.no_grad():
                bank["f"][idx], bank["p"][idx] = f, p.detach()
                sim = f @ bank["f"].t()
                sim[torch.arange(len(idx)), idx] = -2.0  # not its own neighbour
                near = sim.topk(k, dim=1).indices
            dispersion = (1 + 10 * step[0] / max(1, total)) ** (-o.decay)
            step[0] += 1
            return attract_disperse(p, bank["p"][near], dispersion)

        yield _backbone_phase(ctx, "aad", loss, refresh, o.lr_scale)
