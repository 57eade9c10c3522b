"""Run by ``tests/engine/test_distributed.py`` under ``torchrun --nproc_per_node 2``; not a test module.

Usage: ``torchrun ... _ddp_worker.py SOURCE_RUN OUT_ROOT [transfer flags...]``. Every rank:

1. checks one training step against the one-process step (gradients and BatchNorm buffers;
   rank 0 computes the one-process reference on the whole global batch);
2. runs ``transferkit transfer`` (the CLI's ``main``, exactly what ``-m transferkit`` runs) with
   ``full`` and ``linear_probe`` into ``OUT_ROOT/<strategy>``;
3. interrupts a checkpointed ``fit`` after two epochs, resumes it, and compares the result with an
   uninterrupted run;
4. extracts features past the cache's memory budget (one shared memory-mapped file);

and writes ``OUT_ROOT/rank<r>.json``. Ranks other than 0 record every file they replace under
``OUT_ROOT`` (all of transferkit's writes are atomic renames): there must be none.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.cli import main
from transferkit.data import load_dataset
from transferkit.engine import distributed
from transferkit.engine.config import TrainConfig
from transferkit.engine.features import FeatureCache, _Features
from transferkit.engine.global_batch import global_batch
from transferkit.engine.loop import Phase, fit
from transferkit.engine.precision import predict_logits, resolve_placement
from transferkit.models import ModelSpec, TransferModel, build_model


def _small_cnn() -> TransferModel:
    return build_model(ModelSpec("small_cnn", (1, 28, 28), [str(i) for i in range(10)], {"width": 8, "hidden": 32}), 0)


def one_step_errors(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Max relative gradient / absolute buffer difference between this step and the one-process step."""
    model, ref = _small_cnn(), _small_cnn()
    model.train()
    ref.train()
    torch.manual_seed(5)
    ref_loss = nn.functional.cross_entropy(ref(x), y)
    ref_loss.backward()
    lo, hi = distributed.shard_bounds(len(x), distributed.world_size(), distributed.rank())
    torch.manual_seed(5)
    with global_batch(model, hi - lo, lo, len(x)):
        loss = nn.functional.cross_entropy(model(x[lo:hi]), y[lo:hi], reduction="sum") / len(x)
    loss.backward()
    total = distributed.sync_gradients(list(model.parameters()), loss.detach())
    out = {"loss": abs(total.item() - ref_loss.item())}
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        out[name] = ((p.grad - q.grad).abs().max() / q.grad.abs().max()).item()  # type: ignore[operator,union-attr]
    for (name, b), c in zip(model.named_buffers(), ref.buffers()):
        out[name] = (b.float() - c.float()).abs().max().item()
    return out


def spill_matches(x: torch.Tensor, root: Path) -> dict[str, Any]:
    """Features past the memory budget: one memory-mapped file, filled by both ranks, equal to
    the one-process features."""
    model = _small_cnn().eval()
    cache = FeatureCache(memory_budget=0, spill_dir=root / "spill")
    place = resolve_placement(model, "fp32", "auto")
    shared = cache.features(model, x, place)
    alone = predict_logits(_Features(model), x, place)  # this rank alone, every row
    return {"equal": bool(torch.equal(shared, alone)), "spilled": cache.spilled,
            "files": sorted(p.name for p in (root / "spill").iterdir())}


class _Stop(Exception):
    pass


def resume_matches(x: torch.Tensor, y: torch.Tensor, root: Path) -> bool:
    """A checkpointed 2-rank fit stopped after epoch 2 and resumed equals an uninterrupted one, bitwise."""
    cfg = TrainConfig(epochs=4, batch_size=32, precision="fp32", progress="off", patience=0, seed=3)
    val = (x[:64], y[:64])

    def run(ckpt: Path, stop_at: int | None) -> TransferModel:
        model = _small_cnn()

        def hook(epoch: int) -> None:
            if epoch == stop_at:
                raise _Stop

        phase = Phase("resume", model, (x, y), val, [{"params": list(model.parameters())}], on_epoch_start=hook)
        try:
            fit(phase, cfg, ckpt)
        except _Stop:
            pass
        return model

    whole = run(root / "ckpt-whole" / "phase", None)
    run(root / "ckpt-killed" / "phase", 2)
    resumed = run(root / "ckpt-killed" / "phase", None)
    a, b = whole.state_dict(), resumed.state_dict()
    return all(torch.equal(a[k], b[k]) for k in a)


def _spy(root: Path) -> list[str]:
    """Record every ``os.replace`` into ``root`` made by this process."""
    seen: list[str] = []
    real = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if str(dst).startswith(str(root)):
            seen.append(str(dst))
        real(src, dst, *args, **kwargs)

    os.replace = replace  # type: ignore[assignment]
    return seen


def run() -> None:
    torch.set_num_threads(1)
    source, root, flags = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    r = distributed.rank()
    written = _spy(root) if r != 0 else []
    ds = load_dataset("mnist5k")
    x, y = torch.from_numpy(ds.x[:192]).float(), torch.from_numpy(ds.require_labels()[:192].astype("int64"))
    report: dict[str, Any] = {"rank": r, "world": distributed.world_size(), "pid": os.getpid(),
                              "one_step": one_step_errors(x[:64], y[:64]), "codes": {}}
    for strategy in ("full", "linear_probe"):
        report["codes"][strategy] = main(["transfer", "--source", source, "--data", "digits8", "--strategy", strategy,
                                          "--out", str(root / strategy), *flags])
    report["resume_equal"] = resume_matches(x, y, root)
    report["spill"] = spill_matches(x, root)
    report["written_by_this_rank"] = list(written) if r != 0 else None
    (root / f"rank{r}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    run()
