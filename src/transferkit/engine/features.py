"""Frozen-backbone features, computed once and cached (in memory, keyed by weights and data)."""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from transferkit.engine import distributed
from transferkit.engine.precision import Placement, predict_logits, predict_sharded
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
    Under torchrun the ranks split the backbone passes and exchange the features
    (:func:`extract_features_shared`); all ranks hold the same entries.
    """

    def __init__(self, max_entries: int = 16, memory_budget: int | None = None, spill_dir: Path | None = None) -> None:
        """``memory_budget`` (bytes; default ``$TRANSFERKIT_CACHE_MEMORY`` or 2 GiB) caps the features
        held in RAM: entries past it stream into memory-mapped files under ``spill_dir`` (default: a
        temporary folder removed at exit) instead of failing."""
        self.max_entries = max_entries
        env = os.environ.get("TRANSFERKIT_CACHE_MEMORY")
        self.memory_budget = memory_budget if memory_budget is not None else int(env) if env else 2 << 30
        self.spill_dir = spill_dir
        self._store: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.spilled = 0

    def _in_ram(self) -> int:
        return sum(t.numel() * 4 for t in self._store.values() if not getattr(t, "_tk_spilled", False))

    def _spill_path(self, key: str) -> Path:
        if self.spill_dir is None:
            self.spill_dir = Path(tempfile.mkdtemp(prefix="transferkit-features-"))
            atexit.register(shutil.rmtree, self.spill_dir, True)
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        return self.spill_dir / f"{key.replace('|', '-').replace('=', '')}.f32"

    def features(self, model: TransferModel, x: torch.Tensor, place: Placement, desc: str = "features") -> torch.Tensor:
        """``model``'s features of ``x`` (:func:`extract_features`), from the cache when computed before;
        ``desc`` names the per-batch bar shown on a terminal while they are computed."""
        state = [v for _, v in sorted(model.state_dict().items()) if not _is_head(_)]
        key = fingerprint(*state, x) + f"|bf16={place.bf16}"
        if distributed.all_true(key in self._store):  # ranks agree, so all compute a miss together
            self.hits += 1
            self._store.move_to_end(key)
            return self._store[key]
        self.misses += 1
        free = max(0, self.memory_budget - self._in_ram())
        if distributed.world_size() > 1:
            feats = extract_features_shared(model, x, place, free, lambda: self._spill_path(key), desc)
        else:
            feats = extract_features(model, x, place, memory_budget=free, spill_to=lambda: self._spill_path(key),
                                     desc=desc)
        self.spilled += int(getattr(feats, "_tk_spilled", False))
        self._store[key] = feats
        if len(self._store) > self.max_entries:
            self._store.popitem(last=False)
        return feats


def _is_head(name: str) -> bool:
    return name.startswith("head.")


def extract_features(model: TransferModel, x: torch.Tensor, place: Placement, memory_budget: int | None = None,
                     spill_to: Path | Callable[[], Path] | None = None, desc: str = "features") -> torch.Tensor:
    """``model.forward_features`` over ``x`` in eval mode, as float32 on the CPU. Shape ``[N, D]``.

    When ``N * D * 4`` bytes exceed ``memory_budget``, the features stream batch by batch into a
    memory-mapped file at ``spill_to`` and the returned tensor is backed by that file. ``spill_to``
    may be a callable, called only when the features do spill (so no folder is made for nothing).
    On a terminal a per-batch bar named ``desc`` shows the progress (:mod:`transferkit.engine.progress`).
    """
    model.to(place.device)
    feats = _Features(model)
    if memory_budget is None or spill_to is None or len(x) == 0:
        return predict_logits(feats, x, place, desc=desc)
    first = predict_logits(feats, x[:1], place)
    if len(x) * first.shape[1] * 4 <= memory_budget:
        return predict_logits(feats, x, place, desc=desc)
    path = spill_to() if callable(spill_to) else spill_to
    mm = np.lib.format.open_memmap(path.with_suffix(".npy"), mode="w+", dtype=np.float32,
                                   shape=(len(x), first.shape[1]))

    def sink(start: int, out: torch.Tensor) -> None:
        mm[start : start + len(out)] = out.numpy()

    predict_logits(feats, x, place, sink=sink, desc=desc)
    mm.flush()
    out = torch.from_numpy(mm)
    out._tk_spilled = True  # type: ignore[attr-defined]
    return out


def extract_features_shared(model: TransferModel, x: torch.Tensor, place: Placement, memory_budget: int,
                            spill_to: Callable[[], Path], desc: str = "features") -> torch.Tensor:
    """:func:`extract_features` computed once across torchrun ranks: each rank runs its share of the
    128-sample batches (the same batches as one process, so the same features) and every rank
    receives all ``[N, D]`` rows. Past ``memory_budget`` the rows go into ONE memory-mapped file
    that rank 0 creates (``spill_to()`` is called on rank 0 only) and every rank fills its rows of;
    across several machines (no shared path) each rank extracts and spills on its own.
    """
    model.to(place.device)
    feats = _Features(model)
    if len(x) == 0:
        return predict_logits(feats, x, place)
    dim = predict_logits(feats, x[:1], place).shape[1]
    if len(x) * dim * 4 <= memory_budget:
        return predict_sharded(feats, x, place)
    if not distributed.single_node():
        return extract_features(model, x, place, memory_budget=memory_budget, spill_to=spill_to, desc=desc)
    path: Path = distributed.broadcast_object(spill_to().with_suffix(".npy") if distributed.is_main() else Path())
    if distributed.is_main():
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(x), dim)).flush()
    distributed.barrier()
    mm = np.load(path, mmap_mode="r+")
    lo, hi = distributed.batch_range(len(x), 128)

    def sink(start: int, out: torch.Tensor) -> None:
        mm[lo + start : lo + start + len(out)] = out.numpy()

    if hi > lo:
        predict_logits(feats, x[lo:hi], place, sink=sink, desc=desc)  # rank 0's share shows a bar
    mm.flush()
    distributed.barrier()
    out = torch.from_numpy(mm)
    out._tk_spilled = True  # type: ignore[attr-defined]
    return out


DEFAULT_CACHE = FeatureCache()
