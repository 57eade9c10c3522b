"""Backbone recipes: training settings a pretrained backbone is measured to fine-tune well with.

The library's defaults (``lr`` 1e-3, BatchNorm in training mode, a head at 10x the backbone's rate)
suit the small CNNs it pretrains itself. Large pretrained backbones want gentler settings: an
ImageNet EfficientNet fine-tuned on 16-image batches loses its BatchNorm statistics, and a BERT
encoder wants a learning rate around 3e-5 (Devlin et al., NAACL 2019). A recipe is keyed by
(backbone, strategy), lists the settings the benchmark ran with (batch size and epochs included)
and names the row that measured them; only measured pairs are listed. :func:`transferkit.transfer` applies the recipe to every setting the
user left unset (a flag or keyword the user gives always wins) and records it in the run's
``strategy_info["recipe"]``; ``auto`` applies the recipe of the candidate it trains.

``augment`` (image training batches, :mod:`transferkit.data.augment`) is a recipe setting too: ``affine``
(the small affine map, the part benchmarks/augment.py measured, on grey digits) only for the pairs it
measured better for (docs/AUGMENT.md); a colour photo's crop + flip, never measured, only with an
explicit ``on``. ``auto``, the default, means the recipe's value, and off where the recipe has none.
:func:`attach_augment` gives each phase that trains the model on its image inputs the policy; a probe on
cached features never gets it (augmentation cannot change features computed once).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from transferkit.data.augment import LightAugment, image_kind
from transferkit.engine.loop import Phase
from transferkit.errors import ConfigError
from transferkit.strategies.base import TransferContext

log = logging.getLogger("transferkit")


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
    **{("small_cnn", s): Recipe(
        {"augment": "affine"},
        f"docs/AUGMENT.md, rows small_cnn {s} (mnist5k source; digits8 and fontdigits at 5 and 10 shots per class, 3 "
        "seeds, each run with and without augmentation: on measured better by more than two standard errors)")
       for s in ("lp_ft", "full")},
    ("minilm", "lp_ft"): Recipe(
        {"lr": 6e-5, "head_lr_scale": 50.0, **_TEXT},
        "docs/TEXT.md, row lp_ft (probe at 3e-3, then every layer at 3e-5 = 6e-5 x ft_lr_scale 0.5), 64 labelled "
        "vader-movies snippets per class, 3 seeds"),
    ("minilm", "full"): Recipe(
        {"lr": 3e-5, **_TEXT},
        "docs/TEXT.md, row full (3e-5, the BERT fine-tuning rate), 64 labelled vader-movies snippets per class"),
}


def given_settings(train: Mapping[str, Any]) -> frozenset[str]:
    """The training settings in ``train`` that the user chose: ``augment="auto"`` asks for the recipe,
    so it does not count as chosen."""
    return frozenset(k for k, v in train.items() if not (k == "augment" and v == "auto"))


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
    user_set = ctx.user_set - {"augment"} if ctx.cfg.augment == "auto" else ctx.user_set
    applied = recipe_settings(ctx.model.spec.name, strategy, user_set)
    cfg = {k: v for k, v in applied.items() if k != "head_lr_scale"}
    if cfg:
        ctx.cfg = replace(ctx.cfg, **cfg)
    if "head_lr_scale" in applied:
        ctx.head_lr_scale = float(applied["head_lr_scale"])
    if applied:
        ctx.info["recipe"] = {"backbone": ctx.model.spec.name, "strategy": strategy, "settings": applied,
                              "evidence": RECIPES[ctx.model.spec.name, strategy].evidence}
    return applied


def attach_augment(phase: Phase, ctx: TransferContext) -> None:
    """Give ``phase`` the light augmentation policy when ``ctx.cfg.augment`` is ``on`` (crop + flip too for
    colour photos) or ``affine`` (the small affine map only; ``auto`` left unresolved by a recipe is off)
    and the phase trains ``ctx.model`` itself on image inputs; record it in
    ``ctx.info["augment"]``. A phase training anything else (a head on cached features) runs unaugmented,
    and the record lists it under ``not_augmented``.

    Raises:
        ConfigError: ``augment=on`` (or ``affine``) for a model whose inputs are not images.
    """
    setting = ctx.cfg.augment
    if setting not in ("on", "affine"):
        return
    if ctx.model.spec.modality != "image":
        raise ConfigError(f"augment={setting} applies to image models; {ctx.model.spec.name} takes "
                          f"{ctx.model.spec.modality} inputs (use augment=off)")
    from_recipe = "augment" in ctx.info.get("recipe", {}).get("settings", {})
    rec = ctx.info.setdefault("augment", {"setting": setting, "source": "recipe" if from_recipe else "given",
                                          "augmented": [], "not_augmented": []})
    x = phase.train[0]
    if phase.module is not ctx.model or x.ndim != 4:
        rec["not_augmented"].append(f"{phase.name} (trains on cached features, which augmentation cannot change)")
        log.info("augment: phase '%s' trains on cached features; its batches are not augmented", phase.name)
        return
    kind = image_kind(x)
    policy = LightAugment() if setting == "affine" else LightAugment.for_kind(kind)
    phase.augment = policy
    rec["augmented"].append(phase.name)
    rec.update(kind=kind, policy=asdict(policy))
