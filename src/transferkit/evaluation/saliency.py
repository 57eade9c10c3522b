"""Input-gradient saliency for a few correct and a few wrong predictions: maps over an image, scores
per token of a text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from transferkit.engine.precision import eval_mode


def input_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Vanilla gradient saliency: ``|d logit_target / d x|``, the largest over channels.

    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image
    Classification Models and Saliency Maps", ICLR workshop 2014, sec. 3.1: the map of example
    ``i`` is ``M_i = max_c |d S_{target_i}(x_i) / d x_{i,c}|``. The model runs in eval mode in
    fp32; only the input receives a gradient (the parameters' ``.grad`` stay untouched).

    Shape:
        - x: ``[N, C, H, W]``
        - target: ``[N]`` class indices
        - output: ``[N, H, W]``, non-negative, on ``x``'s device
    """
    if x.ndim != 4:
        raise ValueError(f"saliency needs images [N, C, H, W], got shape {tuple(x.shape)}")
    if target.shape != (len(x),):
        raise ValueError(f"target must have shape [{len(x)}], got {tuple(target.shape)}")
    xin = x.detach().float().clone().requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        logits = model(xin)
        picked = logits.gather(1, target.long().view(-1, 1).to(logits.device)).sum()
        (grad,) = torch.autograd.grad(picked, xin)
    return grad.abs().amax(dim=1)


def _varied(idx: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` of ``idx`` spread over the true classes: the first of each class, then the second ..."""
    seen: dict[int, int] = {}
    rank = np.zeros(len(idx), dtype=np.int64)
    for j, i in enumerate(idx):
        rank[j] = seen.get(int(y[i]), 0)
        seen[int(y[i])] = rank[j] + 1
    return idx[np.argsort(rank, kind="stable")][:n].astype(np.int64)


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    device = next(model.parameters()).device
    preds = [np.zeros(0, np.int64)]
    with eval_mode(model), torch.inference_mode():
        for i in range(0, len(x), batch_size):
            preds.append(model(x[i : i + batch_size].to(device)).argmax(1).cpu().numpy())
    return np.concatenate(preds)


@dataclass
class SaliencyExamples:
    """Chosen examples with their saliency maps (gradient of the predicted class).

    Attributes:
        images: ``[M, C, H, W]`` inputs in ``[0, 1]``.
        maps: ``[M, H, W]`` saliency, each map scaled to ``[0, 1]``.
        y_true, y_pred: ``[M]`` class indices.
        correct: ``[M]`` booleans; the correct examples come first.
    """

    images: np.ndarray
    maps: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    correct: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def saliency_examples(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray, n_correct: int = 4,
                      n_wrong: int = 4, batch_size: int = 256) -> SaliencyExamples:
    """Predict ``x``, take ``n_correct`` correct and ``n_wrong`` wrong examples (in data order, one
    per true class before a second of any class) and compute their saliency for the predicted
    class (what the model looked at when it chose).

    Fewer are returned when the data holds fewer correct or wrong predictions.

    Shape:
        - x: ``[N, C, H, W]``; y: ``[N]``
    """
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    yt = np.asarray(y).astype(np.int64)
    if len(xt) != len(yt):
        raise ValueError(f"x has {len(xt)} examples but y has {len(yt)} labels")
    device = next(model.parameters()).device
    pred = _predict(model, xt, batch_size)
    ok = pred == yt
    idx = np.concatenate([_varied(np.flatnonzero(ok), yt, n_correct), _varied(np.flatnonzero(~ok), yt, n_wrong)])
    images = xt[idx]
    if len(idx):
        maps = input_gradients(model, images.to(device), torch.from_numpy(pred[idx])).cpu().numpy()
        peak = maps.reshape(len(maps), -1).max(1).reshape(-1, 1, 1)
        maps = np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)
    else:
        maps = np.zeros((0, *images.shape[2:]), dtype=np.float32)
    return SaliencyExamples(images.numpy(), maps, yt[idx], pred[idx], ok[idx])


def token_saliency(model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """Gradient x input at the token embeddings of one text: ``|<d logit_target / d e_t, e_t>|`` per token.

    Denil, Demiraj & de Freitas, "Extraction of Salient Sentences from Labelled Documents", 2014
    (gradient x embedding, the text analogue of Simonyan et al.'s map; Shrikumar et al. 2016 name
    it gradient x input). ``e_t`` is the output of the model's first layer group (the token
    embeddings of a text model). The parameters' ``.grad`` stay untouched.

    Shape:
        - x: int tokens ``[1, 2, L]`` (ids, mask) of one text
        - output: ``[T]``, one non-negative score per token the model read (``T`` = tokens in the mask)
    """
    if x.ndim != 3 or x.shape[:2] != (1, 2) or x.is_floating_point():
        raise ValueError(f"token saliency needs one text's tokens [1, 2, L], got {tuple(x.shape)} {x.dtype}")
    first = next(iter(model.get_submodule("groups").children()))
    kept: list[torch.Tensor] = []

    def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> torch.Tensor:
        kept.append(out.detach().requires_grad_(True))  # a leaf: no gradient reaches the weights
        return kept[-1]

    handle = first.register_forward_hook(hook)
    try:
        with eval_mode(model), torch.enable_grad():
            logits = model(x)
            (grad,) = torch.autograd.grad(logits[0, target], kept[0])
    finally:
        handle.remove()
    return (grad * kept[0]).sum(-1)[0].abs().detach().cpu().numpy()


@dataclass
class TextSaliency:
    """Chosen texts with a score per token (see :func:`token_saliency`), correct ones first.

    Attributes:
        tokens: per text, the tokens the model read (word pieces, ``##`` marks a continuation).
        scores: per text, ``[T]`` scores scaled to ``[0, 1]`` (1 = the token that mattered most).
        y_true, y_pred: ``[M]`` class indices; correct: ``[M]`` booleans.
    """

    tokens: list[list[str]]
    scores: list[np.ndarray]
    y_true: np.ndarray
    y_pred: np.ndarray
    correct: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)


def text_saliency_examples(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray,
                           id_to_token: Callable[[list[int]], list[str]], n_correct: int = 4, n_wrong: int = 4,
                           batch_size: int = 64) -> TextSaliency:
    """:func:`saliency_examples` for a text model: ``n_correct`` correct and ``n_wrong`` wrong test
    texts, each scored token by token for its predicted class; ``id_to_token`` names the token ids.

    Shape:
        - x: int tokens ``[N, 2, L]``; y: ``[N]``
    """
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    yt = np.asarray(y).astype(np.int64)
    pred = _predict(model, xt, batch_size)
    ok = pred == yt
    idx = np.concatenate([_varied(np.flatnonzero(ok), yt, n_correct), _varied(np.flatnonzero(~ok), yt, n_wrong)])
    device = next(model.parameters()).device
    tokens: list[list[str]] = []
    scores: list[np.ndarray] = []
    for i in idx.tolist():
        s = token_saliency(model, xt[i : i + 1].to(device), int(pred[i]))
        tokens.append(id_to_token(xt[i, 0, : len(s)].tolist()))
        scores.append(s / s.max() if s.max() > 0 else s)
    return TextSaliency(tokens, scores, yt[idx], pred[idx], ok[idx])
