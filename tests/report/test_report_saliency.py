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


def test_token_saliency_is_the_directional_derivative_along_each_token_embedding() -> None:
    """Checked against finite differences: scaling token t's embedding by (1 + eps) moves the logit by
    about eps * <d logit / d e_t, e_t> (float64). Real tweets through MiniLM with a seeded 2-class head."""
    from transferkit.data import load_dataset
    from transferkit.evaluation.saliency import TextSaliency, text_saliency_examples, token_saliency
    from transferkit.models import from_pretrained
    from transferkit.models.text import tokenize, tokenizer

    torch.manual_seed(0)
    model = from_pretrained("minilm").eval()
    model.reset_head(["negative", "positive"])
    model.double()  # float64: the finite differences below resolve 1e-9 changes of the logit
    ds = load_dataset("vader-tweets")
    x = torch.from_numpy(tokenize(ds.x[:6]))
    one = x[2:3, :, : int(x[2, 1].sum())]
    scores = token_saliency(model, one, 1)
    assert scores.shape == (one.shape[2],) and (scores >= 0).all()
    assert all(p.grad is None for p in model.parameters())  # only the embeddings' output got a gradient
    eps = 1e-5

    def logit(scale_token: int | None) -> float:
        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
            if scale_token is None:
                return out
            out = out.clone()
            out[:, scale_token] *= 1 + eps
            return out

        h = model.groups["embeddings"].register_forward_hook(hook)
        try:
            with torch.no_grad():
                return float(model(one)[0, 1].double())
        finally:
            h.remove()

    base = logit(None)
    fd = np.array([abs(logit(t) - base) / eps for t in range(one.shape[2])])
    np.testing.assert_allclose(scores, fd, rtol=1e-3, atol=1e-4 * fd.max())
    ex = text_saliency_examples(model, x, ds.require_labels()[:6], tokenizer().convert_ids_to_tokens, 2, 2)
    assert isinstance(ex, TextSaliency) and 1 <= len(ex) <= 4
    assert all(len(t) == len(s) and t[0] == "[CLS]" and s.max() == pytest.approx(1.0)
               for t, s in zip(ex.tokens, ex.scores, strict=True))
