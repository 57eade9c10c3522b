"""``FederateSpec``: what ``transferkit federate`` was asked to do, typed (no torch, no flwr here).

The spec is the user's side; :class:`~transferkit.federated.config.FedConfig` is the wire form Flower
carries to every app (flat scalars: the training overrides travel there as a JSON string, the client
data sets comma-joined). :meth:`FederateSpec.fed_config` turns one into the other.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

from transferkit.federated.config import FedConfig
from transferkit.options import opt
from transferkit.spec import Spec


@dataclasses.dataclass(kw_only=True)
class FederateSpec(Spec):
    """Federated transfer of one source model to clients that keep their data."""

    command = "federate"

    source: str = opt(help="source run directory or pretrained backbone name (every client starts from it)")
    data: str | None = opt(None, "one data set partitioned over --clients (exclusive with --clients-from)")
    clients_from: tuple[str, ...] = opt((), "comma-separated data sets, one per client (one domain per client)")
    clients: int = opt(4, "number of clients (with --clients-from: the number of data sets)")
    partition: str = opt("iid", "iid | dirichlet:ALPHA (label skew) | domain (set by --clients-from)")
    rounds: int = opt(10, "federated rounds")
    share: Literal["head", "lora", "all"] = opt("head", "what travels: head | lora (adapter weights) | all")
    aggregator: Literal["fedavg", "fedprox"] = opt("fedavg", "fedavg | fedprox")
    mu: float = opt(0.01, "FedProx proximal weight mu in (mu/2)||w - w_global||^2")
    personal_head: bool = opt(False, "keep a personalised head on every client (not shared); FedPer")
    local_epochs: int = opt(1, "local fine-tuning epochs per round")
    probe_epochs: int = opt(20, "local epochs per round for a head trained on cached features (share=head)")
    min_fit_fraction: float = opt(0.5, "a round is aggregated when at least this fraction of clients replied")
    round_timeout: float = opt(600.0, "seconds to wait for the replies of one round")
    seed: int = opt(0, "seed of partitions, splits, head initialisation and local shuffling")
    train: dict[str, Any] = opt(factory=dict, flag=False,
                                help="TrainConfig overrides for local training (lr, batch_size...)")
    mode: Literal["simulation", "deployment"] = opt(
        "simulation", "simulation: Flower's engine on this machine; deployment: SuperLink + SuperNode processes")
    superlink: str | None = opt(None, "deployment: address of a running SuperLink's control API (default: start one "
                                      "on 127.0.0.1)")
    baselines: bool = opt(False, "also train centralised and local-only models on the same splits")
    fault: str = opt("", "testing only: ROUND:CLIENT[:crash|hang] makes that client fail in that round", flag=False)

    def fed_config(self, class_names: list[str] | None = None) -> FedConfig:
        """The wire form every Flower app reads (checked there: partition, share, counts...)."""
        return FedConfig(source=self.source, data=self.data or "", clients_from=",".join(self.clients_from),
                         clients=self.clients, partition=self.partition, rounds=self.rounds, share=self.share,
                         aggregator=self.aggregator, mu=self.mu, personal_head=self.personal_head,
                         local_epochs=self.local_epochs, probe_epochs=self.probe_epochs,
                         min_fit_fraction=self.min_fit_fraction, round_timeout=self.round_timeout, seed=self.seed,
                         train=json.dumps(self.train), fault=self.fault,
                         class_names=json.dumps(class_names) if class_names else "")
