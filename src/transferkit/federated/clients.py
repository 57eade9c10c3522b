"""What each client owns: its data (train / val / held-out test) and its starting model.

Every participant rebuilds the same starting point from the config alone: the source model,
with a fresh head seeded by ``cfg.seed`` when the target classes differ from the source's.
Client ``k``'s data are recomputed from the seeded partition (simulation and the 127.0.0.1
deployment), so no example ever has to travel.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from transferkit.data import ArrayDataset, load_dataset
from transferkit.errors import ConfigError
from transferkit.federated.config import FedConfig
from transferkit.federated.partition import holdout, partition
from transferkit.models import TransferModel
from transferkit.runs import load_source

#: Held-out fractions of every client's examples (as in :data:`transferkit.api.SPLIT`).
VAL, TEST = 0.15, 0.3

Tensors = tuple[torch.Tensor, torch.Tensor]


@dataclass
class ClientData:
    """One client's examples. ``test`` is held out: only its accuracy ever leaves the client."""

    name: str
    train: Tensors
    val: Tensors
    test: Tensors

    @property
    def n_train(self) -> int:
        return len(self.train[1])


def _tensors(ds: ArrayDataset, idx: np.ndarray) -> Tensors:
    x = torch.from_numpy(np.ascontiguousarray(ds.x[idx]))
    return x, torch.from_numpy(ds.require_labels()[idx].astype(np.int64))


def _split(ds: ArrayDataset, idx: np.ndarray, name: str, seed: int, classes: list[str] | None) -> ClientData:
    if classes is not None and ds.class_names != classes:
        raise ConfigError(f"{name}: its classes {ds.class_names[:5]}... differ from the federation's {classes[:5]}...")
    tr, va, te = holdout(ds.require_labels()[idx], VAL, TEST, seed)
    return ClientData(name, _tensors(ds, idx[tr]), _tensors(ds, idx[va]), _tensors(ds, idx[te]))


@lru_cache(maxsize=8)
def _source(source: str) -> TransferModel:
    return load_source(source)[0]


def source_model(cfg: FedConfig) -> TransferModel:
    """A fresh copy of the source model (loaded once per process)."""
    return copy.deepcopy(_source(cfg.source))


def class_names(cfg: FedConfig) -> list[str]:
    """The target classes, checked to agree across the clients' data sets."""
    names = cfg.domains if cfg.clients_from else [cfg.data]
    spec = source_model(cfg).spec
    found = [load_dataset(n, model=spec, seed=cfg.seed).class_names for n in names]
    for n, c in zip(names, found, strict=True):
        if c != found[0]:
            raise ConfigError(f"clients_from: {n} has classes {c[:5]}... but {names[0]} has {found[0][:5]}...; "
                              "every client must share one label set")
    return found[0]


def initial_model(cfg: FedConfig, names: list[str] | None = None) -> TransferModel:
    """The model every participant starts from: the source, with a seeded new head if needed."""
    model = source_model(cfg)
    names = names or cfg.classes or class_names(cfg)
    if names != model.spec.class_names:
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            model.reset_head(names)
    return model


def client_data(cfg: FedConfig, pid: int) -> ClientData:
    """Client ``pid``'s data: its whole domain (``clients_from``) or its part of ``data``."""
    if not 0 <= pid < cfg.clients:
        raise ConfigError(f"partition-id {pid} is outside 0..{cfg.clients - 1}")
    spec = _source(cfg.source).spec
    if cfg.clients_from:
        name = cfg.domains[pid]
        ds = load_dataset(name, model=spec, seed=cfg.seed)
        return _split(ds, np.arange(len(ds)), name, cfg.seed + pid, cfg.classes)
    ds = load_dataset(cfg.data, model=spec, seed=cfg.seed)
    parts = partition(ds.require_labels(), cfg.clients, cfg.partition, cfg.seed)
    return _split(ds, parts[pid], f"{cfg.data}[{pid}]", cfg.seed + pid, cfg.classes)


def all_clients(cfg: FedConfig) -> list[ClientData]:
    return [client_data(cfg, k) for k in range(cfg.clients)]


def pooled(clients: list[ClientData], part: str) -> Tensors:
    """The union of one part (``train`` / ``val`` / ``test``) over clients (for the baselines)."""
    ts = [getattr(c, part) for c in clients]
    return torch.cat([t[0] for t in ts]), torch.cat([t[1] for t in ts])
