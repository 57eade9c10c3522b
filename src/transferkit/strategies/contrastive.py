"""``contrastive``: tune the encoder on the few labels with a contrastive objective, then fit the head.

The SetFit recipe (Tunstall et al., 2022) for any registered encoder, run through the one training loop:

1. **body phase** (``contrastive``): the backbone groups are trained, the head is frozen, with a
   per-step loss on the L2-normalised features of each batch of labelled examples. Two objectives:

   - ``loss=pairs``: every pair ``(i, j)`` of the batch is a sentence pair, target cosine 1 for the
     same label and 0 otherwise, squared error (SetFit's CosineSimilarityLoss), the positive and the
     negative pairs weighted equally. SetFit encodes each pair separately (two passes per pair); here
     all ``B (B - 1) / 2`` pairs of a batch come from ``B`` passes.
   - ``loss=supcon``: the supervised contrastive loss of Khosla et al. (NeurIPS 2020, their L_out),
     ``-1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a != i} exp(z_i.z_a / t) )`` averaged over
     the anchors ``i`` that have a positive in the batch.

   The default, ``pairs``, scored higher than ``supcon`` on the validation texts of each of three seeds
   (movies, 8 labelled per class; ``benchmarks/fewshot.py --select``, docs/FEWSHOT.md).

   An epoch is ``passes`` shuffled passes over the labelled set (a few-shot set is one or two batches, so
   one pass would be an epoch of one step; by default at least :data:`MIN_PASSES`, so that an epoch's steps grow
   with the number of labelled examples, and enough for :data:`MIN_STEPS_PER_EPOCH` steps), in batches of
   ``batch_size`` or the labelled set's size if smaller; it is scored on the validation split by the nearest class
   mean of the training features (the head is not trained yet), which drives early stopping.
2. **head init**: ``head=prompts`` (text encoders): label-name prompts embedded by the *tuned* encoder,
   ``W_c = s * t_c`` (the zero-shot classifier of :mod:`transferkit.zeroshot`, as ``zs_init`` starts
   from); ``head=means``: the normalised class means of the tuned training features (imprinting, Qi et
   al., CVPR 2018); ``head=random``: the head as given. ``prompts`` on an encoder without text falls back
   to ``means``; ``head=auto`` (the default): ``prompts`` when every class name is one token of the encoder's
   vocabulary (a word it knows), else ``means`` (sms-spam's ``spam`` is ``spa ##m``; measured on validation
   texts, docs/FEWSHOT.md).
3. **probe phase**: the head alone on the tuned body's cached features (``probe_phase``), optionally
   pulled toward its initial weights (``prior``, the L2 pull of ``zs_init``).
4. **end-to-end phase** (``finetune_epochs`` > 0, off by default): every layer and the probed head trained
   together with cross-entropy at the body's rate, after the probe (the LP-FT order, Kumar et al., ICLR 2022),
   early-stopped on the labelled validation split when there is one.

Early stopping of the body phase: an epoch counts as better when its validation accuracy is higher, or equal
with a lower cross-entropy, except at the maximum accuracy (1.0), where only the first epoch to reach it counts:
a saturated score carries no more information, and the loss alone would keep improving for every epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from transferkit.engine.features import extract_features
from transferkit.engine.loop import Phase
from transferkit.errors import ConfigError
from transferkit.models.base import TransferModel
from transferkit.options import opt
from transferkit.strategies.base import Strategy, TransferContext, finetune_phase, probe_phase
from transferkit.strategies.text_prior import HeadPrior, check_templates

#: a contrastive epoch has at least this many optimizer steps (``passes=0``)
MIN_STEPS_PER_EPOCH = 8
#: and at least this many passes over the labelled set (``passes=0``), so the training grows with the labels:
#: 4 passes at 64 labelled texts per class scored higher than 1 on the movies validation texts (the select rows
#: ``4 passes``); every other benchmarked task already had 4 or more from the step count
MIN_PASSES = 4
TEMPLATES = ("{}", "this is {}", "it is {}", "something {}")


@dataclass
class ContrastiveOptions:
    loss: Literal["pairs", "supcon", "hard"] = opt(
        "pairs", "body objective: pairs (every in-batch pair, target cosine 1 same label / 0 otherwise, squared "
                 "error: SetFit's; measured better, docs/FEWSHOT.md) | supcon (in-batch supervised contrastive, "
                 "Khosla et al. 2020) | hard (each anchor's least similar positive and most similar negative; "
                 "below pairs on the movies-64 validation texts, docs/FEWSHOT.md)")
    temperature: float = opt(0.1, "supcon temperature t")
    body_lr_scale: float = opt(1.0, "encoder learning rate in the body phase relative to --lr")
    passes: int = opt(0, f"shuffled passes over the labelled set per body epoch; 0 = at least {MIN_PASSES} and "
                         f"enough for {MIN_STEPS_PER_EPOCH} steps")
    head: Literal["auto", "prompts", "means", "random"] = opt(
        "auto", "head start before the probe: auto (prompts when every class name is one token of the encoder's "
                "vocabulary, i.e. a word it knows, else means; decided without labels) | prompts (label-name "
                "prompts through the tuned encoder; text only, else means) | means (class means of the tuned "
                "features) | random")
    templates: tuple[str, ...] = opt(TEMPLATES, "prompt templates with {} for the class name (head=prompts)")
    scale: float = opt(20.0, "logit scale s of the initial head: logits = s * cos(f(x), c)")
    prior: float = opt(0.0, "weight of the L2 pull of the head toward its initial weights")
    finetune_epochs: int = opt(0, "epochs of a last end-to-end stage after the probe: every layer and the head, "
                                  "cross-entropy, at the body's rate (LP-FT); 0 = none")

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.body_lr_scale <= 0 or self.scale <= 0:
            raise ConfigError(f"contrastive: temperature, body_lr_scale and scale must be positive "
                              f"(got {self.temperature}, {self.body_lr_scale}, {self.scale})")
        if self.passes < 0 or self.prior < 0 or self.finetune_epochs < 0:
            raise ConfigError(f"contrastive: passes, prior and finetune_epochs must be >= 0 (got {self.passes}, "
                              f"{self.prior}, {self.finetune_epochs})")
        check_templates("contrastive", self.templates)


def names_are_words(model: TransferModel) -> bool:
    """Every class name of the text model is a single token of its tokenizer's vocabulary (``negative``: yes;
    ``spam``, split as ``spa ##m``: no): a label-free test of whether a label-name prompt means anything."""
    from transferkit.models.text import tokenizer, tokenizer_path

    tok = tokenizer(tokenizer_path(model.spec))
    return all(len(tok.tokenize(str(c))) == 1 for c in model.spec.class_names)


def supcon_loss(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out) of unit vectors ``z [B, D]`` with labels ``y [B]``;
    zero (with a gradient path) when no anchor has a positive."""
    b = len(z)
    eye = torch.eye(b, dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~eye
    n_pos = pos.sum(1)
    anchors = n_pos > 0
    if not anchors.any():
        return z.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(1)[anchors] / n_pos[anchors])
    return per_anchor.mean()


def pair_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared error between ``cos(z_i, z_j)`` and 1 (same label) / 0 (different) over all pairs ``i < j``,
    the positive and negative pairs each averaged, then the two means averaged (as balanced pair sampling)."""
    b = len(z)
    upper = torch.triu(torch.ones(b, b, dtype=torch.bool, device=z.device), diagonal=1)
    same = (y[:, None] == y[None, :]) & upper
    diff = (y[:, None] != y[None, :]) & upper
    err = (z @ z.T - same.float()) ** 2
    parts = [err[m].mean() for m in (same, diff) if m.any()]
    return torch.stack(parts).mean() if parts else z.sum() * 0.0


def hard_pair_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch-hard pairs (Hermans et al., 2017, with SetFit's cosine targets): for each anchor, its least similar
    positive (target cosine 1) and its most similar negative (target 0), squared error, averaged over the anchors
    that have both."""
    b = len(z)
    eye = torch.eye(b, dtype=torch.bool, device=z.device)
    sim = z @ z.T
    pos, neg = (y[:, None] == y[None, :]) & ~eye, y[:, None] != y[None, :]
    ok = pos.any(1) & neg.any(1)
    if not ok.any():
        return z.sum() * 0.0
    hard_pos = sim.masked_fill(~pos, float("inf")).min(1).values[ok]
    hard_neg = sim.masked_fill(~neg, float("-inf")).max(1).values[ok]
    return ((hard_pos - 1) ** 2 + hard_neg**2).mean()


def class_means(feats: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Normalised class means of normalised features (a class absent from ``y``: a zero row). ``[K, D]``."""
    f = nn.functional.normalize(feats.float(), dim=-1)
    rows = [f[y == c].mean(0) if bool((y == c).any()) else f.new_zeros(f.shape[1]) for c in range(num_classes)]
    return nn.functional.normalize(torch.stack(rows), dim=-1)


class Contrastive(Strategy):
    """Contrastive body tuning on the labelled examples (SetFit-style; pairs or SupCon), then a probe head."""

    name = "contrastive"
    Options = ContrastiveOptions

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        o = self.options
        model = ctx.model
        ctx.info["contrastive"] = {"loss": o.loss, "temperature": o.temperature}
        yield self._body_phase(ctx)
        head_from = self._init_head(ctx)
        ctx.info["contrastive"]["head"] = head_from
        phase = probe_phase(ctx)
        if o.prior > 0 and head_from != "random":
            head = model.head
            assert isinstance(head, nn.Linear)
            phase.extra_loss = HeadPrior(head, o.prior).to(head.weight.device)
        yield phase
        if o.finetune_epochs > 0:
            groups = [n for n, _ in model.layer_groups()]
            end = finetune_phase(ctx, [(n, o.body_lr_scale) for n in groups], name="end_to_end")
            end.epochs = o.finetune_epochs
            yield end

    def _body_phase(self, ctx: TransferContext) -> Phase:
        o, model = self.options, ctx.model
        x, y = ctx.train
        bs = min(ctx.cfg.batch_size, len(x))
        passes = o.passes or max(MIN_PASSES, math.ceil(MIN_STEPS_PER_EPOCH * bs / len(x)))
        ctx.info["contrastive"]["passes"] = passes
        body = [n for n, _ in model.layer_groups() if n != "head"]
        phase = finetune_phase(ctx, [(n, o.body_lr_scale) for n in body], name="contrastive")
        phase.train = (torch.cat([x] * passes), torch.cat([y] * passes))
        phase.batch_size = bs  # never more than the labelled set: a larger batch would only repeat texts
        loss_fn = ((lambda z, t: supcon_loss(z, t, o.temperature)) if o.loss == "supcon"
                   else hard_pair_loss if o.loss == "hard" else pair_loss)

        def step_loss(module: nn.Module, xb: torch.Tensor, yb: torch.Tensor, xu: torch.Tensor | None) -> torch.Tensor:
            assert isinstance(module, TransferModel)
            z = nn.functional.normalize(module.forward_features(xb).float(), dim=-1)
            return loss_fn(z, yb)

        phase.step_loss = step_loss
        phase.val = None
        phase.val_score = ValScore(ctx, o.scale) if ctx.val is not None else None
        phase.saturates_at = MAX_SCORE  # at accuracy 1.0 a tie is no improvement (the module docstring)
        return phase

    def _init_head(self, ctx: TransferContext) -> str:
        o, model = self.options, ctx.model
        head = model.head
        if o.head == "random" or not isinstance(head, nn.Linear):
            return "random"
        text = model.spec.modality == "text"
        if text and (o.head == "prompts" or (o.head == "auto" and names_are_words(model))):
            from transferkit.zeroshot import class_embeddings

            emb, how = class_embeddings(model, model.spec.class_names, list(o.templates)), "prompts"
        else:
            feats = ctx.cache.features(model, ctx.train[0], ctx.placement())
            emb, how = class_means(feats, ctx.train[1].to(feats.device), model.num_classes), "means"
        with torch.no_grad():
            head.weight.copy_(o.scale * emb.to(head.weight))
            head.bias.zero_()
        return how


#: the highest validation accuracy: an epoch that ties it ranks no better, whatever its loss
MAX_SCORE = 1.0


class ValScore:
    """``(accuracy, cross-entropy)`` on the validation split of the nearest-class-mean classifier
    ``s * cos(f(x), mean_c)`` whose means come from the current encoder's training features. The phase saturates
    at :data:`MAX_SCORE` (``Phase.saturates_at``): once an epoch reaches it, later epochs tie whatever their loss
    and early stopping ends the phase after ``patience`` epochs."""

    def __init__(self, ctx: TransferContext, scale: float) -> None:
        self.ctx, self.scale = ctx, scale

    @torch.no_grad()
    def __call__(self) -> tuple[float, float]:
        ctx = self.ctx
        assert ctx.val is not None
        model = ctx.model
        was = model.training
        place = ctx.placement()
        try:  # not through ctx.cache: the encoder changes every epoch
            f_tr = extract_features(model, ctx.train[0], place)
            f_va = extract_features(model, ctx.val[0], place)
        finally:
            model.train(was)
        means = class_means(f_tr, ctx.train[1].to(f_tr.device), model.num_classes)
        logits = self.scale * nn.functional.normalize(f_va.float(), dim=-1) @ means.T
        y = ctx.val[1].to(logits.device)
        acc = (logits.argmax(1) == y).float().mean().item()
        return acc, nn.functional.cross_entropy(logits, y).item()
