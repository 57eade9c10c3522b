"""The stages of :func:`transferkit.pretrain`: ``prepare(spec) -> Prepared`` (data, split, settings, a model
with random weights) -> :func:`record` (``config.json``) -> ``train(prepared, run) -> RunResult``."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from transferkit.data import ArrayDataset, ReadOptions, check_column_flags, load_dataset, split
from transferkit.data.base import recorded_range
from transferkit.data.tabular_prep import TABULAR_EPOCHS, fit_splits
from transferkit.errors import ConfigError
from transferkit.evaluation.evaluate import evaluate_model
from transferkit.models import ModelSpec, TransferModel, build_model
from transferkit.pipeline.splits import data_identity
from transferkit.pipeline.stages import RunResult, finish_run, labelled_tensors, phase_summary
from transferkit.pipeline.transfer import versions
from transferkit.runs import RunDir
from transferkit.spec import PretrainSpec
from transferkit.strategies import STRATEGIES, TransferContext, run_strategy
from transferkit.strategies.recipes import Settings, resolve_settings


@dataclass
class Prepared:
    """A pretrain run before training: its spec (split seed fixed), data, splits, settings and model."""

    spec: PretrainSpec
    dataset: ArrayDataset
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    settings: Settings
    model_spec: ModelSpec
    model: TransferModel


def prepare(spec: PretrainSpec) -> Prepared:
    """Load and split ``spec.data``, fit a table's preprocessing on the training split, resolve the settings
    (tables train :data:`~transferkit.data.tabular_prep.TABULAR_EPOCHS` epochs unless given) and build the
    model with random weights."""
    check_column_flags(spec.data, spec.columns.label, spec.columns.text)
    resolve_settings(spec.model, "scratch", spec.train, spec.seed, "pretrain")  # bad settings fail before reading
    spec = replace(spec, split=spec.split.with_seed(spec.seed))
    ds = load_dataset(spec.data, seed=spec.seed, label_column=spec.columns.label, text_column=spec.columns.text,
                      read=ReadOptions(spec.skip_bad_files))
    if ds.modality == "text":  # raw strings: no backbone trains on them from random weights
        raise ConfigError(f"{spec.data}: pretrain trains from random weights on images, tables and audio; for text, "
                          f"transfer from a pretrained encoder (transferkit transfer --source minilm --data "
                          f"{spec.data} ...)")
    defaults = {"epochs": TABULAR_EPOCHS} if ds.modality == "tabular" else None
    settings = resolve_settings(spec.model, "scratch", spec.train, spec.seed, "pretrain", command_defaults=defaults)
    sp, preprocess = fit_splits(split(ds, **spec.split.split_args(spec.seed)))  # fitted on train only
    mspec = ModelSpec(spec.model, sp.train.input_shape, ds.class_names, dict(spec.model_kwargs), ds.modality,
                      preprocess)
    net = build_model(mspec, spec.seed, pretrained=False)  # pretraining starts from random weights
    return Prepared(spec, ds, sp.train, sp.val, sp.test, settings, mspec, net)


def record(p: Prepared) -> dict[str, Any]:
    """The run's ``config.json``: the spec, the resolved settings with their provenance, the data's identity
    and input range, and the directory the run was started from (``cwd``)."""
    return {"command": "pretrain", **p.spec.to_dict(), "model_kwargs": p.model_spec.kwargs, **p.settings.to_dict(),
            "data_identity": data_identity(p.spec.data), "input_range": recorded_range(p.dataset), "cwd": os.getcwd(),
            "versions": versions()}


def train(p: Prepared, run: RunDir | None = None) -> RunResult:
    """Train the model from scratch, score it on the test split and write the run (when ``run`` is given)."""
    t0 = time.perf_counter()
    mspec, seed = p.model_spec, p.spec.seed
    ctx = TransferContext(p.model, {}, labelled_tensors(p.train), labelled_tensors(p.val), p.settings.cfg,
                          lambda: build_model(mspec, seed, pretrained=False), head_lr_scale=p.settings.head_lr_scale)
    results = run_strategy(STRATEGIES.get("scratch")(), ctx, run.checkpoints if run else None)
    net = ctx.model
    metrics = {"source": evaluate_model(net, p.test, mspec.num_classes), "train_seconds": time.perf_counter() - t0,
               "n_train": len(p.train), "phases": [phase_summary(r) for r in results]}
    history = [asdict(r) for r in results]
    finish_run(run, net, metrics, history)
    return RunResult(net, metrics, run.path if run else None, history)
