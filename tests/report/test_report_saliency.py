"""Input-gradient saliency: the closed form of a linear model, no parameter gradients left behind,
and the choice of correct / wrong examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.evaluation.saliency import input_gradients, saliency_examples


def _linear(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 6))


def test_linear_model_saliency_is_the_weight_row_max_over_channels() -> None:
    model = _linear()
    x = torch.rand(7, 3, 4, 5)
    target = torch.tensor([0, 1, 2, 3, 4, 5, 0])
    got = input_gradients(model, x, target)
    w = model[1].weight.detach().reshape(6, 3, 4, 5)
    expected = w[target].abs().amax(dim=1)  # d logit_t / d x = W[t], independent of x
    assert got.shape == (7, 4, 5)
    torch.testing.assert_close(got, expected)
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # mode restored


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        input_gradients(_linear(), torch.rand(2, 60), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="target"):
        input_gradients(_linear(), torch.rand(2, 3, 4, 5), torch.tensor([0]))


def test_examples_take_correct_ones_first_then_wrong_ones() -> None:
    model = _linear()
    with torch.no_grad():  # always predicts class 2
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0, 0.0, 0.0]))
        model[1].weight[2] = 0.1
    x = np.random.default_rng(0).random((12, 3, 4, 5)).astype(np.float32)
    y = np.array([2, 0, 2, 1, 1, 2, 3, 2, 4, 5, 2, 0])
    ex = saliency_examples(model, x, y, n_correct=3, n_wrong=2)
    assert len(ex) == 5
    assert ex.correct.tolist() == [True, True, True, False, False]
    assert ex.y_true.tolist() == [2, 2, 2, 0, 1] and ex.y_pred.tolist() == [2] * 5
    spread = saliency_examples(model, x, y, n_correct=1, n_wrong=5)  # wrong ones: one per true class first
    assert spread.y_true.tolist() == [2, 0, 1, 3, 4, 5]
    np.testing.assert_array_equal(ex.images[0], x[0])
    assert ex.maps.shape == (5, 4, 5) and ex.maps.min() >= 0 and ex.maps.max() == pytest.approx(1.0)
    none_wrong = saliency_examples(model, x, np.full(12, 2), n_correct=2, n_wrong=4)
    assert none_wrong.correct.tolist() == [True, True]
