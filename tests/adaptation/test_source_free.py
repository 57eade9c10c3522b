"""Source-free methods (SHOT, AaD): their losses against NumPy formulas, and on real digits they adapt a
source model to a new domain from unlabelled target inputs alone, changing the backbone only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.adaptation.base import AdaptContext, run_method
from transferkit.adaptation.source_free import (
    SHOT,
    AaD,
    attract_disperse,
    centroid_pseudo_labels,
    information_maximization,
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


@pytest.mark.parametrize("bad", [{"beta": "-1"}, {"rounds": "0"}])
def test_bad_options_are_one_line_errors(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as e:
        SHOT(bad)
    assert "\n" not in str(e.value) and "shot" in str(e.value)


def _accuracy(model: transferkit.TransferModel, x: torch.Tensor, y: np.ndarray) -> float:
    place = resolve_placement(model, "fp32", "auto")
    return float((predict_logits(model, x, place).argmax(1).numpy() == y).mean())


@pytest.mark.parametrize("method", [SHOT, AaD])
def test_source_free_methods_adapt_from_target_inputs_alone(method: type, source_run: Path) -> None:
    ds = load_dataset("digits8")
    order = np.random.default_rng(0).permutation(len(ds))
    x, y = torch.from_numpy(ds.x[order]), ds.require_labels()[order]
    t_train, t_val, t_test, y_test = x[:300], x[300:400], x[400:800], y[400:800]
    model = transferkit.load_run(source_run).model
    before = _accuracy(model, t_test, y_test)
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    no_source = (x[:0], torch.zeros(0, dtype=torch.long))  # the source data never reaches the method
    cfg = TrainConfig(epochs=6, batch_size=64, lr=0.01, optimizer="sgd", grad_clip=0.0, precision="fp32",
                      progress="off", patience=0, seed=0)
    ctx = AdaptContext(model, no_source, None, t_train, t_val, cfg)
    run_method(method(), ctx)
    after = _accuracy(model, t_test, y_test)
    assert all(torch.equal(v, model.head.state_dict()[k]) for k, v in head.items())  # the source head stays
    assert after > before + 0.03, (before, after)
