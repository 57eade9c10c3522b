"""``FederateSpec``: what ``transferkit federate`` was asked to do, typed (no torch, no flwr here).

The spec is the user's side; :class:`~transferkit.federated.config.FedConfig` is the wire form Flower
carries to every app (flat scalars: the training overrides travel there as a JSON string, the client
data sets comma-joined). :meth:`FederateSpec.fed_config` turns one into the other.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

from transferkit.federated.config import FedConfig, FedSettings
from transferkit.options import opt
from transferkit.spec import Spec


@dataclasses.dataclass(kw_only=True)
class FederateSpec(Spec, FedSettings):
    """Federated transfer of one source model to clients that keep their data."""

    command = "federate"

    source: str = opt(help="source run directory or pretrained backbone name (every client starts from it)")
    data: str | None = opt(None, "one data set partitioned over --clients (exclusive with --clients-from)")
    clients_from: tuple[str, ...] = opt((), "comma-separated data sets, one per client (one domain per client)")
    train: dict[str, Any] = opt(factory=dict, flag=False,
                                help="TrainConfig overrides for local training (lr, batch_size...)")
    mode: Literal["simulation", "deployment"] = opt(
        "simulation", "simulation: Flower's engine on this machine; deployment: SuperLink + SuperNode processes")
    superlink: str | None = opt(None, "deployment: address of a running SuperLink's control API (default: start one "
                                      "on 127.0.0.1)")
    baselines: bool = opt(False, "also train centralised and local-only models on the same splits")

    def fed_config(self, class_names: list[str] | None = None) -> FedConfig:
        """The wire form every Flower app reads (checked there: partition, share, counts...)."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(FedSettings)}
        return FedConfig(**shared, source=self.source, data=self.data or "", clients_from=",".join(self.clients_from),
                         train=json.dumps(self.train), class_names=json.dumps(class_names) if class_names else "")
