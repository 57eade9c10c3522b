"""``AdaptSpec``: what an ``adapt`` run is asked to do, as a typed spec (no torch here: the CLI imports it).

A run's ``config.json`` holds the spec's fields (flat, as earlier runs wrote them) with each setting at
the value the run used, plus ``provenance`` (where each came from: ``user`` or the default or recipe
that set it), the full training settings (``train``) and the library versions. :meth:`AdaptSpec.from_dict`
reads such a file back, keeping only what the user chose (the rest is resolved again, to the same
values), so ``adapt(AdaptSpec.from_dict(config))`` reproduces the run.

The defaults are stated here once: the CLI's help and :func:`transferkit.adaptation.stages.resolve`
read them. They are the settings docs/UDA.md measured (benchmarks/uda.py): SGD at lr 0.01 with no
gradient clipping, :data:`DEFAULT_ITERATIONS` optimizer steps per method, and source re-styling for the
digit sets that benchmark measured (:data:`RESTYLE_RECIPE`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from transferkit.errors import ConfigError
from transferkit.options import opt
from transferkit.spec import S, Spec, SplitSpec

#: docs/UDA.md's headline recipe (benchmarks/uda.py ``RECOMMENDED``): MCC with domain-specific BatchNorm and a
#: class-balance term for half the iterations, then FixMatch-style self-training from a mean teacher (EMA 0.99)
#: with the MCC term kept. Each ``key=value`` is typed against ``SelfTrainingOptions`` when the run resolves.
SELF_TRAINING_RECIPE = ("self_training:base=mcc:mcc=1:base_fraction=0.5:consistency=true:domain_bn=true:ema=0.99"
                        ":class_balance=1")
#: ``auto``'s candidates when the user names none: the seven single methods and UDA.md's recipe (the label-free
#: choice on every reference pair in docs/adapt_auto.json's full runs; benchmarks/adapt_auto.py), in the order of
#: their mean held-out accuracy over docs/uda.json's cells (its pairs and seeds;
#: tests/adaptation/test_adapt_choice.py checks it against the file). The order is the prior the label-free choice
#: falls back on when the validator cannot tell two candidates apart (:func:`~transferkit.adaptation.stages.choose`),
#: and the order the budget's probe runs in.
AUTO_CANDIDATES = (SELF_TRAINING_RECIPE, "mcc", "cdan", "mmd", "coral", "dann", "source_only", "adabn")
#: Optimizer steps per method unless ``iterations`` or ``epochs`` is given: docs/UDA.md's budget
#: (benchmarks/uda.py ``DEFAULT_ITERATIONS``), so the default does not shrink with a small source set.
DEFAULT_ITERATIONS = 500
#: adapt's training defaults over :class:`~transferkit.engine.config.TrainConfig`'s, and why. SGD with
#: Nesterov momentum 0.9 at lr 0.01, as in the papers the methods come from (Ganin et al., JMLR 2016,
#: sec. 5.2; Long et al., NeurIPS 2018, sec. 4; Jin et al., ECCV 2020, sec. 4) and docs/UDA.md; no global
#: gradient clip, which would also throttle the domain discriminator. AdamW destabilises the adversarial
#: min-max (mnist5k->digits8, small_cnn, seed 0, 5 epochs: dann 61.6% with AdamW vs 82.7% with SGD).
TRAIN_DEFAULTS: dict[str, Any] = {"optimizer": "sgd"}
#: Applied only with SGD (a user's AdamW keeps TrainConfig's lr and clip).
SGD_DEFAULTS: dict[str, Any] = {"lr": 0.01, "grad_clip": 0.0}
TRAIN_DEFAULTS_WHY = "adapt default (SGD recipe of the UDA papers and docs/UDA.md)"
#: Source data whose batches are re-styled by default (``restyle_source``): the glyph images docs/UDA.md
#: measured it on (every pair there re-styles). Other data (photos, audio, text, tables) is not re-styled:
#: the re-styling (stroke width, elastic, blur) is made for handwritten or printed glyphs.
RESTYLE_RECIPE = frozenset({"mnist5k", "digits8", "fontdigits"})
RESTYLE_EVIDENCE = "docs/UDA.md (benchmarks/uda.py): every digit pair measured with restyle_source=True"


def unlabelled_split() -> SplitSpec:
    return SplitSpec(kind="unlabelled")


@dataclasses.dataclass(kw_only=True, frozen=True)
class AutoOptions:
    """``method="auto"``: the candidates run, each through the same runner, and the trade-off grid.

    A candidate is a method name, or ``name:key=value:key=value`` with that method's fixed options (typed
    against the method's ``Options`` when the run resolves). Every candidate whose method has a
    ``trade_off`` option it does not fix runs once per weight in ``trade_offs``.
    """

    candidates: tuple[str, ...] = opt(AUTO_CANDIDATES, "methods to try (name or name:key=value:key=value), in order "
                                      "of preference: a validator lead within noise goes to the earlier one")
    trade_offs: tuple[float, ...] = opt((1.0,), "trade-off weights tried for methods that have one")

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ConfigError("auto option candidates: name at least one method")
        if not self.trade_offs:
            raise ConfigError("auto option trade_offs: give at least one weight")


@dataclasses.dataclass(kw_only=True)
class AdaptSpec(Spec):
    """An ``adapt`` run: adapt a source model to unlabelled target data (see :func:`transferkit.adapt`)."""

    command: ClassVar[str] = "adapt"

    source: str = opt(help="source run directory (from `transferkit pretrain`) or a pretrained backbone name")
    source_data: str | None = opt(None, "labelled source data (name or path); not needed by methods that "
                                        "declare they read no source data")
    target_data: str = opt(help="target inputs (name or path; .npz with only x, flat image folder, CSV without "
                                "label); labels unread")
    method: str = opt("dann", "see `transferkit methods`; 'auto' picks one by --validator")
    options: dict[str, Any] = opt(factory=dict, help="method option (auto: candidates=dann,mcc trade_offs=0.3,1)")
    validator: str = opt("im", "label-free selection score: im | snd | entropy | bnm | dev")
    eval_data: str | None = opt(None, "labelled target data used only to report accuracy (the held-out part when "
                                      "it is --target-data)")
    seed: int = opt(0, "random seed (target split, shuffling, new layers, re-styling draws)")
    max_source: int | None = opt(None, "cap source training examples (seeded subsample)")
    max_target: int | None = opt(None, "cap target training inputs (seeded subsample)")
    iterations: int | None = opt(None, f"training budget in optimizer steps per method (default: {DEFAULT_ITERATIONS}, "
                                       "docs/UDA.md's; given --epochs and no --iterations: those epochs)")
    restyle_source: bool | None = opt(None, "re-style source batches at random (affine, elastic, stroke width, blur) "
                                            "-- for digit/glyph images (default: on for the source data "
                                            f"docs/UDA.md measured it on: {', '.join(sorted(RESTYLE_RECIPE))}; "
                                            "else off)")
    budget: str | None = opt(None, "auto only: wall-clock budget for all candidates (300, 300s, 5m, 1h): successive "
                                   "halving on --validator, the best half of each rung trained on")
    skip_bad_files: bool = opt(False, "in an image or .wav folder, skip files that cannot be read (corrupt, "
                                      "truncated, over the pixel limit) and list them on stderr, instead of stopping "
                                      "at the first")
    target_split: SplitSpec = opt(factory=unlabelled_split, flag=False, help="label-free split of the target inputs "
                                  "(validation picks checkpoints and methods; test is held out)")
    train: dict[str, Any] = opt(factory=dict, flag=False,
                                help="training settings the user chose (TrainConfig fields; the rest are resolved)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("iterations", "max_source", "max_target"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.target_split.kind != "unlabelled":
            raise ConfigError(f"target_split kind={self.target_split.kind!r}: adapt splits its target label-free "
                              "(kind=unlabelled)")
        if not self.method:
            raise ConfigError("method: name an adaptation method or 'auto'")
        if self.budget is not None:
            parse_budget(self.budget)
            if self.method != "auto":
                raise ConfigError(f"budget {self.budget!r}: only --method auto trains several candidates to halve")
        if self.train.get("augment") == "on":
            raise ConfigError("adapt: --augment on (the training-time image augmentation of transfer) is not applied "
                              "by adapt's training loop; --restyle-source re-styles the source batches")

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any], *, ignore_unknown: bool = False) -> S:
        """The spec ``data`` describes. A run's ``config.json`` (``command`` = ``adapt``) is read as a spec:
        its resolved keys are set aside and only the settings its ``provenance`` marks as the user's are kept,
        so resolving it again gives the run's settings with the same provenance."""
        if data.get("command") == cls.command:
            data, ignore_unknown = user_part(data), True
        return super().from_dict(data, ignore_unknown=ignore_unknown)

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> AdaptSpec:
        """The spec a run's ``config.json`` records (as :meth:`transferkit.spec.RunSpec.from_run_config`)."""
        return cls.from_dict({**config, "command": cls.command})



def user_part(config: Mapping[str, Any]) -> dict[str, Any]:
    """The spec part of a run's ``config.json``: resolved settings without ``user`` provenance dropped
    (``iterations``, ``restyle_source``, training settings), older keys (``labels_read``) left out."""
    out = dict(config)
    prov = config.get("provenance")
    if isinstance(prov, Mapping):
        for key in ("iterations", "restyle_source"):
            if prov.get(key, "user") != "user":
                out[key] = None
        out["train"] = {k: v for k, v in dict(config.get("train") or {}).items()
                        if prov.get(k) == "user" and k != "seed"}
    else:
        out["train"] = {k: v for k, v in dict(config.get("train") or {}).items() if k != "seed"}
    split = config.get("target_split")
    if isinstance(split, Mapping):
        out["target_split"] = {k: v for k, v in split.items() if k in ("val", "test", "seed", "kind")}
        out["target_split"].setdefault("kind", "unlabelled")
    return out


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_budget(value: str | float) -> float:
    """Seconds in a budget ``300``, ``300s``, ``5m`` or ``1h``; anything else (or not positive) is a one-line error."""
    text = str(value).strip().lower()
    unit = text[-1:] if text[-1:] in ("s", "m", "h") else ""
    try:
        seconds = float(text[: len(text) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise ConfigError(f"budget {value!r}: give seconds or a duration like 300, 300s, 5m, 1h") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"budget {value!r}: must be a positive duration")
    return seconds


def restyle_default(source_data: str | None) -> tuple[bool, str]:
    """Whether source batches are re-styled when the user did not say, and why (the provenance line)."""
    name = (source_data or "").partition(":")[0]
    if name in RESTYLE_RECIPE:
        return True, f"recipe ({name}: {RESTYLE_EVIDENCE})"
    return False, "default (re-styling is for glyph images; docs/UDA.md measured it on the digit sets only)"


__all__ = ["AUTO_CANDIDATES", "DEFAULT_ITERATIONS", "RESTYLE_RECIPE", "SELF_TRAINING_RECIPE", "SGD_DEFAULTS",
           "TRAIN_DEFAULTS", "AdaptSpec", "AutoOptions", "parse_budget", "restyle_default", "user_part"]
