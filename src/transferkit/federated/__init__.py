"""Federated transfer with Flower (Message API): partitioners, ClientApp / ServerApp, ``federate``.

Every client starts from the same source model and keeps its data; what travels each round is
chosen by ``share`` (the head, the LoRA weights, or everything). Nothing here imports ``flwr``
until a federation runs.
"""

from __future__ import annotations

from typing import Any

from transferkit.federated.config import FedConfig
from transferkit.federated.partition import dirichlet, holdout, iid, label_counts, parse_partition, partition


def federate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`transferkit.federated.api.federate`."""
    from transferkit.federated.api import federate as _federate

    return _federate(*args, **kwargs)


__all__ = ["FedConfig", "dirichlet", "federate", "holdout", "iid", "label_counts", "parse_partition", "partition"]
