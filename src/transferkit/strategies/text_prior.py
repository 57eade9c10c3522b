"""``zs_init``: start a text classifier from its zero-shot prior, then learn from the few labels.

The head is initialised from prompted label-name embeddings (the zero-shot classifier of
:mod:`transferkit.zeroshot`): ``W_c = s * t_c``, ``b = 0``, so before any training the model
predicts ``argmax_c cos(f(x), t_c)``. Training then starts from that prior instead of a random
head (as in WiSE-FT's zero-shot initialisation and LP-FT's probed head), optionally with

- an L2 pull of the head toward its zero-shot weights, ``prior/2 * ||W - W_zs||^2`` (a Gaussian
  prior centred on the zero-shot classifier; L2-SP for the head, Li et al., ICML 2018), and
- weight-space interpolation toward the zero-shot model afterwards (WiSE-FT, Wortsman et al.,
  CVPR 2022): ``theta(alpha) = (1 - alpha) theta_zs + alpha theta_trained``, which keeps the
  prior's robustness to a domain shift that the few labelled examples cannot show.

Choosing alpha (``wise=-1``) uses the source domain's labelled validation split only (never a
test set, never the target domain). With ``wise_rule=best`` the alpha of highest validation
accuracy wins (ties go to the smaller alpha); with ``wise_rule=1se`` the *smallest* alpha whose
validation accuracy is within one binomial standard error ``sqrt(p(1-p)/n_val)`` of the best
(the one-standard-error rule, Hastie, Tibshirani & Friedman, ESL 2009, sec. 7.10): alphas that
the validation set cannot tell apart in-domain are resolved toward the zero-shot prior, whose
robustness to distribution shift is what WiSE-FT keeps (and what LP-FT, Kumar et al., ICLR 2022,
protects by not distorting the pretrained features with a random head).

The label names are the target's class names (``transferkit transfer`` gives the head the
target's classes first); each phase runs through the one training loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from transferkit.engine.loop import Phase, evaluate_arrays
from transferkit.errors import ConfigError
from transferkit.models.base import TransferModel
from transferkit.options import opt
from transferkit.strategies.base import Strategy, TransferContext, finetune_phase, head_scale, probe_phase
from transferkit.strategies.regularized import interpolate

TRAIN_MODES = ("none", "probe", "finetune", "lp_ft", "align")
#: the mixing weights scored when one is picked on validation (0 = the zero-shot side, 1 = the trained side)
ALPHAS = [i / 10 for i in range(11)]


class HeadPrior(nn.Module):
    """``prior/2 * ||W - W_0||^2 + prior/2 * ||b - b_0||^2``; the anchor is held in buffers."""

    w0: torch.Tensor
    b0: torch.Tensor

    def __init__(self, head: nn.Linear, weight: float) -> None:
        super().__init__()
        self.head, self.weight = [head], weight  # a list: not a sub-module, so not in state_dict twice
        self.register_buffer("w0", head.weight.detach().clone())
        self.register_buffer("b0", head.bias.detach().clone())

    def forward(self) -> torch.Tensor:
        h = self.head[0]
        return 0.5 * self.weight * (((h.weight - self.w0) ** 2).sum() + ((h.bias - self.b0) ** 2).sum())


#: the prompt templates averaged by default (``{}``: the class name)
TEMPLATES = ("{}", "this is {}", "it is {}", "something {}")


def check_templates(owner: str, templates: tuple[str, ...]) -> None:
    """Every template holds ``{}``; a ``|`` in one is the old one-string form, now a list."""
    if isinstance(templates, str):
        raise ConfigError(f"{owner}: templates must be a tuple of strings, got the string {templates!r}")
    if not templates:
        raise ConfigError(f"{owner}: templates is empty; give at least one, e.g. templates='a {{}} review'")
    if any("|" in t for t in templates):
        raise ConfigError(f"{owner}: templates is a list now: separate templates with ',' (or pass a tuple), "
                          f"not '|' (got {','.join(templates)!r})")
    if any("{}" not in t for t in templates):
        raise ConfigError(f"{owner}: templates={','.join(templates)!r}: every template must contain {{}}")


@dataclass
class ZSInitOptions:
    templates: tuple[str, ...] = opt(TEMPLATES, "prompt templates with {} for the class name (averaged)")
    scale: float = opt(20.0, "logit scale s of the zero-shot head: logits = s * cos(f(x), t_c)")
    train: Literal["none", "probe", "finetune", "lp_ft", "align"] = opt(
        "align", "after the zero-shot init: none | probe | finetune | lp_ft | align (fine-tune text and prompts "
                 "together)")
    prior: float = opt(0.1, "weight of the L2 pull of the head toward its zero-shot weights")
    wise: float = opt(-1.0, "WiSE-FT alpha toward the trained weights (0 = zero-shot, 1 = trained); -1 = pick on the "
                            "validation split (0.5 when there is none)")
    wise_rule: Literal["best", "1se"] = opt(
        "best", "with wise=-1: best (highest validation accuracy) | 1se (smallest alpha within one standard error)")
    ft_lr_scale: float = opt(0.03, "encoder learning rate relative to --lr (0.03: 3e-5 at the default --lr 1e-3, "
                                   "BERT's usual rate)")

    def __post_init__(self) -> None:
        if self.train not in TRAIN_MODES:  # a Python caller's value (the parser checks CLI strings)
            raise ConfigError(f"zs_init: train={self.train!r} is not one of {', '.join(TRAIN_MODES)}")
        if not (0 <= self.wise <= 1 or self.wise == -1):
            raise ConfigError(f"zs_init: wise must be in [0, 1] or -1, got {self.wise}")
        if self.wise_rule not in ("best", "1se"):
            raise ConfigError(f"zs_init: wise_rule={self.wise_rule!r} is not one of best, 1se")
        if self.scale <= 0 or self.prior < 0 or self.ft_lr_scale <= 0:
            raise ConfigError(f"zs_init: scale and ft_lr_scale must be positive and prior >= 0 "
                              f"(got {self.scale}, {self.ft_lr_scale}, {self.prior})")
        check_templates("zs_init", self.templates)


def select_alpha(val_acc: dict[str, float], n_val: int, rule: str = "best") -> float:
    """The WiSE-FT mixing weight from validation accuracies ``{f"{alpha:.1f}": acc}``.

    ``best``: ``argmax_alpha acc`` (ties to the smaller alpha). ``1se``: the smallest alpha with
    ``acc >= acc_max - sqrt(acc_max (1 - acc_max) / n_val)`` (one-standard-error rule, ESL 7.10).
    """
    alphas = sorted(float(a) for a in val_acc)
    top = max(val_acc.values())
    if rule == "best":
        return min(a for a in alphas if val_acc[f"{a:.1f}"] == top)
    se = (top * (1 - top) / max(n_val, 1)) ** 0.5
    return min(a for a in alphas if val_acc[f"{a:.1f}"] >= top - se - 1e-12)


class ZeroShotInit(Strategy):
    """Head initialised from label-name prompts (zero-shot; text) or class means, then trained, WiSE-FT.

    On a backbone that does not embed text the prior is the imprinted class means of the labelled
    examples (Qi et al., CVPR 2018) and ``align`` falls back to ``finetune``.
    """

    name = "zs_init"
    Options = ZSInitOptions

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        from transferkit.zeroshot import class_embeddings, prototypes

        o = self.options
        model = ctx.model
        head = model.head
        assert isinstance(head, nn.Linear)
        text = model.spec.modality == "text"
        if text:
            emb = class_embeddings(model, model.spec.class_names, list(o.templates))
        else:  # no label names to embed: imprint the class means of the labelled examples
            emb = prototypes(ctx.cache.features(model, ctx.train[0], ctx.placement()), ctx.train[1].numpy(),
                             model.num_classes)
        with torch.no_grad():
            head.weight.copy_(o.scale * emb.to(head.weight))
            head.bias.zero_()
        self._start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._mode = o.train if text or o.train != "align" else "finetune"
        ctx.info["zs_init"] = {"prior": "label-name prompts" if text else "imprinted class means",
                               "templates": list(o.templates) if text else [], "scale": o.scale,
                               "train": self._mode}
        pen = HeadPrior(head, o.prior).to(head.weight.device) if o.prior > 0 else None
        if self._mode in ("probe", "lp_ft"):
            phase = probe_phase(ctx)
            phase.extra_loss = pen
            yield phase
        if self._mode in ("finetune", "lp_ft"):
            s = o.ft_lr_scale
            yield finetune_phase(ctx, [(n, s * head_scale(ctx, n)) for n, _ in model.layer_groups()], extra_loss=pen)
        if self._mode == "align":
            yield self._align_phase(ctx)

    def _align_phase(self, ctx: TransferContext) -> Phase:
        """Fine-tune the encoder with the head tied to the prompts it encodes (FLYP, Goyal et al.,
        CVPR 2023): ``logits = s * cos(f(x), normalize(mean_j f(T_j(c))))`` with ``f`` the encoder
        being trained, so texts and label prompts move together and the zero-shot geometry is kept.
        The head is rewritten from the prompts before each validation and at the end."""
        from transferkit.models.text import tokenize_for

        o, model = self.options, ctx.model
        templates = list(o.templates)
        names = model.spec.class_names
        prompts = torch.from_numpy(tokenize_for(model.spec, [t.format(c) for c in names for t in templates]))
        place = ctx.placement()

        def classes(module: TransferModel) -> torch.Tensor:
            e = nn.functional.normalize(module.forward_features(prompts.to(place.device)).float(), dim=-1)
            return nn.functional.normalize(e.view(len(names), len(templates), -1).mean(1), dim=-1)

        def step_loss(module: nn.Module, x: torch.Tensor, y: torch.Tensor, xu: torch.Tensor | None) -> torch.Tensor:
            assert isinstance(module, TransferModel)
            f = nn.functional.normalize(module.forward_features(x).float(), dim=-1)
            return nn.functional.cross_entropy(o.scale * f @ classes(module).T, y)

        head = model.head
        assert isinstance(head, nn.Linear)

        def refresh() -> None:
            with torch.no_grad():
                was = model.training
                model.eval()
                head.weight.copy_(o.scale * classes(model).to(head.weight))
                head.bias.zero_()
                model.train(was)

        def val_score() -> tuple[float, float]:
            refresh()
            assert ctx.val is not None
            return evaluate_arrays(model, ctx.val[0], ctx.val[1], place)

        phase = finetune_phase(ctx, [(n, o.ft_lr_scale) for n, _ in model.groups.items()], name="align")
        phase.step_loss = step_loss
        phase.val_score = val_score if ctx.val is not None else None
        self._refresh = refresh
        return phase

    def finish(self, ctx: TransferContext) -> None:
        o = self.options
        tie = self._refresh if self._mode == "align" else (lambda: None)
        tie()  # align: the head of the final (best) encoder's prompts
        if self._mode == "none" or o.wise == 1:
            return
        model = ctx.model
        self._end = {k: v.detach().clone() for k, v in model.state_dict().items()}
        alphas = ALPHAS if o.wise == -1 else [o.wise]
        scores: dict[str, float] = {}
        if len(alphas) > 1 and ctx.val is not None:
            for a in alphas:
                self.interpolate_to(model, a)
                scores[f"{a:.1f}"] = evaluate_arrays(model, ctx.val[0], ctx.val[1], ctx.placement())[0]
            best = select_alpha(scores, len(ctx.val[1]), o.wise_rule)
        else:
            best = alphas[-1] if len(alphas) == 1 else 0.5
        self.interpolate_to(model, best)
        ctx.info["zs_init"].update(wise_alpha=best, val_acc_by_alpha=scores)

    def interpolate_to(self, model: TransferModel, alpha: float) -> None:
        """Load ``(1 - alpha) theta_zs + alpha theta_trained`` into ``model`` (after training; the
        endpoints of the last run are kept, so the whole WiSE-FT path can be scored after the fact)."""
        if not hasattr(self, "_end"):
            raise ConfigError("zs_init: interpolate_to needs a finished run with WiSE-FT (train != none, wise != 1)")
        model.load_state_dict(interpolate(self._start, self._end, alpha))
        if self._mode == "align":
            self._refresh()
