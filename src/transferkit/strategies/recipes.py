"""Backbone recipes: training settings a pretrained backbone is measured to fine-tune well with.

The library's defaults (``lr`` 1e-3, BatchNorm in training mode, a head at 10x the backbone's rate)
suit the small CNNs it pretrains itself. Large pretrained backbones want gentler settings: an
ImageNet EfficientNet fine-tuned on 16-image batches loses its BatchNorm statistics, and a BERT
encoder wants a learning rate around 3e-5 (Devlin et al., NAACL 2019). A recipe is keyed by
(backbone, strategy), lists the settings the benchmark ran with (batch size and epochs included)
and names the row that measured them; only measured pairs are listed. :func:`resolve_settings` resolves a
run's settings once, before training: the recipe fills every setting the user left unset (a flag or keyword
the user gives always wins), and the run records where each setting came from (``config.json``
``provenance``) and the recipe (``strategy_info["recipe"]``); ``auto`` applies the recipe of the candidate
it trains. :func:`apply_recipe` is the older, in-training form, kept while the runner still calls it.

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
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from transferkit.data.augment import LightAugment, image_kind
from transferkit.engine.config import TrainConfig, new_command
from transferkit.engine.loop import Phase
from transferkit.engine.precision import cpu_has_fast_bf16, resolve_device
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
#: a recipe's ``precision`` resolved per run from the device it trains on (:func:`bf16_if_fast`): bf16 autocast
#: where that device computes bf16 natively (measured for contrastive on MiniLM on such a CPU), else fp32
BF16_IF_FAST = "bf16 if the device has fast bf16"


def bf16_if_fast(device: str) -> str:
    """``bf16`` when ``device`` (a ``--device`` value; ``auto``: the GPU when there is one) computes bf16
    natively: a CUDA GPU that supports it, a CPU with AVX512-BF16 / AMX; else ``fp32``. Follows the device the
    run trains on, not the machine's CPU (a GPU run on a CPU without bf16 still gets bf16)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        fast = bool(torch.cuda.is_bf16_supported())
    else:
        fast = dev.type == "cpu" and cpu_has_fast_bf16()
    return "bf16" if fast else "fp32"


def concrete(settings: Mapping[str, Any], device: str) -> dict[str, Any]:
    """``settings`` with a device-dependent value (:data:`BF16_IF_FAST`) resolved for ``device``."""
    return {k: bf16_if_fast(device) if v == BF16_IF_FAST else v for k, v in settings.items()}

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
    ("minilm", "contrastive"): Recipe(
        {"lr": 2e-5, "head_lr_scale": 500.0, **_TEXT, "precision": BF16_IF_FAST},
        "docs/FEWSHOT.md, benchmarks/fewshot.py: body at 2e-5 (SetFit's rate), head probe at 1e-2, 5 epochs of at "
        "least 8 steps and 4 passes (the passes chosen on movies 64/class validation texts), beside SetFit on the "
        "same labelled vader-movies snippets; loss chosen on validation texts; "
        "bf16 autocast when the run's device computes bf16 natively (a CPU with native bf16: fewer CPU seconds than "
        "fp32 at the same validation accuracy, the select rows with and without bf16; a GPU that supports it), "
        "else fp32"),
    ("mpnet", "lp_ft"): Recipe(
        {"lr": 6e-5, "head_lr_scale": 50.0, **_TEXT, "precision": BF16_IF_FAST},
        "docs/FEWSHOT.md, Appendix A, rows 'mpnet lp_ft' (probe at 3e-3, then every layer at 3e-5 = 6e-5 x "
        "ft_lr_scale 0.5, batch 16, 5 epochs: above every layer at 1.5e-5 on each of 3 seeds' movies 64/class "
        "validation texts, no test text read), and its row in the user table (5 seeds, what `--source mpnet` "
        "trains without --strategy); bf16 autocast when the run's device computes bf16 natively (the rows ran "
        "so on such a CPU), else fp32"),
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
    """The settings of (``backbone``, ``strategy``)'s recipe that the user did not give (empty without one);
    a device-dependent value stays unresolved (:func:`concrete` resolves it for a run's device)."""
    rec = recipe_for(backbone, strategy)
    return {} if rec is None else {k: v for k, v in rec.settings.items() if k not in user_set}


#: Defaults a command sets itself, over :class:`TrainConfig`'s (``pretrain`` trains 8 epochs; tables get
#: :data:`~transferkit.data.tabular_prep.TABULAR_EPOCHS` through ``command_defaults``).
COMMAND_DEFAULTS: dict[str, dict[str, Any]] = {"pretrain": {"epochs": 8}}
#: The head's (and the probe's) learning rate relative to ``lr`` when no recipe says otherwise.
HEAD_LR_SCALE = 10.0


@dataclass(frozen=True)
class Settings:
    """A run's training settings, resolved once before training (:func:`resolve_settings`).

    ``cfg``: the :class:`TrainConfig` every phase starts from; ``head_lr_scale``: the head's and the
    probe's learning rate relative to ``cfg.lr``; ``provenance``: for each setting (the ``TrainConfig``
    fields and ``head_lr_scale``) where its value came from: ``user``, ``recipe (<backbone>, <strategy>)``,
    ``command default``, ``default`` or ``run seed``; ``recipe``: the recipe that filled some, if any;
    ``applied``: the settings it filled; ``given``: the settings the user chose (``augment=auto`` is not a
    choice), which a strategy that trains an inner strategy (``auto``, ``self_train``) passes on to it.
    """

    cfg: TrainConfig
    head_lr_scale: float
    provenance: dict[str, str]
    recipe: Recipe | None
    applied: dict[str, Any]
    given: frozenset[str]

    def recipe_record(self, backbone: str, strategy: str) -> dict[str, Any] | None:
        """The ``strategy_info["recipe"]`` record of the recipe's settings (None when it filled none)."""
        if self.recipe is None or not self.applied:
            return None
        return {"backbone": backbone, "strategy": strategy, "settings": dict(self.applied),
                "evidence": self.recipe.evidence}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form a run's ``config.json`` records (``train``, ``head_lr_scale``, ``provenance``)."""
        return {"train": asdict(self.cfg), "head_lr_scale": self.head_lr_scale, "provenance": dict(self.provenance)}


def resolve_settings(backbone: str, strategy: str, given: Mapping[str, Any], seed: int, command: str = "transfer",
                     *, command_defaults: Mapping[str, Any] | None = None, new_run: bool = True) -> Settings:
    """The settings a run of ``strategy`` on ``backbone`` trains with, and where each came from.

    Precedence: what the user gave (``given``: :class:`TrainConfig` fields and ``head_lr_scale``; an
    ``augment="auto"`` asks for the recipe, so it is not a choice), then the backbone's recipe for the
    strategy (:data:`RECIPES`), then the command's defaults (:data:`COMMAND_DEFAULTS`, or
    ``command_defaults``), then :class:`TrainConfig`'s. ``seed`` is the run's. ``auto`` and ``self_train``
    have no recipe of their own: they apply the one of the strategy they train. Nothing changes these
    settings once training starts. An unknown setting or a bad value is a one-line :class:`ConfigError`.
    ``new_run=False``: a candidate's settings inside a run (``auto``'s trials), which do not warn of the
    epoch cap again.
    """
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(given) - known - {"head_lr_scale"}
    if unknown:
        raise ConfigError(f"unknown training option '{sorted(unknown)[0]}'")
    chosen = given_settings(given)
    defaults = dict(COMMAND_DEFAULTS.get(command, {}) if command_defaults is None else command_defaults)
    rec = recipe_for(backbone, strategy)
    device = given["device"] if "device" in chosen else defaults.get("device", TrainConfig.default("device"))
    applied = concrete({k: v for k, v in (rec.settings if rec else {}).items() if k not in chosen}, device)
    values: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    for name in sorted(known | {"head_lr_scale"}):
        if name in chosen:
            values[name], provenance[name] = given[name], "user"
        elif name in applied:
            values[name], provenance[name] = applied[name], f"recipe ({backbone}, {strategy})"
        elif name in defaults:
            values[name], provenance[name] = defaults[name], "command default"
        else:
            provenance[name] = "default"
    values["seed"], provenance["seed"] = seed, "run seed"
    head_lr_scale = float(values.pop("head_lr_scale", HEAD_LR_SCALE))
    if new_run:  # a run's own settings, not a candidate's inside it: one $TRANSFERKIT_MAX_EPOCHS warning per command
        new_command()
    return Settings(TrainConfig(**values), head_lr_scale, provenance, rec if applied else None, applied, chosen)


def apply_recipe(strategy: str, ctx: TransferContext) -> dict[str, Any]:
    """Set ``ctx.cfg`` / ``ctx.head_lr_scale`` from the recipe of (``ctx.model``'s backbone, ``strategy``),
    skipping the settings in ``ctx.user_set``; returns what was applied (empty when nothing was, or when
    ``ctx.user_set`` is None: a context built by hand keeps exactly the settings it was given)."""
    if ctx.user_set is None:
        return {}
    user_set = ctx.user_set - {"augment"} if ctx.cfg.augment == "auto" else ctx.user_set
    applied = concrete(recipe_settings(ctx.model.spec.name, strategy, user_set), ctx.cfg.device)
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
