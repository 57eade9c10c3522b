"""The federation's configuration: one typed dataclass, flattened into Flower's run config.

The same :class:`FedConfig` drives the simulation (captured by the apps) and a deployment (sent
as ``flwr run --run-config`` and read back from ``Context.run_config`` by the ServerApp and
every ClientApp), so both modes train exactly the same thing.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from transferkit.errors import ConfigError
from transferkit.federated.partition import parse_partition
from transferkit.options import opt

SHARES = ("head", "lora", "all")
AGGREGATORS = ("fedavg", "fedprox")


_CAST: dict[type, Any] = {bool: lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes"),
                         int: int, float: float, str: str}


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(kw_only=True)
class FedSettings:
    """The federation's settings that :class:`FedConfig` (the wire form) and
    :class:`~transferkit.federated.spec.FederateSpec` (the user's side) share, declared once."""

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
    fault: str = opt("", "testing only: ROUND:CLIENT[:crash|hang] makes that client fail in that round", flag=False)


@dataclass
class FedConfig(FedSettings):
    """What a federation trains, on which data, and what travels each round (flat scalars, as Flower's run
    config carries them)."""

    source: str = _f("", "source run directory or pretrained backbone name (every client starts from it)")
    data: str = _f("", "one data set partitioned over --clients (exclusive with clients_from)")
    clients_from: str = _f("", "comma-separated data sets, one per client (one domain per client)")
    train: str = _f("{}", "JSON object of TrainConfig overrides for local training (lr, batch_size...)")
    class_names: str = _f("", "JSON list of the target classes (filled in by federate from the data)")

    def __post_init__(self) -> None:
        if bool(self.data) == bool(self.clients_from):
            raise ConfigError("federate: give exactly one of --data (partitioned) or --clients-from (one per client)")
        if self.clients_from:
            self.partition = "domain"
            self.clients = len(self.domains)
        else:
            kind, _ = parse_partition(self.partition)
            if kind == "domain":
                raise ConfigError("partition=domain needs --clients-from a,b,c instead of --data")
        if self.share not in SHARES:
            raise ConfigError(f"share={self.share!r} is not one of {', '.join(SHARES)}")
        if self.aggregator not in AGGREGATORS:
            raise ConfigError(f"aggregator={self.aggregator!r} is not one of {', '.join(AGGREGATORS)}")
        if self.personal_head and self.share == "head":
            raise ConfigError("personal_head with share=head would share nothing; use share=all or share=lora")
        for name in ("clients", "rounds", "local_epochs", "probe_epochs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.min_fit_fraction <= 1:
            raise ConfigError(f"min_fit_fraction must be in (0, 1], got {self.min_fit_fraction}")
        if not (self.mu >= 0 and math.isfinite(self.mu)):
            raise ConfigError(f"mu must be zero or positive, got {self.mu}")
        if not isinstance(self.train_overrides, dict):
            raise ConfigError(f"train={self.train!r} must be a JSON object")

    @property
    def domains(self) -> list[str]:
        return [d.strip() for d in self.clients_from.split(",") if d.strip()]

    @property
    def train_overrides(self) -> dict[str, Any]:
        try:
            return json.loads(self.train or "{}")
        except json.JSONDecodeError as e:
            raise ConfigError(f"train={self.train!r} is not valid JSON ({e.msg})") from None

    @property
    def classes(self) -> list[str] | None:
        return [str(c) for c in json.loads(self.class_names)] if self.class_names else None

    @property
    def min_replies(self) -> int:
        return max(1, math.ceil(self.min_fit_fraction * self.clients))

    def to_run_config(self) -> dict[str, Any]:
        """Flat ``key -> scalar`` dict for Flower's run config (``-`` in keys, as Flower writes them)."""
        return {k.replace("_", "-"): v for k, v in asdict(self).items()}

    @classmethod
    def from_run_config(cls, rc: Any) -> FedConfig:
        """Inverse of :meth:`to_run_config`; unknown keys (Flower's own) are ignored."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in dict(rc).items():
            name = str(key).replace("-", "_")
            if name in known:
                kwargs[name] = _CAST[type(known[name].default)](value)
        return cls(**kwargs)
