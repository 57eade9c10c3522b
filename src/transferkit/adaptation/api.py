"""``adapt()``: unsupervised domain adaptation of a source run to unlabelled target data.

Target labels are never read for training or selection: the target is loaded without labels,
split label-free (seeded permutation) into train / validation / held-out inputs, and methods,
trade-off weights and checkpoints are chosen by label-free validators. Labels are read only to
*evaluate*, when the user names labelled target data (``target_labels_for_eval``).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.adaptation.adistance import proxy_a_distance
from transferkit.adaptation.base import AdaptContext, run_method, validation_data
from transferkit.adaptation.methods import METHODS, make_method
from transferkit.adaptation.validators import VALIDATORS, score_all
from transferkit.data import ArrayDataset, ReadOptions, align_classes, load_dataset, split
from transferkit.engine.features import extract_features
from transferkit.engine.precision import resolve_placement
from transferkit.errors import ConfigError
from transferkit.evaluation.evaluate import evaluate_model
from transferkit.models import TransferModel
from transferkit.pipeline import (
    SPLIT,
    TARGET_SPLIT,
    RunResult,
    data_identity,
    finish_run,
    heldout_target,
    phase_summary,
    same_data,
    train_config,
    unlabelled_split,
)
from transferkit.runs import LoadedRun, RunDir, check_out, load_source, marks_failure

AUTO_METHODS = "source_only,dann,cdan,mmd,coral,mcc,adabn"

__all__ = ["AUTO_METHODS", "TARGET_SPLIT", "adapt", "epochs_for", "heldout_target", "list_methods", "method_candidates",
           "selection_report", "unlabelled_split"]


@dataclass
class _Data:
    source_train: tuple[torch.Tensor, torch.Tensor]
    source_val: tuple[torch.Tensor, torch.Tensor]
    source_test: ArrayDataset
    target_train: torch.Tensor
    target_val: torch.Tensor
    target_test: torch.Tensor
    eval: ArrayDataset | None
    eval_all: ArrayDataset | None = None


def epochs_for(iterations: int, n: int, batch_size: int) -> int:
    """Epochs over ``n`` training examples giving at least ``iterations`` optimizer steps
    (steps per epoch as :func:`transferkit.engine.fit` counts them)."""
    bs = min(batch_size, n)
    per_epoch = n // bs if n % bs == 1 else math.ceil(n / bs)
    return max(1, math.ceil(iterations / per_epoch))


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def _cap(ds: ArrayDataset, limit: int | None, seed: int) -> ArrayDataset:
    if limit is None or len(ds) <= limit:
        return ds
    return ds.subset(np.sort(np.random.default_rng(seed).choice(len(ds), limit, replace=False)))


def _prepare(model: TransferModel, src_config: dict[str, Any], source_data: str, target_data: str,
             eval_data: str | None, seed: int, max_source: int | None, max_target: int | None,
             read: ReadOptions = ReadOptions()) -> _Data:
    spec = model.spec
    s = {**SPLIT, "seed": seed, **src_config.get("split", {})}
    ds_s = align_classes(load_dataset(source_data, model=spec, seed=int(s["seed"]), read=read), spec.class_names)
    sp = split(ds_s, val=s["val"], test=s["test"], seed=int(s["seed"]))
    tr = _cap(sp.train, max_source, seed)
    ds_t = load_dataset(target_data, model=spec, seed=seed, labels_required=False, read=read)
    ds_t = replace(ds_t, y=None)  # target labels, if the data has any, go no further
    i_tr, i_va, i_te = unlabelled_split(len(ds_t), seed=seed, **TARGET_SPLIT)
    t_tr = _cap(ds_t.subset(i_tr), max_target, seed)
    ev = ev_all = None
    if eval_data is not None:
        ev = align_classes(load_dataset(eval_data, model=spec, seed=seed, read=read), spec.class_names)
        ev.require_labels()
        if same_data(eval_data, target_data):  # same inputs: score only the held-out part never adapted on
            ev_all, ev = ev, ev.subset(i_te, ":heldout")
    sv = sp.val
    return _Data((_tensor(tr.x), _tensor(tr.require_labels().astype(np.int64))),
                 (_tensor(sv.x), _tensor(sv.require_labels().astype(np.int64))), sp.test,
                 _tensor(t_tr.x), _tensor(ds_t.x[i_va]), _tensor(ds_t.x[i_te]), ev, ev_all)


def method_candidates(method: str, options: dict[str, str]) -> list[tuple[str, str, dict[str, str]]]:
    """(label, method name, options) to run: one for a named method, a grid for ``auto``."""
    if method != "auto":
        return [(method, method, dict(options))]
    opts = dict(options)
    names = [n.strip() for n in opts.pop("candidates", AUTO_METHODS).split(",") if n.strip()]
    weights = [w.strip() for w in opts.pop("trade_offs", "1.0").split(",") if w.strip()]
    if opts:
        raise ConfigError(f"unknown auto option '{min(opts)}' (options: candidates, trade_offs)")
    out = []
    for entry in names:  # "name" or "name:key=value:key=value" (fixed options of that candidate)
        n, *kvs = entry.split(":")
        fixed = {}
        for kv in kvs:
            k, sep, v = kv.partition("=")
            if not sep or not k:
                raise ConfigError(f"auto candidate '{entry}': options must be key=value, got '{kv}'")
            fixed[k.strip()] = v.strip()
        cls = METHODS.get(n)
        has_w = "trade_off" in getattr(cls.Options, "__dataclass_fields__", {}) and "trade_off" not in fixed
        for w in weights if has_w else [None]:
            o = dict(fixed) if w is None else {**fixed, "trade_off": w}
            label = n if not o else f"{n}({', '.join(f'{k}={v}' for k, v in o.items())})"
            out.append((label, n, o))
    return out


def _features(model: TransferModel, x: torch.Tensor, limit: int = 1000) -> np.ndarray:
    place = resolve_placement(model, "fp32", "auto")
    return extract_features(model, x[:limit], place).numpy()


def _accuracy(model: TransferModel, ds: ArrayDataset) -> dict[str, Any]:
    out = evaluate_model(model, ds, model.num_classes)
    out.pop("confusion", None)
    return out


def _restyle_flag(restyle_source: bool, train: dict[str, Any]) -> bool:
    """``restyle_source``, or the deprecated boolean ``augment=`` that named it (popped from ``train``); a
    one-line error for ``augment="on"``, the training-time policy that adapt's loop does not apply."""
    value = train.get("augment")
    if isinstance(value, bool):
        warnings.warn("adapt(augment=...) is now restyle_source=...", DeprecationWarning, stacklevel=3)
        return bool(train.pop("augment")) or restyle_source
    if value == "on":
        raise ConfigError("adapt: --augment on (the training-time image augmentation of transfer) is not applied "
                          "by adapt's training loop; --restyle-source re-styles the source batches")
    return restyle_source


def adapt(source: str | Path | LoadedRun | TransferModel, source_data: str, target_data: str, *,
          method: str = "dann", out: str | Path | None = None, seed: int = 0,
          target_labels_for_eval: str | None = None, options: dict[str, str] | None = None,
          validator: str = "im", overwrite: bool = False, max_source: int | None = None,
          max_target: int | None = None, iterations: int | None = None, restyle_source: bool = False,
          skip_bad_files: bool = False, **train: Any) -> RunResult:
    """Adapt ``source`` to unlabelled ``target_data`` with ``method`` (or ``"auto"``).

    Args:
        source: a run directory from :func:`transferkit.pretrain`, a loaded run or a model.
        source_data: the labelled source data (its run's split is rebuilt: train / val / test).
        target_data: target inputs (a built-in name, an ``.npz`` with only ``x``, a flat image
            folder, a CSV without label column). Labels in it are dropped unread.
        method: a name in ``METHODS`` or ``"auto"`` (run the candidates, keep the one the
            ``validator`` scores highest; options ``candidates=dann,mcc`` and ``trade_offs=0.3,1``).
        target_labels_for_eval: labelled target data used *only* for evaluation. When it is
            ``target_data`` itself, only the held-out target part (never adapted on) is scored.
        options: ``key=value`` method options (see ``transferkit methods``).
        validator: label-free score for checkpoint and method selection (``im``, ``snd``,
            ``entropy``, ``dev``).
        max_source, max_target: cap the training examples per domain (seeded subsample).
        iterations: the training budget in optimizer steps per method (overrides ``epochs``: the
            epoch count over the source training set that gives at least this many steps), so the
            budget does not shrink with a small source set. The reference recipes count iterations.
        restyle_source: re-style every source batch at random (affine warp, stroke width, blur; see
            :mod:`transferkit.adaptation.augment`) -- for glyph-like images such as digits
            (``augment=True``/``False``, its old name, is still accepted, with a DeprecationWarning).
        skip_bad_files: skip (and list on stderr) unreadable files of an image or ``.wav`` folder.
        train: :class:`~transferkit.engine.config.TrainConfig` fields; ``epochs`` defaults to 10,
            ``optimizer`` to ``sgd`` and then ``lr`` to 0.01 and ``grad_clip`` to 0 (the UDA papers'
            recipe, see above: no global clip, which would also throttle the domain discriminator).
            ``augment`` (the training-time image policy of ``transfer``) may be ``auto`` or ``off``:
            adapt's own loop never applies it, so ``on`` is refused (``restyle_source`` is adapt's).

    With ``target_labels_for_eval == target_data``, ``metrics["target"]`` scores the held-out
    target part and ``metrics["target_all"]`` every target image (the usual transductive UDA
    protocol: the unlabelled inputs adapted on are scored too).
    """
    restyle_source = _restyle_flag(restyle_source, train)
    if out is not None:
        check_out(out, overwrite)  # before the source and the data load
    train.setdefault("epochs", 10)
    # SGD with Nesterov momentum 0.9 at lr 0.01, as in the papers the methods come from (Ganin et al.,
    # JMLR 2016, sec. 5.2; Long et al., NeurIPS 2018, sec. 4; Jin et al., ECCV 2020, sec. 4) and in
    # TLlib's digit recipes. AdamW (the pre-training default) destabilises the adversarial min-max:
    # mnist5k->digits8, small_cnn, seed 0, 5 epochs: dann 61.6% with AdamW vs 82.7% with SGD.
    train.setdefault("optimizer", "sgd")
    if train["optimizer"] == "sgd":
        train.setdefault("lr", 0.01)
        train.setdefault("grad_clip", 0.0)
    if iterations is not None and iterations < 1:
        raise ConfigError(f"iterations must be at least 1, got {iterations}")
    cfg = train_config(seed, train)
    VALIDATORS.get(validator)
    cands = method_candidates(method, options or {})
    methods = [make_method(name, o) for _, name, o in cands]
    src_model, src_config = load_source(source)
    for m in methods:
        m.check(src_model)
    data = _prepare(src_model, src_config, source_data, target_data, target_labels_for_eval, seed, max_source, max_target,
                    ReadOptions(skip_bad_files))
    if iterations is not None:
        cfg = replace(cfg, epochs=epochs_for(iterations, len(data.source_train[0]), cfg.batch_size))
    config = {"command": "adapt", "source": str(source) if isinstance(source, (str, Path)) else type(source).__name__,
              "source_data": source_data, "target_data": target_data,
              "target_data_identity": data_identity(target_data), "method": method, "options": dict(options or {}),
              "validator": validator, "seed": seed, "eval_data": target_labels_for_eval,
              "target_split": {**TARGET_SPLIT, "seed": seed, "labels_read": False},
              "max_source": max_source, "max_target": max_target, "iterations": iterations, "restyle_source": restyle_source,
              "train": asdict(cfg)}
    run = RunDir.create(out, "adapt", config, overwrite) if out is not None else None
    with marks_failure(run):
        t0 = time.perf_counter()
        src_feats = _features(src_model, _tensor(data.source_test.x))
        metrics: dict[str, Any] = {"method": method, "validator": validator, "seed": seed,
                                   "source_before": _accuracy(src_model, data.source_test),
                                   "a_distance": {"before": proxy_a_distance(src_feats, _features(src_model, data.target_test), seed=seed)}}
        if data.eval is not None:
            metrics["target_before"] = _accuracy(src_model, data.eval)
        if data.eval_all is not None:
            metrics["target_all_before"] = _accuracy(src_model, data.eval_all)
        source_head = copy.deepcopy(src_model.head)
        runs: list[tuple[dict[str, Any], TransferModel, list[Any]]] = []
        for (label, name, opts), m in zip(cands, methods, strict=True):
            model = copy.deepcopy(src_model)
            ctx = AdaptContext(model, data.source_train, data.source_val, data.target_train, data.target_val, cfg, validator,
                               augment=restyle_source)
            ckpt = None if run is None else run.checkpoints / f"{len(runs)}-{name}"
            t1 = time.perf_counter()
            results = run_method(m, ctx, ckpt)
            vd = validation_data(model, ctx.placement(), data.target_val, data.source_val)
            rec: dict[str, Any] = {"label": label, "method": name, "options": opts, "validators": score_all(vd),
                                   "train_seconds": time.perf_counter() - t1, "info": ctx.info}
            if data.eval is not None:
                rec["target_accuracy"] = _accuracy(model, data.eval)["accuracy"]
            if data.eval_all is not None:
                rec["target_accuracy_all"] = _accuracy(model, data.eval_all)["accuracy"]
            runs.append((rec, model, results))
        best = max(range(len(runs)), key=lambda i: runs[i][0]["validators"][validator])
        rec, model, results = runs[best]
        metrics.update(chosen=rec["label"], validators=rec["validators"], candidates=[r for r, _, _ in runs])
        if data.eval is not None:
            metrics["target"] = evaluate_model(model, data.eval, model.num_classes)
            if len(runs) > 1:
                metrics["selection"] = selection_report([r for r, _, _ in runs])
        if data.eval_all is not None:
            metrics["target_all"] = _accuracy(model, data.eval_all)
        metrics["source_after"] = _accuracy(model, data.source_test)
        metrics["forgetting"] = metrics["source_before"]["accuracy"] - metrics["source_after"]["accuracy"]
        metrics["a_distance"]["after"] = proxy_a_distance(_features(model, _tensor(data.source_test.x)),
                                                          _features(model, data.target_test), seed=seed)
        metrics.update(train_seconds=time.perf_counter() - t0, n_source_train=len(data.source_train[0]),
                       n_target_train=len(data.target_train), n_target_val=len(data.target_val),
                       phases=[phase_summary(r) for r in results], notes=[])
        history = [{"candidate": r["label"], **asdict(p)} for r, _, res in runs for p in res]
        extra = {f"source_head.{k}": v for k, v in source_head.state_dict().items()}
        finish_run(run, model, metrics, history, extra)
    return RunResult(model, metrics, run.path if run else None, history, [])


def selection_report(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """For each validator: its choice among ``candidates``, the label-oracle's choice, whether they
    match and the accuracy given up (regret). ``match_rate`` is the fraction of validators matching."""
    accs = [c["target_accuracy"] for c in candidates]
    oracle = int(np.argmax(accs))
    out: dict[str, Any] = {"oracle": candidates[oracle]["label"], "oracle_accuracy": accs[oracle], "validators": {}}
    for name in candidates[0]["validators"]:
        pick = int(np.argmax([c["validators"][name] for c in candidates]))
        out["validators"][name] = {"choice": candidates[pick]["label"], "matches": accs[pick] == accs[oracle],
                                   "regret": accs[oracle] - accs[pick]}
    v = out["validators"]
    out["match_rate"] = sum(x["matches"] for x in v.values()) / max(1, len(v))
    return out


def list_methods(pattern: str = "*") -> list[tuple[str, str]]:
    return [(e.name, e.summary) for e in METHODS.list(pattern)]
