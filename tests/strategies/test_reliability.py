"""Divergence recovery and bit-identical determinism, per strategy family."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.data import ArrayDataset
from transferkit.errors import ConfigError, DataError
from transferkit.engine.loop import DivergenceError
from transferkit.strategies import TransferContext, run_strategy
from transferkit.strategies.base import Strategy
from transferkit.engine.config import TrainConfig
from transferkit.runs import load_run

FAMILIES = ["scratch", "linear_probe", "lp_ft", "l2sp", "gradual_unfreeze", "wise_ft"]


@pytest.mark.parametrize("strategy", FAMILIES)
def test_same_seed_gives_bit_identical_metrics(source_run: Path, strategy: str) -> None:
    src = load_run(source_run)
    kw = dict(strategy=strategy, shots=3, seed=3, epochs=3)
    a = transferkit.transfer(src, "digits8", **kw).metrics
    b = transferkit.transfer(src, "digits8", **kw).metrics
    assert a["target"] == b["target"]
    assert [p["best_val_acc"] for p in a["phases"]] == [p["best_val_acc"] for p in b["phases"]]


class _Explodes(Strategy):
    """Fine-tunes with an extra loss that is NaN while the learning rate is above a threshold."""

    name = "explodes"

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def phases(self, ctx: TransferContext):  # type: ignore[no-untyped-def]
        from transferkit.strategies.base import finetune_phase

        phase = finetune_phase(ctx, [(n, 1.0) for n, _ in ctx.model.layer_groups()])
        phase.extra_loss = lambda: torch.tensor(math.nan if (phase.lr or ctx.cfg.lr) > self.threshold else 0.0)
        yield phase


def _ctx(source_run: Path, digits_fewshot) -> TransferContext:  # type: ignore[no-untyped-def]
    src = load_run(source_run)
    (x, y), val = digits_fewshot
    return TransferContext(src.model, {}, (x, y), val, TrainConfig(epochs=2, lr=1e-3), lambda: src.model)


def test_divergence_retries_with_lower_lr_and_records_it(source_run: Path, digits_fewshot) -> None:  # type: ignore[no-untyped-def]
    ctx = _ctx(source_run, digits_fewshot)
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    run_strategy(_Explodes(threshold=5e-5), ctx)  # 1e-3 -> 1e-4 (NaN again) -> 1e-5 trains
    retries = ctx.info["divergence"]
    assert [r["retry_lr"] for r in retries] == pytest.approx([1e-4, 1e-5])
    assert all(torch.isfinite(v.float()).all() for v in ctx.model.state_dict().values())
    assert any(not torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())


def test_divergence_gives_up_with_a_clear_message(source_run: Path, digits_fewshot) -> None:  # type: ignore[no-untyped-def]
    ctx = _ctx(source_run, digits_fewshot)
    with pytest.raises(DivergenceError, match="gave up after 2 retries"):
        run_strategy(_Explodes(threshold=0.0), ctx)
    assert len(ctx.info["divergence"]) == 3


# ------------------------------------------------------------------------------ options and data that cannot be right


def test_partial_k_beyond_the_models_layer_groups_is_refused_before_anything_is_written(source_run: Path,
                                                                                         tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"partial: k=99 but small_cnn has 4 layer groups \(conv1, conv2, fc, head\)"):
        transferkit.transfer(source_run, "digits8", strategy="partial", options={"k": "99"}, out=tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_head_keep_with_equal_counts_but_other_names_shows_both(source_run: Path, digits_ds: ArrayDataset,
                                                                 tmp_path: Path) -> None:
    letters = np.array(list("abcdefghij"))
    idx = np.concatenate([np.flatnonzero(digits_ds.y == c)[:6] for c in range(10)])
    np.savez(tmp_path / "letters.npz", x=digits_ds.x[idx], y=digits_ds.y[idx], class_names=letters)
    with pytest.raises(ConfigError) as info:
        transferkit.transfer(source_run, str(tmp_path / "letters.npz"), strategy="linear_probe", head="keep")
    msg = str(info.value)
    assert "both have 10 classes but their names differ" in msg
    assert "source: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9; data: a, b, c, d, e, f, g, h, i, j" in msg


def test_training_on_one_class_is_refused_naming_the_data_and_class(digits_ds: ArrayDataset, tmp_path: Path) -> None:
    idx = np.flatnonzero(digits_ds.y == 7)[:30]
    np.savez(tmp_path / "sevens.npz", x=digits_ds.x[idx], y=digits_ds.y[idx])
    with pytest.raises(DataError, match=r"sevens\.npz: only one class \('7'\)"):
        transferkit.pretrain(str(tmp_path / "sevens.npz"), out=tmp_path / "run", epochs=1)
    assert not (tmp_path / "run").exists()
