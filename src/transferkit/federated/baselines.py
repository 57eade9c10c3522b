"""The yardsticks of a federation: centralised transfer on the pooled data, local-only transfer.

Both use the same clients' splits as the federation (:func:`~transferkit.federated.clients.all_clients`):
*centralised* trains one model on the union of the clients' training parts (what one would do
if the data could be pooled) and scores it on the union of their held-out parts; *local-only*
trains one model per client on its own data alone and scores it on that client's held-out part.
Training is :func:`transferkit.strategies.run_strategy` with a registered strategy.
"""

from __future__ import annotations

from typing import Any

import torch

from transferkit.engine.config import TrainConfig
from transferkit.engine.features import DEFAULT_CACHE
from transferkit.engine.loop import evaluate_arrays
from transferkit.federated.clients import ClientData, initial_model, pooled
from transferkit.federated.config import FedConfig
from transferkit.models import TransferModel
from transferkit.strategies import TransferContext, make_strategy, run_strategy

Tensors = tuple[torch.Tensor, torch.Tensor]


def _fit(cfg: FedConfig, strategy: str, train: Tensors, val: Tensors, epochs: int, probe_epochs: int) -> TransferModel:
    model = initial_model(cfg)
    tc = TrainConfig(**{"progress": "off", **cfg.train_overrides, "epochs": epochs, "seed": cfg.seed})
    ctx = TransferContext(model, {}, train, val, tc, lambda: model, cache=DEFAULT_CACHE, probe_epochs=probe_epochs)
    run_strategy(make_strategy(strategy), ctx)
    return ctx.model


def _acc(model: TransferModel, data: Tensors, cfg: FedConfig) -> float:
    from transferkit.engine.precision import resolve_placement

    tc = TrainConfig(**{**cfg.train_overrides, "progress": "off"})
    place = resolve_placement(model, tc.precision, tc.channels_last, tc.device)
    return evaluate_arrays(model.to(place.device), data[0], data[1], place)[0]


def _per_client(model: TransferModel, clients: list[ClientData], cfg: FedConfig) -> dict[str, float]:
    return {str(k): _acc(model, c.test, cfg) for k, c in enumerate(clients)}


def centralised(cfg: FedConfig, clients: list[ClientData], strategy: str, epochs: int,
                probe_epochs: int = 100) -> dict[str, Any]:
    """Transfer with ``strategy`` on the pooled training data; accuracy pooled and per client."""
    model = _fit(cfg, strategy, pooled(clients, "train"), pooled(clients, "val"), epochs, probe_epochs)
    return {"strategy": strategy, "epochs": epochs, "pooled_accuracy": _acc(model, pooled(clients, "test"), cfg),
            "clients": _per_client(model, clients, cfg)}


def local_only(cfg: FedConfig, clients: list[ClientData], strategy: str, epochs: int,
               probe_epochs: int = 100) -> dict[str, Any]:
    """One model per client on its own data; pooled accuracy = correct over all held-out examples."""
    accs, correct, n = {}, 0.0, 0
    for k, c in enumerate(clients):
        model = _fit(cfg, strategy, c.train, c.val, epochs, probe_epochs)
        accs[str(k)] = _acc(model, c.test, cfg)
        correct += accs[str(k)] * len(c.test[1])
        n += len(c.test[1])
    return {"strategy": strategy, "epochs": epochs, "pooled_accuracy": correct / n, "clients": accs}
