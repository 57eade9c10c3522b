"""Every registered adaptation method through one set of checks, plus AdaBN and a "learns" test.

The contract, for each name in ``METHODS``: it trains from the shared pretrained source on real
mnist5k -> digits8 slices, the target reaches it as inputs only (no labels exist in the
context), outputs stay finite, the model changes and its ``state_dict`` keys are unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import transferkit
from transferkit.adaptation import METHODS, make_method
from transferkit.adaptation.base import AdaptContext, run_method
from transferkit.data import load_dataset
from transferkit.engine.config import TrainConfig
from transferkit.engine.precision import predict_logits, resolve_placement
from transferkit.errors import ConfigError
from transferkit.models import ModelSpec, build_model

Slices = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 1, "batch_size": 32, "precision": "fp32", "progress": "off", "seed": 0}
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("name", list(METHODS))
def test_method_contract(name: str, source_run: Path, source_slices: Slices,
                         target_inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = transferkit.load_run(source_run).model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (s_tr, s_va), (t_tr, t_va) = source_slices, target_inputs
    ctx = AdaptContext(model, s_tr, s_va, t_tr, t_va, _cfg())
    results = run_method(make_method(name), ctx)
    after = model.state_dict()
    assert set(after) == set(before)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, f"{name} changed nothing"
    if name == "adabn":
        assert all("running" in k or "num_batches" in k for k in changed)
    else:
        assert any(k.endswith("weight") for k in changed)
        assert all(r.epochs_run == 1 and np.isfinite(r.history[-1]["train_loss"]) for r in results)
        assert all(np.isfinite(r.history[-1]["val_acc"]) for r in results)  # the label-free validator score
    logits = predict_logits(model, t_va, resolve_placement(model, "fp32", "auto"))
    assert torch.isfinite(logits).all()


def test_adabn_on_a_backbone_without_batchnorm_is_a_clear_error() -> None:
    mlp = build_model(ModelSpec("mlp", (1, 28, 28), [str(i) for i in range(10)]), seed=0)
    with pytest.raises(ConfigError, match="adabn needs a backbone with BatchNorm.*'mlp' has none"):
        make_method("adabn").check(mlp)
    with pytest.raises(ConfigError, match="BatchNorm"):
        make_method("self_training", {"base": "adabn"}).check(mlp)


def test_adabn_uses_target_statistics(source_run: Path, target_inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = transferkit.load_run(source_run).model
    t_tr = target_inputs[0]
    ctx = AdaptContext(model, (t_tr[:2], torch.zeros(2, dtype=torch.long)), None, t_tr, None, _cfg())
    run_method(make_method("adabn"), ctx)
    bn = model.groups["conv1"][1]
    conv_out = model.groups["conv1"][0](t_tr)
    assert torch.allclose(bn.running_mean, conv_out.mean(dim=(0, 2, 3)), atol=1e-4)


def test_method_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="unknown dann option 'nope'"):
        make_method("dann", {"nope": "1"})
    with pytest.raises(ConfigError, match="entropy='maybe' is not a boolean"):
        make_method("cdan", {"entropy": "maybe"})
    assert make_method("cdan", {"entropy": "false"}).options.entropy is False
    with pytest.raises(ConfigError, match="threshold"):
        make_method("self_training", {"threshold": "1.5"})


def test_coral_learns_beyond_source_only(source_run: Path) -> None:
    """Seeded, real data: Deep CORAL on unlabelled digits8 beats continued source training on digits8."""
    src = load_dataset("mnist5k")
    tgt = load_dataset("digits8")
    rng = np.random.default_rng(0)
    s_idx, t_idx = rng.permutation(len(src))[:600], rng.permutation(len(tgt))
    s = (torch.from_numpy(src.x[s_idx]), torch.from_numpy(src.require_labels()[s_idx].astype(np.int64)))
    t_train, t_val = torch.from_numpy(tgt.x[t_idx[:600]]), torch.from_numpy(tgt.x[t_idx[600:800]])
    held_x, held_y = torch.from_numpy(tgt.x[t_idx[800:]]), tgt.require_labels()[t_idx[800:]]  # evaluation only
    accs = {}
    for name in ("source_only", "coral"):
        model = transferkit.load_run(source_run).model
        run_method(make_method(name), AdaptContext(model, s, None, t_train, t_val, _cfg(epochs=5)))
        pred = predict_logits(model, held_x, resolve_placement(model, "fp32", "auto")).argmax(1).numpy()
        accs[name] = float((pred == held_y).mean())
    assert accs["coral"] > accs["source_only"] + 0.03, accs  # measured: 0.764 vs 0.702 (seed 1: 0.797 vs 0.740)
