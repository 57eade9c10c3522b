"""The pure losses against independent NumPy formulas; the gradient-reversal layer and its schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from transferkit.adaptation.functional import (
    GradientReversal,
    coral,
    dann_schedule,
    domain_adversarial_loss,
    entropy,
    entropy_weights,
    grad_reverse,
    information_maximization,
    mean_entropy,
    minimum_class_confusion,
    mk_mmd,
    multilinear_map,
    pseudo_label_loss,
)

RNG = np.random.default_rng(0)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


def test_coral_matches_numpy() -> None:
    xs, xt = RNG.normal(size=(40, 6)), RNG.normal(loc=0.5, scale=2.0, size=(30, 6))
    cs, ct = np.cov(xs, rowvar=False), np.cov(xt, rowvar=False)
    expected = ((cs - ct) ** 2).sum() / (4 * 6**2)
    assert coral(_t(xs), _t(xt)).item() == pytest.approx(expected, rel=1e-5)
    assert coral(_t(xs), _t(xs)).item() == pytest.approx(0.0, abs=1e-6)


def _np_mmd(xs: np.ndarray, xt: np.ndarray, mults: tuple[float, ...]) -> float:
    z = np.concatenate([xs, xt])
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    n = len(z)
    s2 = d2.sum() / (n * n - n)
    k = sum(np.exp(-d2 / (m * s2)) for m in mults)
    ns = len(xs)
    return float(k[:ns, :ns].mean() + k[ns:, ns:].mean() - 2 * k[:ns, ns:].mean())


def test_mk_mmd_matches_numpy() -> None:
    mults = (0.25, 0.5, 1.0, 2.0, 4.0)
    xs, xt = RNG.normal(size=(25, 5)), RNG.normal(loc=1.0, size=(20, 5))
    assert mk_mmd(_t(xs), _t(xt), mults).item() == pytest.approx(_np_mmd(xs, xt, mults), rel=1e-4)
    same = RNG.normal(size=(25, 5))
    assert mk_mmd(_t(same), _t(same)).item() == pytest.approx(0.0, abs=1e-5)
    assert mk_mmd(_t(xs), _t(xt)).item() > mk_mmd(_t(xs), _t(RNG.normal(size=(20, 5)))).item()


def test_entropy_terms_match_numpy() -> None:
    z = RNG.normal(scale=3.0, size=(16, 7))
    p = _softmax(z)
    h = -(p * np.log(p)).sum(1)
    assert entropy(_t(p)).numpy() == pytest.approx(h, rel=1e-5)
    assert mean_entropy(_t(z)).item() == pytest.approx(h.mean(), rel=1e-5)
    pm = p.mean(0)
    assert information_maximization(_t(z)).item() == pytest.approx(h.mean() + (pm * np.log(pm)).sum(), rel=1e-4)
    w = 1 + np.exp(-h)
    assert entropy_weights(_t(z)).numpy() == pytest.approx(w / w.mean(), rel=1e-5)


def test_mcc_matches_numpy() -> None:
    z = RNG.normal(scale=2.0, size=(12, 4))
    t = 2.5
    p = _softmax(z / t)
    h = -(p * np.log(p)).sum(1)
    w = 1 + np.exp(-h)
    w = len(z) * w / w.sum()
    c = (p * w[:, None]).T @ p
    c = c / c.sum(1, keepdims=True)
    expected = (c.sum() - np.trace(c)) / 4
    assert minimum_class_confusion(_t(z), t).item() == pytest.approx(expected, rel=1e-5)
    confident = np.eye(4)[np.arange(12) % 4] * 50.0
    assert minimum_class_confusion(_t(confident), 1.0).item() < 1e-6


def test_domain_loss_and_multilinear_map() -> None:
    ds, dt = RNG.normal(size=8), RNG.normal(size=6)
    sig = lambda v: 1 / (1 + np.exp(-v))
    expected = 0.5 * (-np.log(sig(ds)).mean() - np.log(1 - sig(dt)).mean())
    assert domain_adversarial_loss(_t(ds), _t(dt)).item() == pytest.approx(expected, rel=1e-5)
    ws, wt = RNG.uniform(size=8), RNG.uniform(size=6)
    weighted = 0.5 * (-(ws * np.log(sig(ds))).mean() - (wt * np.log(1 - sig(dt))).mean())
    assert domain_adversarial_loss(_t(ds), _t(dt), _t(ws), _t(wt)).item() == pytest.approx(weighted, rel=1e-5)
    f, g = RNG.normal(size=(3, 5)), _softmax(RNG.normal(size=(3, 4)))
    expected_map = np.stack([np.outer(g[i], f[i]).ravel() for i in range(3)])
    assert multilinear_map(_t(f), _t(g)).numpy() == pytest.approx(expected_map, rel=1e-6)


def test_pseudo_label_loss_uses_only_confident_examples() -> None:
    z = torch.tensor([[5.0, 0.0], [0.1, 0.0], [0.0, 6.0]])
    loss, mask = pseudo_label_loss(z, threshold=0.9)
    assert mask.tolist() == [True, False, True]
    ce = torch.nn.functional.cross_entropy(z, torch.tensor([0, 0, 1]), reduction="none")
    assert loss.item() == pytest.approx((ce[0] + ce[2]).item() / 3, rel=1e-6)


def test_grad_reverse_sign_and_scale() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    y = grad_reverse(x, 0.7)
    assert torch.equal(y, x)
    w = torch.randn(4, 3)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -0.7 * w)


def test_dann_schedule_values() -> None:
    assert dann_schedule(0.0) == 0.0
    assert dann_schedule(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_schedule(0.3) == pytest.approx(2 / (1 + math.exp(-3)) - 1)
    assert dann_schedule(2.0) == dann_schedule(1.0)


def test_grl_step_buffer_follows_schedule_and_survives_state_dict() -> None:
    grl = GradientReversal(max_steps=10).train()
    x = torch.ones(2, requires_grad=True)
    for _ in range(3):
        grl(x)
    assert int(grl.step) == 3
    assert grl.coeff() == pytest.approx(dann_schedule(0.3))
    x.grad = None
    grl(x).sum().backward()  # the 4th pass uses the coefficient at step 3
    assert torch.allclose(x.grad, torch.full((2,), -dann_schedule(0.3)))
    state = grl.state_dict()
    assert set(state) == {"step", "max_steps"}
    fresh = GradientReversal(max_steps=10)
    fresh.load_state_dict(state)
    assert int(fresh.step) == 4 and fresh.coeff() == pytest.approx(dann_schedule(0.4))
    fresh.eval()(x)
    assert int(fresh.step) == 4  # evaluation does not advance the schedule
