"""Domain-specific BatchNorm, the mean teacher and the class-balance loss: math against NumPy /
by-hand references, and the methods' options (``domain_bn``, ``ema``, ``class_balance``) through
the method contract on real slices."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import transferkit
from transferkit.adaptation import make_method
from transferkit.adaptation.base import AdaptContext, run_method
from transferkit.adaptation.functional import class_balance_loss
from transferkit.adaptation.regularization import self_training_loss
from transferkit.adaptation.teacher import domain_bn_forward, ema_update, frozen_running_stats
from transferkit.engine.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.models import ModelSpec, build_model

Slices = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _cnn(seed: int = 0) -> Any:
    return build_model(ModelSpec("small_cnn", (1, 28, 28), [str(i) for i in range(10)], {"width": 4, "hidden": 16}),
                       seed=seed)


def test_ema_update_matches_numpy() -> None:
    teacher, student = _cnn(0), _cnn(1)
    student.groups["conv1"][1].running_mean.normal_()
    t0 = [p.detach().numpy().copy() for p in teacher.parameters()]
    s0 = [p.detach().numpy().copy() for p in student.parameters()]
    ema_update(teacher, student, 0.9)
    for pt, a, b in zip(teacher.parameters(), t0, s0, strict=True):
        np.testing.assert_allclose(pt.detach().numpy(), 0.9 * a + 0.1 * b, rtol=1e-6, atol=1e-7)
    for bt, bs in zip(teacher.buffers(), student.buffers(), strict=True):
        assert torch.equal(bt, bs)


def test_frozen_running_stats_normalise_by_the_batch_but_keep_the_statistics() -> None:
    bn = nn.BatchNorm1d(3)
    bn.running_mean.fill_(5.0)
    x = torch.randn(8, 3) * 2 + 1
    with frozen_running_stats(bn):
        y = bn(x)
    assert torch.equal(bn.running_mean, torch.full((3,), 5.0)) and torch.equal(bn.running_var, torch.ones(3))
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 0
    xn = x.numpy().astype(np.float64)
    ref = (xn - xn.mean(0)) / np.sqrt(xn.var(0) + bn.eps)  # batch statistics (biased variance), as in training
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-4, atol=1e-5)


def test_domain_bn_forward_separates_the_domains(source_slices: Slices,
                                                 target_inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    xs, xt = source_slices[0][0][:16], target_inputs[0][:16]
    model = _cnn().train()
    model.groups["fc"][1].p = 0.0  # no dropout: outputs are deterministic
    ref_s, ref_t = copy.deepcopy(model), copy.deepcopy(model)
    _, zs, _, zt = domain_bn_forward(model, xs, xt)
    assert torch.allclose(zs, ref_s(xs), atol=1e-5)  # source normalised by its own batch
    assert torch.allclose(zt, ref_t(xt), atol=1e-5)  # target by its own
    for bn, bt in zip([m for m in model.modules() if isinstance(m, nn.BatchNorm2d)],
                      [m for m in ref_t.modules() if isinstance(m, nn.BatchNorm2d)], strict=True):
        assert torch.allclose(bn.running_mean, bt.running_mean) and torch.allclose(bn.running_var, bt.running_var)


def test_self_training_takes_pseudo_labels_from_the_teacher(source_slices: Slices,
                                                            target_inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    """With ``ema`` the loss is CE(source) + PL(student(x_t), argmax teacher(x_t)) after one EMA step."""
    xs, ys = source_slices[0][0][:8], source_slices[0][1][:8]
    xt = target_inputs[0][:8]
    student, teacher = _cnn(0).eval(), _cnn(1).eval()

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.teacher = student, teacher

    holder = Holder()
    ref_teacher = copy.deepcopy(teacher)
    ema_update(ref_teacher, student, 0.5)
    with torch.no_grad():
        pseudo = ref_teacher(xt).argmax(1)
    got = self_training_loss(holder, xs, ys, xt, 1.0, 0.0, False, 0.0, ema=0.5)
    zs, zt = student(xs), student(xt)
    expected = nn.functional.cross_entropy(zs, ys) + nn.functional.cross_entropy(zt, pseudo)
    assert torch.allclose(got, expected, atol=1e-5)
    for pt, pr in zip(teacher.parameters(), ref_teacher.parameters(), strict=True):
        assert torch.equal(pt, pr)


@pytest.mark.parametrize(("name", "options"), [
    ("mcc", {"domain_bn": "true"}),
    ("mcc", {"balance": "1"}),
    ("self_training", {"base": "mcc", "mcc": "1", "base_fraction": "0.5", "consistency": "true", "ema": "0.99",
                       "domain_bn": "true", "class_balance": "1"}),
])
def test_teacher_and_domain_bn_options_train(name: str, options: dict[str, str], source_run: Path,
                                             source_slices: Slices, target_inputs: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = transferkit.load_run(source_run).model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (s_tr, s_va), (t_tr, t_va) = source_slices, target_inputs
    cfg = TrainConfig(epochs=2, batch_size=32, precision="fp32", progress="off", seed=0)
    results = run_method(make_method(name, options), AdaptContext(model, s_tr, s_va, t_tr, t_va, cfg))
    after = model.state_dict()
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))
    assert all(np.isfinite(h["train_loss"]) for r in results for h in r.history)
    assert all(p.requires_grad for p in model.parameters())


def test_ema_option_is_validated() -> None:
    with pytest.raises(ConfigError, match="ema must be in"):
        make_method("self_training", {"ema": "1.0"})
    with pytest.raises(ConfigError, match="must be >= 0"):
        make_method("self_training", {"class_balance": "-1"})


def test_class_balance_loss_matches_numpy() -> None:
    z = torch.randn(32, 10, generator=torch.Generator().manual_seed(0)) * 3
    zn = z.numpy().astype(np.float64)
    p = np.exp(zn - zn.max(1, keepdims=True))
    pbar = (p / p.sum(1, keepdims=True)).mean(0)
    assert class_balance_loss(z).item() == pytest.approx(np.log(10) + (pbar * np.log(pbar)).sum(), rel=1e-5)
    prior = np.linspace(1, 2, 10)
    prior /= prior.sum()
    got = class_balance_loss(z, torch.from_numpy(prior).float()).item()
    assert got == pytest.approx((pbar * np.log(pbar / prior)).sum(), rel=1e-5)
    assert class_balance_loss(torch.zeros(4, 10)).item() == pytest.approx(0.0, abs=1e-6)  # uniform: no penalty
