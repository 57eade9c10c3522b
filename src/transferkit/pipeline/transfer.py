"""The stages of :func:`transferkit.transfer`, public so benchmarks and users can run (or replace) each one.

``resolve(spec) -> Resolved`` (the strategy, the source model, the training settings) ->
``prepare(resolved) -> Prepared`` (data, split, shots, unlabelled inputs, head decision, notes) ->
:func:`record` (the run's ``config.json``: the spec, the resolved settings with their provenance) ->
``train(prepared, run) -> Trained`` -> ``assess(trained) -> metrics`` (target accuracy, source forgetting,
scratch comparison) -> ``finish(trained, metrics, run) -> RunResult``.

The settings are resolved once, in :func:`resolve` (:func:`~transferkit.strategies.recipes.resolve_settings`);
the split comes from the spec's :class:`~transferkit.spec.SplitSpec`.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from transferkit.data import ArrayDataset, ReadOptions, check_column_flags, kshot, load_dataset, split
from transferkit.data.base import recorded_range
from transferkit.engine.features import DEFAULT_CACHE, FeatureCache
from transferkit.engine.loop import PhaseResult
from transferkit.errors import ConfigError
from transferkit.evaluation.evaluate import evaluate_model, source_accuracy, source_test_split
from transferkit.models import TransferModel, fresh_like
from transferkit.options import to_dict
from transferkit.pipeline.splits import data_identity
from transferkit.pipeline.stages import RunResult, finish_run, labelled_tensors, phase_summary
from transferkit.pipeline.targets import head_mismatch, source_before, unlabelled_inputs, unlabelled_sources
from transferkit.runs import LoadedRun, RunDir, load_source
from transferkit.spec import SplitSpec, TransferSpec
from transferkit.strategies import Strategy, TransferContext, make_strategy, run_strategy
from transferkit.strategies.recipes import Settings, resolve_settings


@dataclass
class Resolved:
    """What a transfer run is, resolved: ``spec`` (split seed fixed), the strategy object, the untouched
    source model and its run's config, and the training settings."""

    spec: TransferSpec
    strategy: Strategy
    source: TransferModel
    source_config: dict[str, Any]
    settings: Settings
    #: ``config.json["source"]``: the spec's source, or the type of a model given as an object
    source_label: str
    notes: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """The data of a run and the model it starts from (the source with the head decided)."""

    resolved: Resolved
    model: TransferModel
    dataset: ArrayDataset
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    source_head: torch.nn.Module
    unlabelled: torch.Tensor | None = None
    unlabelled_groups: np.ndarray | None = None
    source_eval: ArrayDataset | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Trained:
    """A trained model, the phases that trained it, what the strategy recorded, and the training time."""

    prepared: Prepared
    model: TransferModel
    results: list[PhaseResult]
    info: dict[str, Any]
    seconds: float
    cache: FeatureCache | None = None


def resolve(spec: TransferSpec, *, source: LoadedRun | TransferModel | None = None,
            strategy: Strategy | None = None) -> Resolved:
    """The strategy (``strategy``, a configured object, or the spec's name and options), the source model
    (``source``, an object, or the spec's run directory / backbone name) and the training settings (the
    spec's ``train``, the backbone's recipe for the strategy, the defaults). Cheap checks (columns, options,
    settings) run before the source loads."""
    check_column_flags(spec.data, spec.columns.label, spec.columns.text)
    strat = strategy if strategy is not None else make_strategy(spec.strategy, spec.options)
    resolve_settings("", strat.name, spec.train, spec.seed)  # a bad setting fails before the source loads
    src_model, src_config = load_source(source if source is not None else spec.source, spec.model_kwargs or None)
    strat.trained_groups(src_model)  # options checked against the model (partial's k) before data is read
    recipe_of = getattr(strat, "recipe_strategy", lambda: strat.name)()  # self_train: its student's recipe
    settings = resolve_settings(src_model.spec.name, recipe_of, spec.train, spec.seed)
    spec = replace(spec, strategy=strat.name, options=to_dict(strat.options), split=spec.split.with_seed(spec.seed))
    label = spec.source if source is None else type(source).__name__
    return Resolved(spec, strat, src_model, src_config, settings, label)


def labelled_splits(ds: ArrayDataset, shots: int | None, seed: int,
                    split_spec: SplitSpec | None = None) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
    """``(train, val, test)`` of labelled data ``ds`` as a transfer draws them: the run's split
    (:class:`~transferkit.spec.SplitSpec`, stratified, seeded), then ``shots`` per class of the training
    split and at most as many of the validation split's (``shots=None``: all of both)."""
    sp = split(ds, **(split_spec or SplitSpec()).split_args(seed))
    return (*few_shot(sp.train, sp.val, shots, seed), sp.test)


def few_shot(train: ArrayDataset, val: ArrayDataset, shots: int | None,
             seed: int) -> tuple[ArrayDataset, ArrayDataset]:
    """``shots`` per class of ``train``, and at most as many of ``val``'s (so the labelled budget is honest)."""
    if shots is None:
        return train, val
    return (kshot(train, shots, seed=seed),
            kshot(val, min(shots, int(np.bincount(val.require_labels()).min())), seed=seed))


def _unlabelled_notes(r: Resolved, notes: list[str]) -> str | None:
    """The ``unlabelled`` value the run reads (``rest`` when its strategy needs some and none was given)."""
    spec, name = r.spec, r.strategy.name
    if spec.unlabelled is None and getattr(r.strategy, "needs_unlabelled", False):
        if spec.shots is None:
            raise ConfigError(f"{name} needs unlabelled inputs: pass --unlabelled DATA, or --shots K to use the "
                              "rest of the training split")
        notes.append(f"{name}: --unlabelled rest (the training split's examples --shots left unlabelled), as no "
                     "--unlabelled was given")
        return "rest"
    return spec.unlabelled


def prepare(r: Resolved) -> Prepared:
    """Load and split the target data, draw the shots, read the unlabelled inputs, measure the source model
    on the source data (``source_data``) and decide the head."""
    spec, notes = r.spec, list(r.notes)
    model = copy.deepcopy(r.source)
    src_spec = copy.deepcopy(model.spec)
    read = ReadOptions(spec.skip_bad_files)
    ds = load_dataset(spec.data, model=src_spec, seed=spec.seed, label_column=spec.columns.label,
                      text_column=spec.columns.text, read=read)
    sp = split(ds, **spec.split.split_args(spec.seed))
    train_ds, val_ds = few_shot(sp.train, sp.val, spec.shots, spec.seed)
    unlabelled = _unlabelled_notes(r, notes)
    r.spec = spec = replace(spec, unlabelled=unlabelled)
    x_unl, groups = unlabelled_inputs(unlabelled, sp.train, spec.shots, spec.seed, src_spec, train_ds, read)
    if x_unl is not None and not getattr(r.strategy, "uses_unlabelled", False):
        notes.append(f"--unlabelled is read only by strategies that learn from it (self_train); {spec.strategy} "
                     "ignores it")
    if unlabelled is not None and spec.data in unlabelled_sources(unlabelled):
        notes.append(f"--unlabelled {spec.data} holds the test split too: the test accuracy is then transductive, "
                     "not held out (--unlabelled rest keeps to the training split)")
    keep = ds.class_names == src_spec.class_names
    if spec.head == "keep" and not keep:
        raise ConfigError(head_mismatch(src_spec.class_names, ds.class_names, spec.data))
    p = Prepared(r, model, ds, train_ds, val_ds, sp.test, copy.deepcopy(model.head), x_unl, groups, notes=notes)
    p.metrics = {"strategy": spec.strategy, "shots": spec.shots, "seed": spec.seed, "data": spec.data}
    _measure_source(p)
    if keep and spec.head != "new":
        notes.append("target classes match the source: the source head is kept as the starting head")
    else:
        model.reset_head(ds.class_names)
        notes.append(f"new head for {ds.num_classes} target classes (source had {src_spec.num_classes})")
    return p


def _measure_source(p: Prepared) -> None:
    """With ``source_data``: the source model's accuracy on the source task before training."""
    r = p.resolved
    if r.spec.source_data is None:
        return
    src_spec = p.model.spec
    p.source_eval = source_test_split(r.spec.source_data, r.source_config, src_spec, src_spec.class_names)
    if r.spec.source_data != r.source_config.get("data"):
        p.notes.append(f"source accuracy is measured on all of {r.spec.source_data}: the source run's split is "
                       "unknown, so it may include the source's own training data")
    p.metrics["source_before"] = source_before(p.model, p.source_head, p.source_eval)


def record(p: Prepared) -> dict[str, Any]:
    """The run's ``config.json``: the spec (flat: ``data``, ``seed``, ``split``, ``columns``, ``source``...),
    then the settings resolved from it (``train``: every :class:`TrainConfig` field, ``head_lr_scale``,
    ``provenance``: where each came from, ``recipe``: what the backbone's recipe set), the data's identity and
    input range, and the directory the run was started from (``cwd``: relative paths are relative to it)."""
    r = p.resolved
    settings = r.settings.to_dict()
    recipe: Any = r.settings.applied or None
    if r.strategy.name == "auto":
        recipe = "per candidate (metrics.json: strategy_info.recipe)"
    return {"command": "transfer", **r.spec.to_dict(), "source": r.source_label, **settings, "recipe": recipe,
            "data_identity": data_identity(r.spec.data), "input_range": recorded_range(p.dataset),
            "cwd": os.getcwd(), "versions": versions()}


def versions() -> dict[str, str]:
    """The versions a run records beside its spec (``config.json["versions"]``): what reproducing it needs."""
    import platform

    from transferkit import __version__

    return {"transferkit": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def train(p: Prepared, run: RunDir | None = None, cache: FeatureCache | None = None) -> Trained:
    """Train ``p.model`` with the run's strategy and settings (checkpoints in ``run``, when given)."""
    r, t0 = p.resolved, time.perf_counter()
    s = r.settings
    ctx = TransferContext(p.model, {k: v.clone() for k, v in p.model.state_dict().items()},
                          labelled_tensors(p.train), labelled_tensors(p.val), s.cfg,
                          lambda: fresh_like(p.model, r.spec.seed), cache=cache or DEFAULT_CACHE,
                          head_lr_scale=s.head_lr_scale, user_set=s.given, unlabelled=p.unlabelled,
                          unlabelled_groups=p.unlabelled_groups)
    results = run_strategy(r.strategy, ctx, run.checkpoints if run else None)
    if "recipe" in ctx.info:
        rec = ctx.info["recipe"]
        p.notes.append(f"{rec['backbone']} recipe for {rec['strategy']}: "
                       + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in rec["settings"].items())
                       + " (only settings you did not give; measured in " + rec["evidence"].split(",")[0] + ")")
    return Trained(p, ctx.model, results, ctx.info, time.perf_counter() - t0, cache)


def assess(t: Trained) -> dict[str, Any]:
    """The run's metrics: target accuracy on the held-out split, source accuracy after (forgetting) with
    ``source_data``, and the gain over ``scratch`` trained on the same data and budget with ``compare_scratch``."""
    p = t.prepared
    spec = p.resolved.spec
    metrics = dict(p.metrics)
    metrics["target"] = evaluate_model(t.model, p.test, p.dataset.num_classes)
    metrics.update(train_seconds=t.seconds, n_train=len(p.train), n_val=len(p.val),
                   n_unlabelled=0 if p.unlabelled is None else len(p.unlabelled),
                   phases=[phase_summary(r) for r in t.results], strategy_info=t.info, notes=p.notes)
    if p.source_eval is not None and spec.strategy != "scratch":
        after = source_accuracy(t.model, p.source_head, p.source_eval)
        metrics["source_after"] = after
        metrics["forgetting"] = metrics["source_before"]["accuracy"] - after["accuracy"]
    if spec.compare_scratch and spec.strategy != "scratch":
        base = scratch_baseline(p.resolved, t.cache)
        metrics["scratch"] = {"accuracy": base["target"]["accuracy"], "train_seconds": base["train_seconds"]}
        metrics["gain_vs_scratch"] = metrics["target"]["accuracy"] - base["target"]["accuracy"]
    return metrics


def scratch_baseline(r: Resolved, cache: FeatureCache | None = None) -> dict[str, Any]:
    """The metrics of ``scratch`` on the run's data, shots, seed and training settings (nothing written)."""
    spec = replace(r.spec, strategy="scratch", options={}, compare_scratch=False, source_data=None, unlabelled=None,
                   head="auto")
    base = resolve(spec, source=r.source)
    return assess(train(prepare(base), None, cache))


def finish(t: Trained, metrics: dict[str, Any], run: RunDir | None = None) -> RunResult:
    """Write the run (the strategy's files, weights with the source head beside them, history, metrics,
    report) and return its result."""
    history = [asdict(r) for r in t.results]
    extra = {f"source_head.{k}": v for k, v in t.prepared.source_head.state_dict().items()}
    if run is not None:
        metrics["artifacts"] = save_artifacts(t.prepared.resolved.strategy, run)
    finish_run(run, t.model, metrics, history, extra)
    return RunResult(t.model, metrics, run.path if run else None, history, t.prepared.notes)


def save_artifacts(strat: Strategy, run: RunDir) -> list[str]:
    """Write the strategy's files (a LoRA adapter) into the run, each listed in its manifest before it lands
    there: written into a listed staging folder, then moved in. Their names; none off torchrun's rank 0."""
    from transferkit.engine import distributed

    if not distributed.is_main():
        return []
    stage = run.path / ".artifacts"
    run.adopt(stage.name)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    names = [p.name for p in strat.save_artifacts(stage)]
    run.adopt(*names)
    for name in names:
        os.replace(stage / name, run.path / name)
    shutil.rmtree(stage)
    return names


__all__ = ["Prepared", "Resolved", "Trained", "assess", "finish", "prepare", "record", "resolve",
           "save_artifacts", "scratch_baseline", "train", "versions"]
