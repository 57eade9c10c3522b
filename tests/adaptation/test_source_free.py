"""Source-free methods (SHOT, AaD): their losses against NumPy formulas, and on real digits they adapt a
source model to a new domain from unlabelled target inputs alone, changing the backbone only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import transferkit
from transferkit.adaptation.augment import augment_glyphs
from transferkit.adaptation.base import AdaptContext, run_method
from transferkit.adaptation.source_free import (
    SHOT,
    AaD,
    attract_disperse,
    centroid_pseudo_labels,
    consistency_loss,
    information_maximization,
    resolve_stage2,
)
from transferkit.data import load_dataset
from transferkit.engine.config import TrainConfig
from transferkit.engine.precision import predict_logits, resolve_placement
from transferkit.errors import ConfigError


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_information_maximization_is_mean_entropy_minus_entropy_of_the_mean() -> None:
    z = np.random.default_rng(0).normal(size=(7, 4))
    p = _softmax(z)
    want = -(p * np.log(p)).sum(1).mean() + (p.mean(0) * np.log(p.mean(0))).sum()
    assert information_maximization(torch.from_numpy(z)).item() == pytest.approx(want, abs=1e-5)


def test_centroid_pseudo_labels_match_a_numpy_reimplementation() -> None:
    rng = np.random.default_rng(1)
    f, p = rng.normal(size=(30, 5)), _softmax(rng.normal(size=(30, 3)) * 3)
    fn = f / np.linalg.norm(f, axis=1, keepdims=True)
    w = p
    for _ in range(2):
        c = w.T @ fn / (w.sum(0)[:, None] + 1e-8)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        labels = (fn @ c.T).argmax(1)
        w = np.eye(3)[labels]
    got = centroid_pseudo_labels(torch.from_numpy(f), torch.from_numpy(p)).numpy()
    assert (got == labels).all()


def test_attract_disperse_matches_its_formula() -> None:
    rng = np.random.default_rng(2)
    p, q = _softmax(rng.normal(size=(4, 3))), _softmax(rng.normal(size=(12, 3))).reshape(4, 3, 3)
    gram = p @ p.T
    want = -np.einsum("bc,bkc->b", p, q).mean() + 0.5 * (gram.sum() - np.trace(gram)) / 4
    got = attract_disperse(torch.from_numpy(p), torch.from_numpy(q), 0.5).item()
    assert got == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("bad", [{"beta": "-1"}, {"rounds": "0"}, {"stage2": "mixmatch"}, {"stage2_fraction": "1"},
                                 {"threshold": "0"}, {"ema": "1"}, {"class_balance": "-1"}])
def test_bad_options_are_one_line_errors(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as e:
        SHOT(bad)
    assert "\n" not in str(e.value) and ("shot" in str(e.value) or next(iter(bad)) in str(e.value))


def test_stage2_auto_is_consistency_for_single_channel_images_only() -> None:
    assert resolve_stage2("auto", torch.zeros(2, 1, 28, 28)) == "consistency"
    assert resolve_stage2("auto", torch.zeros(2, 3, 32, 32)) == "none"
    assert resolve_stage2("auto", torch.zeros(2, 16000)) == "none"
    assert resolve_stage2("none", torch.zeros(2, 1, 28, 28)) == "none"
    assert resolve_stage2("consistency", torch.zeros(2, 3, 32, 32)) == "consistency"


def _linear(bias: list[float] | None = None) -> torch.nn.Sequential:
    lin = torch.nn.Linear(28 * 28, 3)
    if bias is not None:
        with torch.no_grad():
            lin.weight.zero_()
            lin.bias.copy_(torch.tensor(bias))
    return torch.nn.Sequential(torch.nn.Flatten(), lin)


def _weight(m: torch.nn.Sequential) -> torch.Tensor:
    lin = m[1]
    assert isinstance(lin, torch.nn.Linear)
    return lin.weight


def test_consistency_loss_moves_the_teacher_and_learns_its_confident_labels_on_restyled_inputs() -> None:
    torch.manual_seed(0)
    student, teacher, x = _linear(), _linear([9.0, 0.0, 0.0]), torch.rand(8, 1, 28, 28)  # teacher: all class 0
    w_t, w_s = _weight(teacher).clone(), _weight(student).clone()
    torch.manual_seed(3)
    loss = consistency_loss(student, teacher, x, threshold=0.9, ema=0.75, class_balance=0.0)
    assert torch.allclose(_weight(teacher), 0.75 * w_t + 0.25 * w_s)  # EMA toward the student
    torch.manual_seed(3)  # the same re-styling draw
    want = F.cross_entropy(student(augment_glyphs(x)), torch.zeros(8, dtype=torch.long))
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_consistency_loss_without_confident_labels_is_the_class_balance_term() -> None:
    torch.manual_seed(0)
    student, x = _linear(), torch.rand(8, 1, 28, 28)
    unsure = _linear([0.0, 0.0, 0.0])  # uniform predictions: below any threshold above 1/3
    assert consistency_loss(student, unsure, x, threshold=0.5, ema=1.0, class_balance=0.0).item() == 0.0
    pbar = student(x).softmax(1).mean(0)
    want = (pbar * torch.log(pbar * 3)).sum().item()
    got = consistency_loss(student, _linear([0.0, 0.0, 0.0]), x, threshold=0.5, ema=1.0, class_balance=2.0).item()
    assert got == pytest.approx(2 * want, rel=1e-4)


class _Untouchable(torch.Tensor):
    """A tensor that fails on any use: the source data a source-free method must never read."""

    @classmethod
    def __torch_function__(cls, func: object, types: object, args: object = (), kwargs: object = None) -> object:
        raise AssertionError(f"source data read through {func}")


def _accuracy(model: transferkit.TransferModel, x: torch.Tensor, y: np.ndarray) -> float:
    place = resolve_placement(model, "fp32", "auto")
    return float((predict_logits(model, x, place).argmax(1).numpy() == y).mean())


@pytest.mark.parametrize("method", [SHOT, lambda: SHOT({"stage2": "none"}), AaD], ids=["shot", "shot-none", "aad"])
def test_source_free_methods_adapt_from_target_inputs_alone(method: type, source_run: Path) -> None:
    ds = load_dataset("digits8")
    order = np.random.default_rng(0).permutation(len(ds))
    x, y = torch.from_numpy(ds.x[order]), ds.require_labels()[order]
    t_train, t_val, t_test, y_test = x[:300], x[300:400], x[400:800], y[400:800]
    model = transferkit.load_run(source_run).model
    before = _accuracy(model, t_test, y_test)
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    poison = torch.zeros(64, 1, 28, 28).as_subclass(_Untouchable)
    no_source = (poison, torch.zeros(64, dtype=torch.long).as_subclass(_Untouchable))  # any read fails
    cfg = TrainConfig(epochs=6, batch_size=64, lr=0.01, optimizer="sgd", grad_clip=0.0, precision="fp32",
                      progress="off", patience=0, seed=0)
    ctx = AdaptContext(model, no_source, None, t_train, t_val, cfg)
    run_method(method(), ctx)
    after = _accuracy(model, t_test, y_test)
    assert all(torch.equal(v, model.head.state_dict()[k]) for k, v in head.items())  # the source head stays
    assert after > before + 0.03, (before, after)
