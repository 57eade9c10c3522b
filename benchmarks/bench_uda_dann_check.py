"""Hand check of why DANN underperformed: one pair, one seed, the training recipe varied one knob at a time.

Pre-trains (or reuses) the default ``small_cnn`` on mnist5k under ``runs/uda/`` and adapts it to
digits8 with ``dann`` (and ``source_only`` as the reference), printing the held-out target
accuracy and the per-epoch label-free validator score (IM) that picks the checkpoint::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_uda_dann_check.py [variant ...]

Variants: ``adamw`` (the old default: AdamW lr 1e-3, bf16 autocast, grad clip 1), ``fp32``,
``noclip``, ``disc10`` (discriminator lr x10), ``w01`` (trade-off 0.1), ``sgd`` (the new default:
SGD Nesterov momentum 0.9, lr 0.01), ``source_only``, ``sgd_aug`` / ``mcc_aug`` (600 iterations
over the whole source with augmented source batches, as benchmarks/uda.py runs them).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

import transferkit as tk
from transferkit.adaptation import base
from transferkit.adaptation.api import adapt

ROOT = Path(__file__).resolve().parents[1]
ADAMW = {"optimizer": "adamw", "lr": 1e-3}
VARIANTS: dict[str, tuple[str, dict[str, str] | None, dict[str, Any]]] = {
    "adamw": ("dann", None, ADAMW),
    "fp32": ("dann", None, {**ADAMW, "precision": "fp32"}),
    "noclip": ("dann", None, {**ADAMW, "grad_clip": 0.0}),
    "disc10": ("dann", None, ADAMW),
    "w01": ("dann", {"trade_off": "0.1"}, ADAMW),
    "sgd": ("dann", None, {}),
    "source_only": ("source_only", None, {}),
    # the benchmark's recipe: an iteration budget (not epochs over a capped source) and augmented source batches
    "sgd_aug": ("dann", None, {"iterations": 600, "augment": True, "max_source": None}),
    "mcc_aug": ("mcc", None, {"iterations": 600, "augment": True, "max_source": None}),
}


_INIT = base.AdaptContext.__init__


def _with_disc_lr(scale: float) -> Any:
    """``AdaptContext.__init__`` with ``disc_lr_scale`` set (``adapt()`` does not expose it)."""

    def init(self: base.AdaptContext, *a: Any, **k: Any) -> None:
        _INIT(self, *a, **k)
        self.disc_lr_scale = scale

    return init


def main() -> None:
    torch.set_num_threads(1)  # the machine is shared
    src = ROOT / "runs" / "uda" / "src-mnist5k-e5"
    if not (src / "model.safetensors").exists():
        tk.pretrain("mnist5k", out=src, epochs=5, overwrite=True, progress="off")
    for v in sys.argv[1:] or list(VARIANTS):
        method, opts, train = VARIANTS[v]
        base.AdaptContext.__init__ = _with_disc_lr(10.0 if v == "disc10" else 1.0)
        t0 = time.perf_counter()
        kw: dict[str, Any] = {"max_source": 2000, "epochs": 5, **train}
        r = adapt(src, "mnist5k", "digits8", method=method, options=opts, target_labels_for_eval="digits8",
                  seed=0, progress="off", restyle_source=False, **kw)  # as measured: no re-styling
        scores = [round(h["val_acc"], 2) for h in r.history[0]["history"]]
        print(f"{v:12s} {method:12s} target {r.metrics['target']['accuracy']:.3f} "
              f"(before {r.metrics['target_before']['accuracy']:.3f}) IM per epoch {scores} "
              f"best epoch {r.history[0]['best_epoch']} {time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
