"""Backbone recipes: training settings a pretrained backbone is measured to fine-tune well with.

The library's defaults (``lr`` 1e-3, BatchNorm in training mode, a head at 10x the backbone's rate)
suit the small CNNs it pretrains itself. Large pretrained backbones want gentler settings: an
ImageNet EfficientNet fine-tuned on 16-image batches loses its BatchNorm statistics, and a BERT
encoder wants a learning rate around 3e-5 (Devlin et al., NAACL 2019). A recipe is keyed by
(backbone, strategy), lists the settings the benchmark ran with (batch size and epochs included)
and names the row that measured them; only measured pairs are listed. :func:`transferkit.transfer` applies the recipe to every setting the
user left unset (a flag or keyword the user gives always wins) and records it in the run's
``strategy_info["recipe"]``; ``auto`` applies the recipe of the candidate it trains.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from transferkit.strategies.base import TransferContext


@dataclass(frozen=True)
class Recipe:
    """``settings``: :class:`~transferkit.engine.config.TrainConfig` fields, plus ``head_lr_scale`` (the
    head's and the probe's learning rate relative to ``lr``); ``evidence``: where it was measured."""

    settings: dict[str, Any]
    evidence: str


#: benchmarks/text.py's training settings, with which the MiniLM rows were measured
_TEXT = {"batch_size": 16, "epochs": 5, "patience": 2, "precision": "fp32"}

RECIPES: dict[tuple[str, str], Recipe] = {
    **{("efficientnet_lite0", s): Recipe(
        {"lr": 1e-4, "batchnorm": "frozen", "batch_size": 16, "epochs": 5},
        f"docs/IMAGE.md, columns {s} (this recipe) and {s}_defaults (lr 1e-3, BatchNorm training) at 10 shots per "
        "class on digits8 and fontdigits, 3 seeds" + ("; docs/CURVES.md, lp_ft against the linear probe from 1 to "
                                                      "all shots per class" if s == "lp_ft" else ""))
       for s in ("lp_ft", "full", "l2sp", "wise_ft", "layerwise_lr")},
    ("minilm", "lp_ft"): Recipe(
        {"lr": 6e-5, "head_lr_scale": 50.0, **_TEXT},
        "docs/TEXT.md, row lp_ft (probe at 3e-3, then every layer at 3e-5 = 6e-5 x ft_lr_scale 0.5), 64 labelled "
        "vader-movies snippets per class, 3 seeds"),
    ("minilm", "full"): Recipe(
        {"lr": 3e-5, **_TEXT},
        "docs/TEXT.md, row full (3e-5, the BERT fine-tuning rate), 64 labelled vader-movies snippets per class"),
}


def recipe_for(backbone: str, strategy: str) -> Recipe | None:
    """The recipe for ``strategy`` on a model built as ``backbone`` (a run fine-tuned from a pretrained
    backbone keeps its name), or None."""
    return RECIPES.get((backbone, strategy))


def recipe_settings(backbone: str, strategy: str, user_set: frozenset[str]) -> dict[str, Any]:
    """The settings of (``backbone``, ``strategy``)'s recipe that the user did not give (empty without one)."""
    rec = recipe_for(backbone, strategy)
    return {} if rec is None else {k: v for k, v in rec.settings.items() if k not in user_set}


def apply_recipe(strategy: str, ctx: TransferContext) -> dict[str, Any]:
    """Set ``ctx.cfg`` / ``ctx.head_lr_scale`` from the recipe of (``ctx.model``'s backbone, ``strategy``),
    skipping the settings in ``ctx.user_set``; returns what was applied (empty when nothing was, or when
    ``ctx.user_set`` is None: a context built by hand keeps exactly the settings it was given)."""
    if ctx.user_set is None:
        return {}
    applied = recipe_settings(ctx.model.spec.name, strategy, ctx.user_set)
    cfg = {k: v for k, v in applied.items() if k != "head_lr_scale"}
    if cfg:
        ctx.cfg = replace(ctx.cfg, **cfg)
    if "head_lr_scale" in applied:
        ctx.head_lr_scale = float(applied["head_lr_scale"])
    if applied:
        ctx.info["recipe"] = {"backbone": ctx.model.spec.name, "strategy": strategy, "settings": applied,
                              "evidence": RECIPES[ctx.model.spec.name, strategy].evidence}
    return applied
