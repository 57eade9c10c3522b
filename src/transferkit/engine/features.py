"""Frozen-backbone features, computed once and cached (in memory, keyed by weights and data)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch

from transferkit.engine.precision import Placement, predict_logits
from transferkit.models.base import TransferModel


class _Features(torch.nn.Module):
    def __init__(self, model: TransferModel) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)  # so eval_mode() restores the model's own mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def fingerprint(*tensors: torch.Tensor) -> str:
    """A content hash of tensors (weights or data) used as a cache key."""
    h = hashlib.sha1()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class FeatureCache:
    """An LRU cache of backbone features keyed by (backbone weights, input data, precision).

    Linear probing trains the head on cached features: one backbone pass per sample instead of
    one per sample per epoch. Several strategies on the same source and data share the entries.
    """

    def __init__(self, max_entries: int = 16) -> None:
        self.max_entries = max_entries
        self._store: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def features(self, model: TransferModel, x: torch.Tensor, place: Placement) -> torch.Tensor:
        state = [v for _, v in sorted(model.state_dict().items()) if not _is_head(_)]
        key = fingerprint(*state, x) + f"|bf16={place.bf16}"
        if key in self._store:
            self.hits += 1
            self._store.move_to_end(key)
            return self._store[key]
        self.misses += 1
        feats = extract_features(model, x, place)
        self._store[key] = feats
        if len(self._store) > self.max_entries:
            self._store.popitem(last=False)
        return feats


def _is_head(name: str) -> bool:
    return name.startswith("head.")


def extract_features(model: TransferModel, x: torch.Tensor, place: Placement) -> torch.Tensor:
    """``model.forward_features`` over ``x`` in eval mode, as float32 on the CPU. Shape ``[N, D]``."""
    model.to(place.device)
    return predict_logits(_Features(model), x, place)


DEFAULT_CACHE = FeatureCache()
