"""One client's round: which weights are shared, and local training through a registered strategy.

What travels (``share``) decides the local strategy, so a client never trains what it cannot send:

=========  ==================  ====================================================================
share      local strategy      tensors sent (state-dict names of the model)
=========  ==================  ====================================================================
``head``   ``linear_probe``    ``head.*`` only; the backbone stays the source's (features cached)
``lora``   ``lora``            the LoRA matrices (``*.lora_A.*``, ``*.lora_B.*``) and ``head.*``
``all``    ``full``            every parameter and BatchNorm running statistic
=========  ==================  ====================================================================

With ``personal_head`` the ``head.*`` tensors stay on the client (FedPer, Arivazhagan et al.,
2019). LoRA factors are averaged separately, as in FedIT (Zhang et al., 2024); note
``mean(B) mean(A) != mean(B A)``. FedProx (Li et al., MLSys 2020) adds
``(mu / 2) * sum_k ||w_k - w_k^global||^2`` over the shared trained tensors through the engine's
``Phase.extra_loss`` hook; the loop itself is :func:`transferkit.engine.fit`, reached via
:func:`transferkit.strategies.run_strategy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from transferkit.engine.config import TrainConfig
from transferkit.engine.features import DEFAULT_CACHE
from transferkit.engine.loop import Phase
from transferkit.errors import ConfigError
from transferkit.federated.clients import ClientData
from transferkit.federated.config import FedConfig
from transferkit.models import TransferModel
from transferkit.strategies import STRATEGIES, Strategy, TransferContext, make_strategy, run_strategy

LOCAL_STRATEGY = {"head": "linear_probe", "lora": "lora", "all": "full"}


def require_share(share: str) -> None:
    """``lora`` needs the ``lora`` strategy (``transferkit.strategies.peft``)."""
    if share == "lora" and "lora" not in STRATEGIES:
        raise ConfigError("share=lora needs the 'lora' strategy, which this installation does not register")


def is_shared(name: str, share: str, personal_head: bool) -> bool:
    """Does the state-dict entry ``name`` travel under ``share``?"""
    if name.startswith("head."):
        return not personal_head
    if name.endswith("num_batches_tracked"):
        return False
    if share == "all":
        return True
    return share == "lora" and ".lora_" in name


def sharing_form(model: TransferModel, cfg: FedConfig) -> TransferModel:
    """``model`` with the shared tensors present: LoRA layers injected (unmerged) for ``share=lora``."""
    if cfg.share == "lora":
        from transferkit.strategies.peft import LoRAOptions, inject_lora, lora_targets

        o = LoRAOptions()
        inject_lora(model, o.r, o.alpha, o.dropout, lora_targets(model, o.patterns), seed=cfg.seed)
    return model


def shared_state(model: TransferModel, cfg: FedConfig) -> dict[str, torch.Tensor]:
    """The tensors of ``model`` (in sharing form) that travel, detached on the CPU, in state-dict order."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if is_shared(k, cfg.share, cfg.personal_head)}


def load_shared(model: TransferModel, tensors: dict[str, torch.Tensor]) -> None:
    """Copy received tensors into ``model``; every name and shape must match (no silent partial load)."""
    own = model.state_dict()
    for k, v in tensors.items():
        if k not in own:
            raise ConfigError(f"received tensor '{k}' is not part of the model")
        if own[k].shape != v.shape:
            raise ConfigError(f"received tensor '{k}' has shape {tuple(v.shape)}, the model's is {tuple(own[k].shape)}")
    model.load_state_dict(tensors, strict=False)


class LocalRound(Strategy):
    """Wrap a strategy for one federated round: start from the received weights; add FedProx's term.

    The received tensors are loaded before each phase (LoRA matrices exist only once the inner
    strategy has injected them); phases, epochs and learning rates are the inner strategy's.
    """

    name = "federated_round"

    def __init__(self, inner: Strategy, received: dict[str, torch.Tensor], mu: float = 0.0) -> None:
        super().__init__()
        self.inner = inner
        self.received = received
        self.mu = mu

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        for phase in self.inner.phases(ctx):
            names = set(ctx.model.state_dict())
            load_shared(ctx.model, {k: v for k, v in self.received.items() if k in names})
            if self.mu > 0:
                phase.extra_loss = self._proximal(ctx.model, phase)
            yield phase

    def _proximal(self, model: TransferModel, phase: Phase) -> Any:
        by_id = {id(p): n for n, p in model.named_parameters()}
        trained = [p for g in phase.param_groups for p in g["params"]]
        pairs = [(p, self.received[by_id[id(p)]]) for p in trained if by_id.get(id(p)) in self.received]
        if not pairs:
            return phase.extra_loss
        dev = pairs[0][0].device
        anchors = [(p, a.to(dev)) for p, a in pairs]
        mu, previous = self.mu, phase.extra_loss

        def proximal() -> torch.Tensor:
            term = sum(((p - a) ** 2).sum() for p, a in anchors)
            loss = (mu / 2) * term
            return loss + previous() if previous is not None else loss

        return proximal

    def finish(self, ctx: TransferContext) -> None:
        self.inner.finish(ctx)


def train_round(model: TransferModel, data: ClientData, cfg: FedConfig, received: dict[str, torch.Tensor],
                mu: float, round_seed: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train ``model`` (the client's starting model, not in sharing form) for one round.

    Returns the shared tensors after training and a summary of the local phases.
    """
    strategy = make_strategy(LOCAL_STRATEGY[cfg.share])
    tc = TrainConfig(**{"progress": "off", **cfg.train_overrides, "epochs": cfg.local_epochs, "seed": round_seed})
    ctx = TransferContext(model, {}, data.train, data.val, tc, lambda: model, cache=DEFAULT_CACHE,
                          probe_epochs=cfg.probe_epochs)
    results = run_strategy(LocalRound(strategy, received, mu), ctx)
    if cfg.share == "lora":  # the strategy merged LoRA into the base weights; its adapter holds the factors
        adapter = strategy.adapter  # type: ignore[attr-defined]
        sent = {k: v.detach().cpu() for k, v in adapter.tensors.items() if is_shared(k, "lora", cfg.personal_head)}
    else:
        sent = shared_state(ctx.model, cfg)
    summary = {"epochs": sum(r.epochs_run for r in results), "seconds": sum(r.seconds for r in results)}
    return sent, summary
