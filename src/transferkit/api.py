"""The public Python API: pretrain a source model, transfer it, evaluate and predict."""

from __future__ import annotations

import copy
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.data import (ArrayDataset, ReadOptions, align_classes, check_column_flags, kshot, kshot_rest,
                             load_dataset, split)
from transferkit.data.base import recorded_range
from transferkit.data.tabular_prep import TABULAR_EPOCHS, fit_splits
from transferkit.engine.features import DEFAULT_CACHE, FeatureCache
from transferkit.errors import CheckpointError, ConfigError
from transferkit.evaluation.evaluate import evaluate_model, source_accuracy, source_test_split
from transferkit.models import ModelSpec, TransferModel, build_model, fresh_like
from transferkit.pipeline import (
    SPLIT,
    RunResult,
    data_identity,
    finish_run,
    heldout_split,
    labelled_tensors,
    phase_summary,
    train_config,
)
from transferkit.io import read_json
from transferkit.runs import LoadedRun, RunDir, check_out, load_run, load_source, marks_failure, run_info
from transferkit.strategies import STRATEGIES, Strategy, TransferContext, make_strategy, run_strategy
from transferkit.strategies.recipes import given_settings, recipe_settings
from transferkit.strategies.semi import pool_inputs

def pretrain(data: str, model: str = "small_cnn", out: str | Path | None = None, *, seed: int = 0,
             model_kwargs: dict[str, Any] | None = None, overwrite: bool = False, label_column: str | None = None,
             text_column: str | None = None, skip_bad_files: bool = False, **train: Any) -> RunResult:
    """Train ``model`` from scratch on ``data`` (a built-in name or a path): the source model.

    ``skip_bad_files``: skip (and list) unreadable files of an image or ``.wav`` folder. The range an
    ``.npz``'s images were scaled from is recorded in ``config.json`` (``input_range``) for later reads.

    A table's preprocessing is fitted on the training split and saved in ``model.json``; tables
    train for :data:`~transferkit.data.tabular_prep.TABULAR_EPOCHS` epochs unless ``epochs`` is given.
    """
    if out is not None:
        check_out(out, overwrite)  # a folder that is not a run, or a busy one: refused before any data loads
    check_column_flags(data, label_column, text_column)
    ds = load_dataset(data, seed=seed, label_column=label_column, text_column=text_column,
                      read=ReadOptions(skip_bad_files))
    if ds.modality == "text":  # raw strings: no backbone trains on them from random weights
        raise ConfigError(f"{data}: pretrain trains from random weights on images, tables and audio; for text, "
                          f"transfer from a pretrained encoder (transferkit transfer --source minilm --data {data} ...)")
    train.setdefault("epochs", TABULAR_EPOCHS if ds.modality == "tabular" else 8)
    cfg = train_config(seed, train)
    sp, preprocess = fit_splits(split(ds, seed=seed, **SPLIT))  # tables: fitted on the training split only
    spec = ModelSpec(model, sp.train.input_shape, ds.class_names, dict(model_kwargs or {}), ds.modality, preprocess)
    net = build_model(spec, seed, pretrained=False)  # pretraining starts from random weights
    config = {"command": "pretrain", "data": data, "data_identity": data_identity(data), "model": model,
              "model_kwargs": spec.kwargs, "seed": seed,
              "split": {**SPLIT, "seed": seed}, "train": asdict(cfg),
              "columns": {"label": label_column, "text": text_column}, "input_range": recorded_range(ds)}
    run = RunDir.create(out, "pretrain", config, overwrite) if out is not None else None
    with marks_failure(run):
        t0 = time.perf_counter()
        ctx = TransferContext(net, {}, labelled_tensors(sp.train), labelled_tensors(sp.val), cfg,
                              lambda: build_model(spec, seed, pretrained=False))
        results = run_strategy(make_strategy("scratch"), ctx, run.checkpoints if run else None)
        net = ctx.model
        test = evaluate_model(net, sp.test, spec.num_classes)
        metrics = {"source": test, "train_seconds": time.perf_counter() - t0, "n_train": len(sp.train),
                   "phases": [phase_summary(r) for r in results]}
        finish_run(run, net, metrics, [asdict(r) for r in results])
    return RunResult(net, metrics, run.path if run else None, [asdict(r) for r in results])


def transfer(source: str | Path | LoadedRun | TransferModel, data: str, *, strategy: str = "lp_ft",
             shots: int | None = None, seed: int = 0, out: str | Path | None = None,
             options: dict[str, str] | None = None, head: str = "auto", source_data: str | None = None,
             compare_scratch: bool = False, overwrite: bool = False, cache: FeatureCache | None = None,
             model_kwargs: dict[str, Any] | None = None, unlabelled: str | None = None, label_column: str | None = None,
             text_column: str | None = None, skip_bad_files: bool = False, **train: Any) -> RunResult:
    """Initialise a target model from ``source`` and adapt it to ``data`` with ``strategy``.

    Args:
        source: a run directory from :func:`pretrain`, a loaded run, a :class:`TransferModel`, or
            the name of a registered pretrained backbone (see ``transferkit models``).
        data: target data, a built-in name or a path; converted to the source's input shape.
        shots: labelled examples per class for training (and at most as many for validation);
            ``None`` uses the whole training split.
        head: ``auto`` keeps the source head when the class names match, ``new`` always
            replaces it, ``keep`` insists on keeping it.
        source_data: the source data set; when given, source accuracy before and after is measured.
        compare_scratch: also train ``scratch`` on the same data and budget and report the gain.
        model_kwargs: options of a pretrained backbone named by ``source`` (e.g. ``resolution``).
        unlabelled: unlabelled inputs of the target task for strategies that use them (``self_train``):
            ``"rest"`` (the training split's examples that ``shots`` left unlabelled) or a data set,
            whose labels, if any, are ignored; ``"rest+DATA"`` pools several sources (``self_train``
            then pseudo-labels the same fraction of each: unsupervised domain adaptation when DATA is
            unlabelled text of the domain the model will meet).
        label_column, text_column: the label / text column of a CSV or JSONL ``data`` (a table's label
            column defaults to the source's; its other columns must be the source's).
        skip_bad_files: skip (and list) unreadable files of an image or ``.wav`` folder.
        train: :class:`TrainConfig` fields (``epochs``, ``lr``, ``precision`` ...).
    """
    if head not in ("auto", "new", "keep"):
        raise ConfigError(f"head={head!r} is not one of auto, new, keep")
    if out is not None:
        check_out(out, overwrite)  # before the source and the data load
    check_column_flags(data, label_column, text_column)
    strat = make_strategy(strategy, options)
    cfg = train_config(seed, train)
    src_model, src_config = load_source(source, model_kwargs)
    strat.trained_groups(src_model)  # options checked against the model (partial's k) before anything is read or written
    model = copy.deepcopy(src_model)
    spec_src = copy.deepcopy(model.spec)
    read = ReadOptions(skip_bad_files)
    ds = load_dataset(data, model=spec_src, seed=seed, label_column=label_column, text_column=text_column, read=read)
    sp = split(ds, seed=seed, **SPLIT)
    train_ds, val_ds = sp.train, sp.val
    if shots is not None:
        train_ds = kshot(sp.train, shots, seed=seed)
        val_ds = kshot(sp.val, min(shots, int(np.bincount(sp.val.require_labels()).min())), seed=seed)
    notes: list[str] = []
    if unlabelled is None and getattr(strat, "needs_unlabelled", False):
        if shots is None:
            raise ConfigError(f"{strategy} needs unlabelled inputs: pass --unlabelled DATA, or --shots K to use the "
                              "rest of the training split")
        unlabelled = "rest"
        notes.append(f"{strategy}: --unlabelled rest (the training split's examples --shots left unlabelled), as no "
                     "--unlabelled was given")
    x_unl, unl_groups = _unlabelled(unlabelled, sp.train, shots, seed, spec_src, train_ds, read)
    if x_unl is not None and not getattr(strat, "uses_unlabelled", False):
        notes.append(f"--unlabelled is read only by strategies that learn from it (self_train); {strategy} ignores it")
    if unlabelled is not None and data in unlabelled_sources(unlabelled):
        notes.append(f"--unlabelled {data} holds the test split too: the test accuracy is then transductive, not "
                     "held out (--unlabelled rest keeps to the training split)")
    keep = ds.class_names == spec_src.class_names
    if head == "keep" and not keep:
        raise ConfigError(_head_mismatch(spec_src.class_names, ds.class_names, data))
    source_head = copy.deepcopy(model.head)
    metrics: dict[str, Any] = {"strategy": strategy, "shots": shots, "seed": seed, "data": data}
    src_eval = None
    if source_data is not None:
        src_eval = source_test_split(source_data, src_config, spec_src, spec_src.class_names)
        if source_data != src_config.get("data"):
            notes.append(f"source accuracy is measured on all of {source_data}: the source run's split is unknown, "
                         "so it may include the source's own training data")
        metrics["source_before"] = _source_before(model, source_head, src_eval)
    if keep and head != "new":
        notes.append("target classes match the source: the source head is kept as the starting head")
    else:
        model.reset_head(ds.class_names)
        notes.append(f"new head for {ds.num_classes} target classes (source had {spec_src.num_classes})")
    config = {"command": "transfer", "source": str(source) if isinstance(source, (str, Path)) else type(source).__name__,
              "data": data, "data_identity": data_identity(data), "strategy": strategy, "options": dict(options or {}),
              "shots": shots, "seed": seed,
              "head": head, "source_data": source_data, "model_kwargs": dict(model_kwargs or {}), "split": {**SPLIT, "seed": seed},
              "unlabelled": unlabelled, "columns": {"label": label_column, "text": text_column},
              "input_range": recorded_range(ds)}
    # the settings training will use: the backbone's recipe fills what the user did not give (auto: per candidate)
    recipe = recipe_settings(spec_src.name, strategy, given_settings(train))
    config["train"] = asdict(replace(cfg, **{k: v for k, v in recipe.items() if k != "head_lr_scale"}))
    config["recipe"] = "per candidate (metrics.json: strategy_info.recipe)" if strategy == "auto" else recipe or None
    run = RunDir.create(out, "transfer", config, overwrite) if out is not None else None
    with marks_failure(run):
        t0 = time.perf_counter()
        ctx = TransferContext(model, {k: v.clone() for k, v in model.state_dict().items()},
                              labelled_tensors(train_ds), labelled_tensors(val_ds), cfg,
                              lambda: fresh_like(model, seed), cache=cache or DEFAULT_CACHE,
                              user_set=given_settings(train), unlabelled=x_unl, unlabelled_groups=unl_groups)
        results = run_strategy(strat, ctx, run.checkpoints if run else None)
        model = ctx.model
        if "recipe" in ctx.info:
            rec = ctx.info["recipe"]
            notes.append(f"{rec['backbone']} recipe for {rec['strategy']}: "
                         + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec["settings"].items())
                         + " (only settings you did not give; measured in " + rec["evidence"].split(",")[0] + ")")
        metrics["target"] = evaluate_model(model, sp.test, ds.num_classes)
        metrics.update(train_seconds=time.perf_counter() - t0, n_train=len(train_ds), n_val=len(val_ds),
                       n_unlabelled=0 if x_unl is None else len(x_unl),
                       phases=[phase_summary(r) for r in results], strategy_info=ctx.info, notes=notes)
        if src_eval is not None and strategy != "scratch":
            after = source_accuracy(model, source_head, src_eval)
            metrics["source_after"] = after
            metrics["forgetting"] = metrics["source_before"]["accuracy"] - after["accuracy"]
        if compare_scratch and strategy != "scratch":
            base = transfer(src_model, data, strategy="scratch", shots=shots, seed=seed, cache=cache, **train)
            metrics["scratch"] = {"accuracy": base.metrics["target"]["accuracy"], "train_seconds": base.metrics["train_seconds"]}
            metrics["gain_vs_scratch"] = metrics["target"]["accuracy"] - base.metrics["target"]["accuracy"]
        history = [asdict(r) for r in results]
        extra = {f"source_head.{k}": v for k, v in source_head.state_dict().items()}
        if run is not None:
            metrics["artifacts"] = _save_artifacts(strat, run)
        finish_run(run, model, metrics, history, extra)
    return RunResult(model, metrics, run.path if run else None, history, notes)


def _save_artifacts(strat: Strategy, run: RunDir) -> list[str]:
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


def _head_mismatch(source: list[str], target: list[str], data: str) -> str:
    """Why ``--head keep`` cannot keep the source head: the class counts, or (same count) the names, differ."""
    def shown(names: list[str]) -> str:
        return ", ".join(names[:10]) + (f", ... ({len(names)})" if len(names) > 10 else "")

    if len(source) != len(target):
        return (f"--head keep: the source has {len(source)} classes, {data} has {len(target)}; "
                f"source: {shown(source)}; data: {shown(target)}")
    return (f"--head keep: the source and {data} both have {len(source)} classes but their names differ; "
            f"source: {shown(source)}; data: {shown(target)}")


def _unlabelled(spec: str | None, train_split: ArrayDataset, shots: int | None, seed: int, model: ModelSpec,
                train_ds: ArrayDataset,
                read: ReadOptions = ReadOptions()) -> tuple[torch.Tensor | None, np.ndarray | None]:
    """The inputs of ``transfer(unlabelled=...)`` and, when ``spec`` pools several sources
    (``rest+vader-tweets``), the source index of each: ``rest`` of the few-shot draw, or a data set's
    inputs (its labels ignored)."""
    if spec is None:
        return None, None
    parts = unlabelled_sources(spec)
    xs = []
    for part in parts:
        if part == "rest":
            if shots is None:
                raise ConfigError("--unlabelled rest: the rest of a --shots draw, but no --shots was given (the whole "
                                  "training split is labelled); pass --shots K or --unlabelled DATA")
            ds = kshot_rest(train_split, shots, seed=seed)
        else:
            ds = load_dataset(part, model=model, seed=seed, labels_required=False, read=read)
        if len(ds) == 0:
            raise ConfigError(f"--unlabelled {part}: no examples")
        text = model.modality == "text" and ds.x.shape[1:-1] == train_ds.x.shape[1:-1]  # token widths may differ
        if ds.x.shape[1:] != train_ds.x.shape[1:] and not text:
            raise ConfigError(f"--unlabelled {part}: inputs of shape {ds.x.shape[1:]} do not match the labelled data's "
                              f"{train_ds.x.shape[1:]}")
        xs.append(torch.from_numpy(ds.x))
    return pool_inputs(xs)


def unlabelled_sources(spec: str) -> list[str]:
    """The sources of an ``--unlabelled`` value: ``rest+vader-tweets`` -> ``['rest', 'vader-tweets']``
    (one source when the whole value is an existing path)."""
    parts = [spec] if Path(spec).exists() else spec.split("+")
    if any(not p for p in parts):
        raise ConfigError(f"--unlabelled {spec!r}: an empty source between '+' signs")
    return parts


_SOURCE_BEFORE: dict[str, dict[str, Any]] = {}


def _source_before(model: TransferModel, head: torch.nn.Module, ds: ArrayDataset) -> dict[str, Any]:
    """Source accuracy of the untouched source model, computed once per (weights, data): every
    transfer from the same source would otherwise repeat the same forward pass."""
    from transferkit.engine.features import fingerprint

    key = fingerprint(*model.state_dict().values(), *head.state_dict().values(), torch.from_numpy(ds.x),
                      torch.from_numpy(ds.require_labels()))
    if key not in _SOURCE_BEFORE:
        _SOURCE_BEFORE[key] = source_accuracy(model, head, ds)
    return dict(_SOURCE_BEFORE[key])


def evaluate(run: str | Path, data: str, source_data: str | None = None, save: bool = True, *,
             label_column: str | None = None, text_column: str | None = None,
             skip_bad_files: bool = False) -> dict[str, Any]:
    """Score a saved run on ``data`` (its test split when ``data`` is what it trained on) and,
    with ``source_data``, the source task through the saved source head. ``label_column`` /
    ``text_column`` default to the ones the run was trained with; an ``.npz`` is read in the input
    range the run recorded; ``skip_bad_files`` skips (and lists) unreadable files of a folder."""
    started = (run_info(Path(run)) or {}).get("started")  # to notice an --overwrite finishing meanwhile
    check_column_flags(data, label_column, text_column)  # the flags given, not the columns the run recorded
    loaded = load_run(run)
    spec = loaded.spec
    columns = loaded.config.get("columns") or {}
    ds = load_dataset(data, model=spec, seed=int(loaded.config.get("seed", 0)),
                      label_column=label_column or columns.get("label"), text_column=text_column or columns.get("text"),
                      read=ReadOptions.for_run(loaded.config, skip_bad_files))
    notes: list[str] = []
    ds = heldout_split(loaded.config, data, ds, notes)  # the run's own data: its held-out part (adapt: never adapted on)
    ds = align_classes(ds, spec.class_names)
    out: dict[str, Any] = {"target": evaluate_model(loaded.model, ds, spec.num_classes)}
    if notes:
        out["target"]["note"] = notes[0]
    unl = loaded.config.get("unlabelled")
    read = (loaded.metrics.get("strategy_info") or {}).get("unlabelled_read")  # set by a strategy that read them
    if unl and read and data in unlabelled_sources(unl):
        out["target"]["transductive"] = (f"the run read {data}'s inputs unlabelled (--unlabelled {unl}): this accuracy "
                                         "is transductive; hold out a test set the run never read for a held-out one")
    if source_data is not None:
        head = loaded.source_head() or loaded.model.head
        src_cfg = _source_config(loaded)
        src_names = src_cfg.get("class_names") or spec.class_names
        src = source_test_split(source_data, src_cfg, spec, list(src_names))
        out["source"] = source_accuracy(loaded.model, head, src)
    if save:
        _save_evaluation(loaded.path, started, data, out)
    return out


def _save_evaluation(path: Path, started: object, data: str, out: dict[str, Any]) -> None:
    """Add ``out`` to the run's ``metrics.json`` (``evaluations[data]``), read and written under the run's
    lock, so concurrent evaluates lose nothing; refused when the run was replaced (``--overwrite``,
    another ``started``) since it was loaded."""
    with RunDir(path).locked() as done:  # never into a folder that is not a complete run
        if (run_info(path) or {}).get("started") != started:
            raise CheckpointError(f"{path}: replaced by another run while evaluate ran; evaluate it again")
        metrics = read_json(path / "metrics.json")
        metrics.setdefault("evaluations", {})[data] = out
        done.write("metrics.json", metrics)


def _source_config(loaded: LoadedRun) -> dict[str, Any]:
    """The config of the run a transferred model came from (for its source split), if reachable."""
    src = loaded.config.get("source")
    if loaded.config.get("command") == "pretrain":
        return {**loaded.config, "class_names": loaded.spec.class_names}
    if isinstance(src, str) and Path(src, "config.json").exists() and Path(src, "model.json").exists():
        names = read_json(Path(src, "model.json")).get("class_names")
        return {**read_json(Path(src, "config.json")), "class_names": names}
    return {}


def list_strategies() -> list[tuple[str, str]]:
    return [(e.name, e.summary) for e in STRATEGIES.list()]
