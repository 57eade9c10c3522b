"""The Flower ClientApp (Message API): local transfer on data that never leaves the client.

``train`` messages carry the global shared tensors (an ``ArrayRecord``) and a ``ConfigRecord``
(``server-round``, FedProx's ``proximal-mu``); the reply carries the trained shared tensors and
scalar metrics only. ``evaluate`` replies with the held-out accuracy of the global model (the
client's personal head when ``personal_head``) as two counts, so the server can pool them.

``app`` (read by ``flwr run`` / a SuperNode) takes its :class:`FedConfig` from the run config
and its client index from the node config's ``partition-id``; the simulation builds the app
with :func:`make_client_app` and the config captured.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections import OrderedDict
from dataclasses import asdict
from typing import Any

import torch

from transferkit.engine.config import TrainConfig
from transferkit.engine.loop import evaluate_arrays
from transferkit.engine.precision import resolve_placement
from transferkit.federated.clients import ClientData, client_data, initial_model
from transferkit.federated.config import FedConfig
from transferkit.federated.local import load_shared, require_share, sharing_form, train_round
from transferkit.models import TransferModel

log = logging.getLogger("transferkit")

PERSONAL_HEAD = "personal-head"
#: Per process: (config, partition id) -> (starting model, data); a SuperNode may reuse the process.
_CACHE: dict[tuple[str, int], tuple[TransferModel, ClientData]] = {}


def _setup(cfg: FedConfig, pid: int) -> tuple[TransferModel, ClientData]:
    key = (json.dumps(asdict(cfg), sort_keys=True), pid)
    if key not in _CACHE:
        torch.set_num_threads(1)  # one CPU per client (the simulation reserves num_cpus=1 each)
        require_share(cfg.share)
        _CACHE[key] = (initial_model(cfg), client_data(cfg, pid))
    model, data = _CACHE[key]
    return copy.deepcopy(model), data


def _fault(cfg: FedConfig, pid: int, rnd: int) -> None:
    """Testing hook: ``ROUND:CLIENT[:crash|hang]`` makes that client fail in that round."""
    if not cfg.fault:
        return
    parts = cfg.fault.split(":")
    if int(parts[0]) == rnd and int(parts[1]) == pid:
        if len(parts) > 2 and parts[2] == "hang":
            time.sleep(cfg.round_timeout + 30)
        raise RuntimeError(f"injected fault: client {pid} crashes in round {rnd}")


def to_record(tensors: dict[str, torch.Tensor]) -> Any:
    from flwr.app import ArrayRecord

    return ArrayRecord(OrderedDict((k, v.detach().cpu().contiguous()) for k, v in tensors.items()))


def from_record(record: Any) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(a.numpy().copy()) for k, a in record.items()}


def _personal_head(context: Any, model: TransferModel) -> None:
    if PERSONAL_HEAD in context.state:
        model.head.load_state_dict(from_record(context.state[PERSONAL_HEAD]))


def _accuracy(model: TransferModel, data: tuple[torch.Tensor, torch.Tensor], cfg: FedConfig) -> float:
    tc = TrainConfig(**{**cfg.train_overrides, "progress": "off"})
    place = resolve_placement(model, tc.precision, tc.channels_last, tc.device)
    return evaluate_arrays(model.to(place.device), data[0], data[1], place)[0]


def make_client_app(cfg: FedConfig | None = None) -> Any:
    """A ClientApp; ``cfg=None`` reads the config from each message's ``Context.run_config``."""
    from flwr.app import Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    def config_of(context: Context) -> FedConfig:
        return cfg if cfg is not None else FedConfig.from_run_config(context.run_config)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        c = config_of(context)
        pid = int(context.node_config["partition-id"])
        rnd = int(str(msg.content["config"]["server-round"]))
        _fault(c, pid, rnd)
        model, data = _setup(c, pid)
        if c.personal_head:
            _personal_head(context, model)
        mu = float(str(msg.content["config"].get("proximal-mu", 0.0)))
        t0 = time.perf_counter()
        sent, summary = train_round(model, data, c, from_record(msg.content["arrays"]), mu,
                                    round_seed=c.seed + 1000 * rnd + pid)
        if c.personal_head:
            context.state[PERSONAL_HEAD] = to_record(dict(model.head.state_dict()))
        metrics = MetricRecord({"num-examples": data.n_train, "partition-id": pid, "local-epochs": summary["epochs"],
                                "train-seconds": time.perf_counter() - t0,
                                "local-test-accuracy": _accuracy(model, data.test, c)})
        return Message(RecordDict({"arrays": to_record(sent), "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        c = config_of(context)
        pid = int(context.node_config["partition-id"])
        model, data = _setup(c, pid)
        model = sharing_form(model, c)
        load_shared(model, from_record(msg.content["arrays"]))
        if c.personal_head:
            _personal_head(context, model)
        acc = _accuracy(model, data.test, c)
        n = len(data.test[1])
        metrics = MetricRecord({"num-examples": n, "partition-id": pid, "accuracy": acc, "correct": round(acc * n)})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def __getattr__(name: str) -> Any:
    """``app`` is built on first access, so importing this module never imports flwr."""
    if name == "app":
        return make_client_app()
    raise AttributeError(name)
