"""The public Python API: pretrain a source model, transfer it, evaluate and predict.

:func:`pretrain` and :func:`transfer` are compositions of the public stages in
:mod:`transferkit.pipeline.pretrain` and :mod:`transferkit.pipeline.transfer`; each takes a spec
(:class:`~transferkit.spec.PretrainSpec`, :class:`~transferkit.spec.TransferSpec`) or the keyword form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.data import ReadOptions, align_classes, check_column_flags, load_dataset
from transferkit.engine.features import FeatureCache
from transferkit.errors import CheckpointError, ConfigError
from transferkit.evaluation.evaluate import evaluate_model, source_accuracy, source_test_split
from transferkit.io import read_json
from transferkit.models import TransferModel
from transferkit.options import to_dict
from transferkit.pipeline import RunResult, heldout_split
from transferkit.pipeline import pretrain as pretrain_stages
from transferkit.pipeline import transfer as stages
from transferkit.pipeline.targets import unlabelled_sources
from transferkit.runs import LoadedRun, RunDir, check_out, load_run, marks_failure, run_info
from transferkit.spec import ColumnSpec, PretrainSpec, TransferSpec
from transferkit.strategies import STRATEGIES, Strategy

__all__ = ["RunResult", "evaluate", "list_strategies", "pretrain", "transfer", "unlabelled_sources"]


def pretrain(data: str | PretrainSpec, model: str = "small_cnn", out: str | Path | None = None, *, seed: int = 0,
             model_kwargs: dict[str, Any] | None = None, overwrite: bool = False, label_column: str | None = None,
             text_column: str | None = None, skip_bad_files: bool = False, **train: Any) -> RunResult:
    """Train ``model`` from scratch on ``data`` (a built-in name or a path, or a whole
    :class:`~transferkit.spec.PretrainSpec`): the source model. ``out``: the run directory to write.

    ``skip_bad_files``: skip (and list) unreadable files of an image or ``.wav`` folder. The range an
    ``.npz``'s images were scaled from is recorded in ``config.json`` (``input_range``) for later reads.
    A table's preprocessing is fitted on the training split and saved in ``model.json``; tables
    train for :data:`~transferkit.data.tabular_prep.TABULAR_EPOCHS` epochs unless ``epochs`` is given.
    """
    if isinstance(data, PretrainSpec) and (model != "small_cnn" or seed != 0 or model_kwargs or label_column
                                           or text_column or skip_bad_files or train):
        raise ConfigError("pretrain: pass a PretrainSpec or keyword arguments, not both; dataclasses.replace(spec, "
                          "...) changes a spec")
    spec = data if isinstance(data, PretrainSpec) else PretrainSpec.from_dict(
        {"data": data, "model": model, "seed": seed, "model_kwargs": dict(model_kwargs or {}), "train": train,
         "columns": ColumnSpec(label=label_column, text=text_column), "skip_bad_files": skip_bad_files})
    if out is not None:
        check_out(out, overwrite)  # a folder that is not a run, or a busy one: refused before any data loads
    prepared = pretrain_stages.prepare(spec)
    run = RunDir.create(out, "pretrain", pretrain_stages.record(prepared), overwrite) if out is not None else None
    with marks_failure(run):
        return pretrain_stages.train(prepared, run)


def transfer(source: str | Path | LoadedRun | TransferModel | TransferSpec, data: str | None = None, *,
             strategy: str | Strategy = "lp_ft", options: Any = None, out: str | Path | None = None,
             overwrite: bool = False, cache: FeatureCache | None = None, label_column: str | None = None,
             text_column: str | None = None, **fields: Any) -> RunResult:
    """Initialise a target model from ``source`` and adapt it to ``data`` with ``strategy``.

    ``transfer(spec)`` runs a :class:`~transferkit.spec.TransferSpec`; the keyword form builds one:
    ``source`` is a run directory from :func:`pretrain`, a loaded run, a :class:`TransferModel` or the name
    of a registered pretrained backbone (``transferkit models``); ``strategy`` a name or a configured
    :class:`Strategy`; ``options`` its ``Options`` or a dict (typed values or strings); the other keywords
    are :class:`TransferSpec` fields (``shots``, ``seed``, ``head``, ``source_data``, ``compare_scratch``,
    ``model_kwargs``, ``unlabelled``, ``skip_bad_files``, ``split``; ``label_column`` / ``text_column`` are its
    ``columns``) or :class:`TrainConfig` fields (``epochs``, ``lr``, ``precision`` ...; its ``train``), whose
    meaning ``help(TransferSpec)`` gives. ``out``: the run directory; ``cache``: the feature cache.

    The run's ``config.json`` is the spec plus the settings resolved from it (with their provenance), the
    folder it started in and the versions: ``transferkit transfer --config RUN/config.json --out DIR``
    replays it with bit-identical weights (:mod:`transferkit.configfile` states the rule for its paths).
    """
    spec, obj, strat = _transfer_spec(source, data, strategy, options, label_column, text_column, fields)
    if out is not None:
        check_out(out, overwrite)  # before the source and the data load
    resolved = stages.resolve(spec, source=obj, strategy=strat)
    prepared = stages.prepare(resolved)
    run = RunDir.create(out, "transfer", stages.record(prepared), overwrite) if out is not None else None
    with marks_failure(run):
        trained = stages.train(prepared, run, cache)
        return stages.finish(trained, stages.assess(trained), run)


def _transfer_spec(source: Any, data: str | None, strategy: str | Strategy, options: Any, label: str | None,
                   text: str | None, fields: dict[str, Any]) -> tuple[TransferSpec, Any, Strategy | None]:
    """The spec of the keyword form, the source given as an object (or None), and a configured strategy."""
    if isinstance(source, TransferSpec):
        extra = [name for name, given in (("data", data is not None), ("options", options is not None),
                                          ("strategy", not isinstance(strategy, Strategy) and strategy != "lp_ft"),
                                          ("label_column", label is not None), ("text_column", text is not None))
                 if given] + sorted(fields)
        if extra:
            raise ConfigError(f"transfer: pass a TransferSpec or keyword arguments, not both (also given: "
                              f"{', '.join(extra)}); dataclasses.replace(spec, ...) changes a spec")
        return source, None, strategy if isinstance(strategy, Strategy) else None
    names = set(TransferSpec.field_help())
    values = {k: v for k, v in fields.items() if k in names and v is not None}
    values["train"] = {**values.get("train", {}), **{k: v for k, v in fields.items() if k not in names}}
    obj = None if isinstance(source, (str, Path)) else source
    if isinstance(strategy, Strategy):
        options = strategy.options
    spec = TransferSpec.from_dict({**values, "source": str(source) if obj is None else type(source).__name__,
                                   "data": data, "strategy": getattr(strategy, "name", strategy),
                                   "options": to_dict(options) if options is not None else {},
                                   "columns": ColumnSpec(label=label, text=text)})
    return spec, obj, strategy if isinstance(strategy, Strategy) else None


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
    ds = heldout_split(loaded.config, data, ds, notes)  # the run's own data: its held-out part (adapt: never adapted)
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
