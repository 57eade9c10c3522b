"""The data of an ``adapt`` run: the labelled source split, the label-free target split, the evaluation set.

The source run's own split is rebuilt (train / val / test); the target is loaded with its labels dropped
unread and split by a seeded permutation (``AdaptSpec.target_split``); labelled evaluation data is read
only to score, and when it is the target data itself only its held-out part is scored (``eval_all``: all
of it, the transductive protocol of the UDA papers).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from transferkit.adaptation.spec import AdaptSpec
from transferkit.data import ArrayDataset, ReadOptions, align_classes, load_dataset, split
from transferkit.engine.features import extract_features
from transferkit.engine.precision import resolve_placement
from transferkit.evaluation.evaluate import evaluate_model
from transferkit.models import TransferModel
from transferkit.pipeline import SPLIT, labelled_tensors, same_data, unlabelled_split

Tensors = tuple[torch.Tensor, torch.Tensor]


@dataclass
class AdaptData:
    """Source tensors (``None`` without source data), target inputs and the evaluation sets."""

    source_train: Tensors | None
    source_val: Tensors | None
    source_test: ArrayDataset | None
    target_train: torch.Tensor
    target_val: torch.Tensor
    target_test: torch.Tensor
    eval: ArrayDataset | None
    eval_all: ArrayDataset | None = None


def tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def cap(ds: ArrayDataset, limit: int | None, seed: int) -> ArrayDataset:
    """At most ``limit`` examples of ``ds`` (a seeded subsample, in file order)."""
    if limit is None or len(ds) <= limit:
        return ds
    return ds.subset(np.sort(np.random.default_rng(seed).choice(len(ds), limit, replace=False)))


def source_split(model: TransferModel, src_config: dict[str, Any], spec: AdaptSpec,
                 read: ReadOptions) -> tuple[Tensors, Tensors, ArrayDataset]:
    """The source run's split of ``spec.source_data`` rebuilt: (train capped at ``max_source``, val, test)."""
    assert spec.source_data is not None
    s = {**SPLIT, "seed": spec.seed, **src_config.get("split", {})}
    ds = align_classes(load_dataset(spec.source_data, model=model.spec, seed=int(s["seed"]), read=read),
                       model.spec.class_names)
    sp = split(ds, val=s["val"], test=s["test"], seed=int(s["seed"]))
    return labelled_tensors(cap(sp.train, spec.max_source, spec.seed)), labelled_tensors(sp.val), sp.test


def load_data(model: TransferModel, src_config: dict[str, Any], spec: AdaptSpec, read: ReadOptions) -> AdaptData:
    """The run's data (see the module doc)."""
    seed, ts = spec.seed, spec.target_split.with_seed(spec.seed)
    src = source_split(model, src_config, spec, read) if spec.source_data is not None else (None, None, None)
    ds_t = load_dataset(spec.target_data, model=model.spec, seed=seed, labels_required=False, read=read)
    ds_t = replace(ds_t, y=None)  # target labels, if the data has any, go no further
    assert ts.seed is not None
    i_tr, i_va, i_te = unlabelled_split(len(ds_t), val=ts.val, test=ts.test, seed=ts.seed)
    t_tr = cap(ds_t.subset(i_tr), spec.max_target, seed)
    ev = ev_all = None
    if spec.eval_data is not None:
        ev = align_classes(load_dataset(spec.eval_data, model=model.spec, seed=seed, read=read), model.spec.class_names)
        ev.require_labels()
        if same_data(spec.eval_data, spec.target_data):  # same inputs: score only the held-out part
            ev_all, ev = ev, ev.subset(i_te, ":heldout")
    return AdaptData(src[0], src[1], src[2], tensor(t_tr.x), tensor(ds_t.x[i_va]), tensor(ds_t.x[i_te]), ev, ev_all)


def features(model: TransferModel, x: np.ndarray | torch.Tensor, limit: int = 1000) -> np.ndarray:
    """Penultimate features of the first ``limit`` inputs (for the proxy A-distance)."""
    xs = tensor(x) if isinstance(x, np.ndarray) else x
    place = resolve_placement(model, "fp32", "auto")
    out: np.ndarray = extract_features(model, xs[:limit], place).numpy()
    return out


def accuracy(model: TransferModel, ds: ArrayDataset) -> dict[str, Any]:
    """:func:`evaluate_model`'s scores without the confusion matrix."""
    out = evaluate_model(model, ds, model.num_classes)
    out.pop("confusion", None)
    return out
