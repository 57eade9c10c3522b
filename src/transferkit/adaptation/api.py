"""``adapt()``: unsupervised domain adaptation of a source run to unlabelled target data.

A composition of the public stages of :mod:`transferkit.adaptation.stages` (resolve -> prepare -> train
each candidate -> assess -> finish), driven by an :class:`~transferkit.adaptation.spec.AdaptSpec`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from transferkit.adaptation.candidates import method_candidates
from transferkit.adaptation.halving import halve
from transferkit.adaptation.methods import METHODS
from transferkit.adaptation.spec import AUTO_CANDIDATES, AdaptSpec, AutoOptions
from transferkit.adaptation.stages import (
    Source,
    assess,
    assess_before,
    finish,
    prepare,
    resolve,
    run_config,
    selection_report,
    train_candidate,
)
from transferkit.engine.loop import epochs_for_steps as epochs_for
from transferkit.errors import ConfigError
from transferkit.models import TransferModel
from transferkit.options import to_dict
from transferkit.pipeline import TARGET_SPLIT, RunResult, heldout_target, unlabelled_split
from transferkit.runs import LoadedRun, RunDir, check_out, load_source, marks_failure

#: ``auto``'s default candidates, comma-joined (as the CLI option reads them).
AUTO_METHODS = ",".join(AUTO_CANDIDATES)

__all__ = ["AUTO_METHODS", "TARGET_SPLIT", "AdaptSpec", "AutoOptions", "adapt", "epochs_for", "heldout_target",
           "list_methods", "method_candidates", "selection_report", "spec_of", "unlabelled_split"]

_SPEC_FIELDS = frozenset(f.name for f in fields(AdaptSpec)) - {"train"}


def _restyle(restyle_source: bool | None, train: dict[str, Any]) -> bool | None:
    """``restyle_source``, or the deprecated boolean ``augment=`` that named it (popped from ``train``)."""
    if isinstance(train.get("augment"), bool):
        warnings.warn("adapt(augment=...) is now restyle_source=...", DeprecationWarning, stacklevel=4)
        return bool(train.pop("augment")) or bool(restyle_source)
    return restyle_source


def spec_of(source: Source | Path | AdaptSpec, source_data: str | None = None, target_data: str | None = None,
            **kw: Any) -> AdaptSpec:
    """The :class:`AdaptSpec` of an :func:`adapt` call: its fields by name, ``target_labels_for_eval`` for
    ``eval_data``, any other keyword a training setting (a ``TrainConfig`` field)."""
    if isinstance(source, AdaptSpec):
        if source_data is not None or target_data is not None or kw:
            raise ConfigError("adapt(spec): give the spec alone (its fields hold the run's settings)")
        return source
    if "target_labels_for_eval" in kw:
        kw["eval_data"] = kw.pop("target_labels_for_eval")
    opts = kw.pop("options", None)
    given = {k: kw.pop(k) for k in list(kw) if k in _SPEC_FIELDS}
    given["restyle_source"] = _restyle(given.get("restyle_source"), kw)
    if target_data is None:
        raise ConfigError("adapt: target_data is required")
    label = str(source) if isinstance(source, (str, Path)) else type(source).__name__
    options = to_dict(opts) if opts is not None and not isinstance(opts, Mapping) else dict(opts or {})
    return AdaptSpec.from_dict({**given, "source": label, "source_data": source_data, "target_data": target_data,
                                "options": options, "train": kw})


def adapt(source: Source | Path | AdaptSpec, source_data: str | None = None, target_data: str | None = None, *,
          out: str | Path | None = None, overwrite: bool = False, **kw: Any) -> RunResult:
    """Adapt ``source`` to unlabelled ``target_data`` (see :class:`AdaptSpec` for every field).

    ``source``: a run directory from :func:`transferkit.pretrain`, a loaded run, a model, or a whole
    :class:`AdaptSpec` (``adapt(AdaptSpec.from_dict(json.load(open("runs/x/config.json"))))`` reproduces run x).
    ``source_data`` may be left out only when every method declares it reads none. Keywords: the spec's
    fields (``method``, ``options`` -- a dict of ``key=value`` strings or an :class:`AutoOptions` --,
    ``validator``, ``seed``, ``iterations``, ``restyle_source``...), ``target_labels_for_eval`` (= ``eval_data``)
    and training settings (``epochs``, ``lr``...). Defaults: those docs/UDA.md measured (SGD lr 0.01, no
    clip, 500 iterations, source re-styling on the digit sets), each recorded in ``config.json``'s
    ``provenance``. With ``eval_data == target_data``, ``metrics["target"]`` scores the held-out target part
    and ``metrics["target_all"]`` every target image.
    """
    started = time.perf_counter()  # a --budget counts from here
    spec = spec_of(source, source_data, target_data, **kw)
    if out is not None:
        check_out(out, overwrite)  # before the source and the data load
    plan = resolve(spec)
    prep = prepare(plan, load_source(source if isinstance(source, (LoadedRun, TransferModel)) else spec.source))
    run = RunDir.create(out, "adapt", run_config(plan, prep), overwrite) if out is not None else None
    with marks_failure(run):
        t0 = time.perf_counter()
        before = assess_before(prep, spec.seed)
        rungs: list[dict[str, Any]] = []
        if spec.budget is not None:
            runs, rungs = halve(plan, prep, run, started)
        else:
            runs = [train_candidate(plan, prep, i, run) for i in range(len(plan.candidates))]
        metrics = {**assess(plan, prep, before, runs), "train_seconds": time.perf_counter() - t0}
        if rungs:
            metrics["rungs"] = rungs
        return finish(run, prep, runs, metrics)


def list_methods(pattern: str = "*") -> list[tuple[str, str]]:
    return [(e.name, e.summary) for e in METHODS.list(pattern)]
