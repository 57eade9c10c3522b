"""Training speed: the engine's ``fit`` against hand-written loops that do the same steps.

* engine overhead -- ``fit`` with the default placement vs a minimal loop with the same placement;
* precision -- ``fit`` with its defaults (bf16 autocast + channels-last where it pays, fused
  optimiser kernels, subnormals flushed to zero) vs the seed's plain loop: fp32, contiguous
  tensors, the default for-each AdamW, the CPU's default subnormal handling; and a tuned fp32 loop
  (fused + flushed, no bf16 / channels-last) that splits the speed-up into its two sources.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench_common import Spread, interleave, pair_ratios
from transferkit.engine.config import TrainConfig
from transferkit.engine.loop import Phase, fit
from transferkit.engine.precision import resolve_placement
from transferkit.models.base import TransferModel

Arrays = tuple[torch.Tensor, torch.Tensor]


def _cosine(step: int, total: int) -> float:
    """The engine's default schedule, written out: 5% linear warm-up, then cosine to zero."""
    t, warm = step / max(1, total), 0.05
    if t < warm:
        return (step + 1) / max(1, warm * total)
    return 0.5 * (1 + math.cos(math.pi * (t - warm) / (1 - warm)))


@torch.inference_mode()
def _val_logits(model: nn.Module, x: torch.Tensor, bf16: bool, cl: bool, bs: int = 512) -> torch.Tensor:
    model.eval()
    outs = []
    for i in range(0, len(x), bs):
        xb = x[i : i + bs]
        xb = xb.contiguous(memory_format=torch.channels_last) if cl else xb
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outs.append(model(xb).float())
    return torch.cat(outs)


def hand_loop(model: TransferModel, train: Arrays, val: Arrays, cfg: TrainConfig, bf16: bool, cl: bool,
              tuned: bool = True) -> None:
    """A minimal PyTorch loop doing what ``fit`` does with ``cfg``'s defaults, nothing more.

    AdamW (one parameter group per layer group, as the strategies build them), per-step cosine
    learning rate with warm-up, cross-entropy, gradient-norm clipping, one seeded ``randperm`` per
    epoch, a validation pass per epoch keeping the best weights. No checkpoints, no progress bar,
    no divergence check, no loss logging. ``tuned``: fused AdamW and subnormals flushed to zero,
    as ``fit`` does on the CPU; without it, the default for-each AdamW and subnormal arithmetic.
    """
    torch.set_flush_denormal(tuned)
    try:
        _hand_loop(model, train, val, cfg, bf16, cl, tuned)
    finally:
        torch.set_flush_denormal(False)


def _hand_loop(model: TransferModel, train: Arrays, val: Arrays, cfg: TrainConfig, bf16: bool, cl: bool,
               tuned: bool) -> None:
    if cl:
        model.to(memory_format=torch.channels_last)
    x, y = train
    x = x.contiguous(memory_format=torch.channels_last) if cl else x
    n, bs = len(x), min(cfg.batch_size, len(x))
    steps = n // bs if n % bs == 1 else math.ceil(n / bs)
    total = steps * cfg.epochs
    opt = torch.optim.AdamW([{"params": list(m.parameters())} for _, m in model.layer_groups()],
                            lr=cfg.lr, weight_decay=cfg.weight_decay, fused=tuned)
    params = list(model.parameters())
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    best_acc, best_loss, best = -1.0, math.inf, None
    step = 0
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(steps):
            idx = perm[i * bs : (i + 1) * bs] if i < steps - 1 else perm[i * bs :]
            lr = cfg.lr * _cosine(step, total)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(x[idx])
            loss = nn.functional.cross_entropy(out.float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step += 1
        logits = _val_logits(model, val[0], bf16, cl)
        acc = (logits.argmax(1) == val[1]).float().mean().item()
        vloss = nn.functional.cross_entropy(logits, val[1]).item()
        if acc > best_acc or (acc == best_acc and vloss < best_loss):
            best_acc, best_loss = acc, vloss
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best is not None:
        model.load_state_dict(best)
    if cl:
        model.to(memory_format=torch.contiguous_format)


def engine_run(model: TransferModel, train: Arrays, val: Arrays, cfg: TrainConfig) -> None:
    groups = [{"params": list(m.parameters())} for _, m in model.layer_groups()]
    fit(Phase("bench", model, train, val, groups), cfg)


def accuracy(model: nn.Module, test: Arrays) -> float:
    place = resolve_placement(model, "auto", "auto")
    logits = _val_logits(model, test[0], place.bf16, place.channels_last)
    return (logits.argmax(1) == test[1]).float().mean().item()


def _variants(fresh: Callable[[], TransferModel], train: Arrays, val: Arrays, cfg: TrainConfig,
              which: list[str]) -> dict[str, Callable[[], TransferModel]]:
    place = resolve_placement(fresh(), cfg.precision, cfg.channels_last, cfg.device)

    def make(kind: str) -> Callable[[], TransferModel]:
        def run() -> TransferModel:
            m = fresh()
            if kind == "engine":
                engine_run(m, train, val, cfg)
            elif kind == "hand":
                hand_loop(m, train, val, cfg, place.bf16, place.channels_last)
            elif kind == "tuned_fp32":  # fused + flushed, fp32, contiguous
                hand_loop(m, train, val, cfg, False, False)
            else:  # the seed's loop: fp32, contiguous, for-each AdamW, subnormal arithmetic
                hand_loop(m, train, val, cfg, False, False, tuned=False)
            return m

        return run

    return {k: make(k) for k in which}


def _warm_up(fresh: Callable[[], TransferModel], train: Arrays, val: Arrays, cfg: TrainConfig, which: list[str]) -> None:
    """One short untimed run of each variant (oneDNN builds its kernels on first use)."""
    small = (train[0][:256], train[1][:256])
    short = dataclasses.replace(cfg, epochs=1)
    for run in _variants(fresh, small, val, short, which).values():
        run()


def bench_training(fresh: Callable[[], TransferModel], train: Arrays, val: Arrays, test: Arrays,
                   cfg: TrainConfig, rounds: int, which: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    """Interleaved rounds of the chosen variants (``engine``, ``hand``, ``plain_fp32``, ``tuned_fp32``), timed whole."""
    _warm_up(fresh, train, val, cfg, which)
    runs = interleave(_variants(fresh, train, val, cfg, which), rounds, log)
    out: dict[str, Any] = {"epochs": cfg.epochs, "n_train": len(train[0]), "n_val": len(val[0]),
                           "batch_size": cfg.batch_size, "rounds": rounds, "variants": {}}
    for name, rs in runs.items():
        secs = [s for s, _ in rs]
        out["variants"][name] = {"seconds": secs, "seconds_spread": Spread.of(secs).as_dict(),
                                 "test_accuracy": [accuracy(m, test) for _, m in rs]}
    if "engine" in runs and "hand" in runs:
        m_e, m_h = runs["engine"][0][1], runs["hand"][0][1]
        diff = max((a - b).abs().max().item() for a, b in zip(m_e.state_dict().values(), m_h.state_dict().values())
                   if a.is_floating_point())
        out["engine_vs_hand_max_weight_diff"] = diff
    return out


def ratio(result: dict[str, Any], num: str, den: str) -> Spread:
    v = result["variants"]
    return Spread.of(pair_ratios(v[num]["seconds"], v[den]["seconds"]))
