"""Linear probe on cached features vs re-running the frozen backbone every epoch.

(a) transferkit's way (:func:`transferkit.strategies.base.probe_phase`): the frozen backbone runs
    once over the training and validation inputs (a fresh :class:`FeatureCache`, so the timed run
    pays the extraction and the cache-key hashing), then ``fit`` trains the head on the features.
(b) the same probe, but ``fit`` trains ``frozen backbone + head``: the backbone (eval mode, no
    grad) runs over every batch of every epoch, and over the validation split after each epoch.

Both use the same head initialisation, learning rate, epochs, seed, shuffling and precision
setting: the backbone in the placement ``auto`` resolves for it (bf16 + channels-last on an AMX
CPU), the head in fp32, as ``probe_phase`` does.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench_common import Spread, interleave, pair_ratios
from transferkit.data import ArrayDataset
from transferkit.engine.config import TrainConfig
from transferkit.engine.features import FeatureCache
from transferkit.engine.loop import Phase, fit
from transferkit.engine.precision import Placement
from transferkit.evaluation.evaluate import evaluate_model
from transferkit.models.base import TransferModel
from transferkit.strategies.base import TransferContext, probe_phase, set_trainable

Arrays = tuple[torch.Tensor, torch.Tensor]


class FrozenBackboneProbe(nn.Module):
    """``model.head(model.forward_features(x))`` with the backbone frozen: eval mode, no grad, fp32 head."""

    def __init__(self, model: TransferModel) -> None:
        super().__init__()
        self.model = model

    def train(self, mode: bool = True) -> FrozenBackboneProbe:
        super().train(mode)
        self.model.groups.eval()  # dropout/BatchNorm of the backbone behave as at feature extraction
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = self.model.forward_features(x).float()
        with torch.autocast(x.device.type, enabled=False):
            return self.model.head(feats)


def _target_model(source: TransferModel, class_names: list[str], seed: int) -> TransferModel:
    model = copy.deepcopy(source)
    torch.manual_seed(seed)
    model.reset_head(class_names)
    return model


def _probes(source: TransferModel, train: Arrays, val: Arrays, class_names: list[str], cfg: TrainConfig,
            epochs: int, extract_seconds: list[float] | None = None) -> dict[str, Callable[[], TransferModel]]:
    def context(model: TransferModel, cache: FeatureCache) -> TransferContext:
        return TransferContext(model, {}, train, val, cfg, fresh_model=lambda: model, cache=cache, probe_epochs=epochs)

    def cached() -> TransferModel:
        model = _target_model(source, class_names, cfg.seed)
        t0 = time.perf_counter()
        phase = probe_phase(context(model, FeatureCache()))  # extracts (and hashes) the features
        if extract_seconds is not None:
            extract_seconds.append(time.perf_counter() - t0)
        fit(phase, cfg)
        return model

    def rerun() -> TransferModel:
        model = _target_model(source, class_names, cfg.seed)
        ref = probe_phase(context(model, _NoCache()))  # the very same lr, epochs and parameter groups
        set_trainable(model, list(model.head.parameters()))
        fit(Phase("probe_rerun", FrozenBackboneProbe(model), train, val, ref.param_groups, epochs=ref.epochs,
                  batch_size=ref.batch_size,
                  lr=ref.lr), cfg)
        return model

    return {"cached": cached, "rerun": rerun}


def bench_probe(source: TransferModel, train: Arrays, val: Arrays, test: ArrayDataset, cfg: TrainConfig,
                epochs: int, rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Time (a) cached and (b) re-run probes in interleaved rounds; test accuracy of each."""
    names = test.class_names
    for warm in _probes(source, (train[0][:128], train[1][:128]), val, names, cfg, 1).values():
        warm()  # untimed: oneDNN builds its kernels on first use
    extract: list[float] = []
    runs = interleave(_probes(source, train, val, names, cfg, epochs, extract), rounds, log)
    out: dict[str, Any] = {"epochs": epochs, "n_train": len(train[0]), "n_val": len(val[0]), "rounds": rounds}
    for name, rs in runs.items():
        secs = [s for s, _ in rs]
        accs = [evaluate_model(m, test, len(names))["accuracy"] for _, m in rs]
        out[name] = {"seconds": secs, "seconds_spread": Spread.of(secs).as_dict(), "test_accuracy": accs}
    out["cached"]["extract_seconds"] = extract
    out["cached"]["extract_seconds_spread"] = Spread.of(extract).as_dict()
    out["speedup"] = Spread.of(pair_ratios(out["rerun"]["seconds"], out["cached"]["seconds"])).as_dict()
    return out


class _NoCache(FeatureCache):
    """A cache that hands the inputs back unchanged: used only to read ``probe_phase``'s settings."""

    def features(self, model: TransferModel, x: torch.Tensor, place: Placement) -> torch.Tensor:
        return x
