"""What travels under each ``share``, FedProx's proximal term, and the bytes it costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from transferkit.engine.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.federated.clients import initial_model
from transferkit.federated.config import FedConfig
from transferkit.federated.local import LocalRound, is_shared, load_shared, shared_state, sharing_form
from transferkit.strategies import make_strategy
from transferkit.strategies.base import TransferContext

CLASSES = json.dumps([str(i) for i in range(10)])


def _cfg(source: Path, **kw: object) -> FedConfig:
    return FedConfig(source=str(source), data="digits8", class_names=CLASSES, **kw)  # type: ignore[arg-type]


def test_config_validates_and_round_trips(source_run: Path) -> None:
    cfg = _cfg(source_run, share="all", aggregator="fedprox", personal_head=True)
    assert FedConfig.from_run_config(cfg.to_run_config()) == cfg
    assert FedConfig(source="s", clients_from="mnist5k, digits8").clients == 2
    for bad in ({"share": "bias"}, {"aggregator": "scaffold"}, {"share": "head", "personal_head": True},
                {"rounds": 0}, {"min_fit_fraction": 0.0}, {"partition": "domain"}):
        with pytest.raises(ConfigError):
            _cfg(source_run, **bad)
    with pytest.raises(ConfigError, match="exactly one"):
        FedConfig(source="s", data="digits8", clients_from="mnist5k")


def test_shared_names_per_share(source_run: Path) -> None:
    model = initial_model(_cfg(source_run))
    head = shared_state(model, _cfg(source_run, share="head"))
    full = shared_state(model, _cfg(source_run, share="all"))
    fedper = shared_state(model, _cfg(source_run, share="all", personal_head=True))
    assert set(head) == {"head.weight", "head.bias"}
    assert set(full) == {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(fedper) == set(full) - set(head)
    assert not is_shared("groups.conv1.1.num_batches_tracked", "all", False)


def test_lora_shares_only_adapter_factors_and_head(source_run: Path) -> None:
    pytest.importorskip("peft")
    cfg = _cfg(source_run, share="lora")
    sent = shared_state(sharing_form(initial_model(cfg), cfg), cfg)
    assert sent and all(".lora_" in k or k.startswith("head.") for k in sent)
    assert any(".lora_A." in k for k in sent) and any(".lora_B." in k for k in sent)


def test_load_shared_rejects_unknown_names_and_wrong_shapes(source_run: Path) -> None:
    model = initial_model(_cfg(source_run))
    with pytest.raises(ConfigError, match="not part of the model"):
        load_shared(model, {"head.extra": torch.zeros(1)})
    with pytest.raises(ConfigError, match="shape"):
        load_shared(model, {"head.bias": torch.zeros(3)})


def test_bytes_head_are_a_tiny_fraction_of_all(source_run: Path) -> None:
    pytest.importorskip("flwr")
    from transferkit.federated.client_app import to_record

    model = initial_model(_cfg(source_run))
    head = to_record(shared_state(model, _cfg(source_run, share="head"))).count_bytes()
    full = to_record(shared_state(model, _cfg(source_run, share="all"))).count_bytes()
    n_head = sum(p.numel() for p in model.head.parameters())
    assert head >= 4 * n_head  # float32 payload at least
    assert head / full < 0.05, (head, full)


def test_proximal_term_is_half_mu_squared_distance_to_the_global_weights(source_run: Path) -> None:
    """FedProx: extra_loss == (mu/2) * sum ||w - w_global||^2 over the trained shared tensors."""
    model = initial_model(_cfg(source_run))
    received = {k: v + 0.5 for k, v in shared_state(model, _cfg(source_run, share="all")).items()}
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    ctx = TransferContext(model, {}, (x, y), None, TrainConfig(epochs=1), lambda: model)
    wrapper = LocalRound(make_strategy("full"), received, mu=0.2)
    phase = next(wrapper.phases(ctx))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    expect = sum(((p - received[n]) ** 2).sum() for n, p in model.named_parameters()) * 0.1
    assert phase.extra_loss is not None
    torch.testing.assert_close(phase.extra_loss(), expect)
    # the received weights were loaded before training started
    assert wrapper.received["head.bias"].equal(received["head.bias"])
