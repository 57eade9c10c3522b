"""``auto``: choose the strategy from cheap signals, then (budget allowing) successive halving."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from transferkit.engine.loop import Phase
from transferkit.errors import ConfigError
from transferkit.strategies.base import Strategy, TransferContext, run_strategy


@dataclass
class AutoOptions:
    budget: float = field(default=0.0, metadata={"help": "seconds for a successive-halving search over the top candidates (0 = rules only)"})
    margin: float = field(default=0.05, metadata={"help": "negative-transfer guard: pick scratch when raw inputs beat frozen features by this much"})

    def __post_init__(self) -> None:
        if self.budget < 0 or not math.isfinite(self.budget):
            raise ConfigError(f"auto: budget must be >= 0 seconds, got {self.budget}")


def nearest_mean_accuracy(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray) -> float:
    """Accuracy of a nearest-class-mean classifier (cosine) fitted on ``x_tr``; shapes ``[N, D]``."""
    def norm(a: np.ndarray) -> np.ndarray:
        a = a - x_tr.mean(0)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    classes = np.unique(y_tr)
    means = np.stack([norm(x_tr)[y_tr == c].mean(0) for c in classes])
    pred = classes[(norm(x_te) @ means.T).argmax(1)]
    return float((pred == y_te).mean())


def candidates_for(shots: int) -> list[str]:
    """The prior order of strategies by labelled examples per class (few shots: keep features)."""
    if shots <= 2:
        return ["lp_ft", "linear_probe", "wise_ft"]
    if shots <= 20:
        return ["lp_ft", "l2sp", "layerwise_lr"]
    return ["full", "layerwise_lr", "lp_ft"]


class Auto(Strategy):
    """Pick a strategy from the data: shots per class, frozen-feature vs raw-input probes (negative
    transfer guard), then, within ``budget`` seconds, successive halving on validation accuracy."""

    name = "auto"
    Options = AutoOptions

    def signals(self, ctx: TransferContext) -> dict[str, Any]:
        from transferkit.transferability import logme

        x, y = ctx.train
        place = ctx.placement()
        f_tr = ctx.cache.features(ctx.model, x, place).numpy()
        y_np = y.numpy()
        sig: dict[str, Any] = {"shots_per_class": int(np.bincount(y_np).min()), "classes": int(y_np.max()) + 1,
                               "n_train": len(y_np), "parameters": sum(p.numel() for p in ctx.model.parameters())}
        sig["logme_features"] = logme(f_tr.astype(np.float64), y_np)
        if ctx.val is not None:
            f_va = ctx.cache.features(ctx.model, ctx.val[0], place).numpy()
            raw_tr, raw_va = x.reshape(len(x), -1).numpy(), ctx.val[0].reshape(len(ctx.val[0]), -1).numpy()
            yv = ctx.val[1].numpy()
            sig["probe_features"] = nearest_mean_accuracy(f_tr, y_np, f_va, yv)
            sig["probe_raw_inputs"] = nearest_mean_accuracy(raw_tr, y_np, raw_va, yv)
        return sig

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        from transferkit.strategies import make_strategy

        t0 = time.perf_counter()
        sig = self.signals(ctx)
        info: dict[str, Any] = {"signals": sig}
        gap = sig.get("probe_features", 1.0) - sig.get("probe_raw_inputs", 0.0)
        if gap < -self.options.margin:
            cands = ["scratch"]
            info["reason"] = (f"negative transfer guard: raw inputs ({100 * sig['probe_raw_inputs']:.1f}%) beat the "
                              f"frozen source features ({100 * sig['probe_features']:.1f}%) in a nearest-mean probe")
        else:
            cands = candidates_for(sig["shots_per_class"])
            info["reason"] = (f"{sig['shots_per_class']} labelled examples per class; source features "
                              f"{'help' if gap > 0 else 'roughly tie'} (probe gap {100 * gap:+.1f} pt)")
        info["candidates"] = cands
        if len(cands) > 1 and self.options.budget > 0 and ctx.val is not None:
            cands, info["halving"] = self._halve(ctx, cands, t0)
        choice = cands[0]
        info.update(choice=choice, decision_seconds=time.perf_counter() - t0)
        ctx.info["auto"] = info
        inner = make_strategy(choice)
        yield from inner.phases(ctx)
        self._inner = inner

    def finish(self, ctx: TransferContext) -> None:
        self._inner.finish(ctx)

    def _halve(self, ctx: TransferContext, cands: list[str], t0: float) -> tuple[list[str], list[dict[str, Any]]]:
        """Successive halving: short runs of every candidate, keep the better half, double the epochs."""
        from transferkit.strategies import make_strategy

        rounds: list[dict[str, Any]] = []
        epochs = max(2, ctx.cfg.epochs // 8)
        while len(cands) > 1 and time.perf_counter() - t0 < self.options.budget:
            scores: dict[str, float] = {}
            for name in cands:
                sub = replace(ctx, model=copy.deepcopy(ctx.model), cfg=replace(ctx.cfg, epochs=epochs, progress="off"),
                              probe_epochs=max(epochs, ctx.probe_epochs // 4), results=[], info={})
                run_strategy(make_strategy(name), sub)
                scores[name] = max(r.best_val_acc for r in sub.results)
                if time.perf_counter() - t0 > self.options.budget:
                    break
            ranked = sorted(scores, key=lambda n: (-scores[n], cands.index(n)))
            rounds.append({"epochs": epochs, "val_acc": scores, "seconds": time.perf_counter() - t0})
            cands = ranked[: max(1, math.ceil(len(ranked) / 2))]
            epochs *= 2
        torch.manual_seed(ctx.cfg.seed)
        return cands, rounds
