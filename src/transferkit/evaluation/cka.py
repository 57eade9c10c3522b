"""Which layers moved in transfer: linear CKA between representations and relative weight change.

``linear_cka`` is a pure function on arrays; ``layer_cka`` and ``weight_change`` apply it (and an
L2 distance) to two models with the same layer groups, e.g. a source model and its transferred
copy: a group whose CKA stays near 1 and whose weights barely changed was reused as it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from transferkit.engine.precision import eval_mode
from transferkit.models.base import TransferModel


def _as_matrix(a: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape [N, D] (or [N, ...] to flatten), got {arr.shape}")
    return arr.reshape(len(arr), -1).astype(np.float64)


def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Linear centred kernel alignment of two representations of the same examples.

    Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network Representations Revisited",
    ICML 2019, eq. (5). With the columns of ``X`` and ``Y`` centred (mean over examples removed):

    .. math::

        \\mathrm{CKA}(X, Y) = \\frac{\\lVert Y^\\top X \\rVert_F^2}
                                   {\\lVert X^\\top X \\rVert_F \\, \\lVert Y^\\top Y \\rVert_F}

    It lies in ``[0, 1]``, equals 1 for ``CKA(X, X)``, and is invariant to orthogonal transforms
    and isotropic scaling of either argument (not to arbitrary invertible linear maps). When
    there are fewer examples than features it is computed with the equivalent ``N x N`` Gram
    matrices (``||Y^T X||_F^2 = <X X^T, Y Y^T>_F``), so wide conv activations stay cheap.

    Shape:
        - x: ``[N, D1]`` (further axes are flattened: ``[N, C, H, W]`` -> ``[N, C*H*W]``)
        - y: ``[N, D2]``, the same ``N`` examples in the same order
        - output: a Python float; ``nan`` when either representation is constant over examples

    Raises:
        ValueError: ``x`` and ``y`` hold different numbers of examples, or fewer than 2.
    """
    xm, ym = _as_matrix(x, "x"), _as_matrix(y, "y")
    if len(xm) != len(ym):
        raise ValueError(f"x and y must hold the same examples, got {len(xm)} and {len(ym)} rows")
    if len(xm) < 2:
        raise ValueError(f"linear CKA needs at least 2 examples, got {len(xm)}")
    xm = xm - xm.mean(0, keepdims=True)
    ym = ym - ym.mean(0, keepdims=True)
    if len(xm) < max(xm.shape[1], ym.shape[1]):  # Gram form: N x N instead of D x D
        gram_x, gram_y = xm @ xm.T, ym @ ym.T
        cross = float((gram_x * gram_y).sum())
        nx, ny = float(np.linalg.norm(gram_x)), float(np.linalg.norm(gram_y))
    else:
        cross = float(np.linalg.norm(ym.T @ xm) ** 2)
        nx, ny = float(np.linalg.norm(xm.T @ xm)), float(np.linalg.norm(ym.T @ ym))
    if nx == 0.0 or ny == 0.0:
        return float("nan")
    return min(1.0, cross / (nx * ny))  # rounding can land a hair above 1 for X == Y


def is_token_batch(x: torch.Tensor) -> bool:
    """Whether ``x`` holds text tokens as the text models take them: int ``[N, 2, L]`` (ids, mask)."""
    return not x.is_floating_point() and x.ndim == 3 and x.shape[1] == 2


def cka_batches(x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Index batches for a forward pass whose per-example outputs do not depend on the batch.

    Image, audio and tabular inputs have one width: plain consecutive batches. Token inputs are
    grouped by length (tokens in the mask) so a batch holds texts of one length: a text model
    trims each batch to its longest text, and a batch of equal lengths has no padding, so every
    layer's token states (and their mean) are those the text gets alone.
    """
    if not is_token_batch(x):
        return list(torch.arange(len(x)).split(batch_size))
    lengths = x[:, 1].sum(1)
    out: list[torch.Tensor] = []
    for n in torch.unique(lengths).tolist():
        out += list(torch.nonzero(lengths == n).flatten().split(batch_size))
    return out


def pool_output(out: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One row per example from a layer's output: a token sequence ``[n, T, D]`` (text, when
    ``mask`` ``[n, L >= T]`` is given) -> the masked mean over its tokens ``[n, D]``; anything
    else is flattened ``[n, -1]``. Text widths vary with the batch; the mean does not."""
    out = out.detach().float()
    if mask is not None and out.ndim == 3 and out.shape[1] <= mask.shape[1]:
        m = mask[:, : out.shape[1]].to(out.device, out.dtype).unsqueeze(-1)
        out = (out * m).sum(1) / m.sum(1).clamp(min=1.0)
    return out.reshape(len(out), -1).cpu().clone()  # clone: later in-place ops


def group_activations(model: TransferModel, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """The output of every layer group of ``model`` on ``x``, one row per example (fp32, CPU), in
    the order of ``x``: flattened, or mean-pooled over tokens for text (see :func:`pool_output`)."""
    outs: dict[str, list[torch.Tensor]] = {name: [] for name, _ in model.layer_groups()}
    mask: list[torch.Tensor | None] = [None]  # the current batch's attention mask (text), read by the hooks

    def keep(name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_m: nn.Module, _inp: object, out: torch.Tensor | tuple[torch.Tensor, ...]) -> None:
            if isinstance(out, (tuple, list)):  # e.g. a transformer layer's (hidden states, ...)
                out = out[0]
            outs[name].append(pool_output(out, mask[0]))

        return hook

    handles = [module.register_forward_hook(keep(name)) for name, module in model.layer_groups()]
    device = next(model.parameters()).device
    tokens = is_token_batch(x)
    if tokens:  # a text model may sort a larger batch by length before its layers: keep rows in place
        batch_size = min(batch_size, int(getattr(model, "chunk", batch_size)))
    batches = cka_batches(x, batch_size)
    try:
        with eval_mode(model), torch.inference_mode():
            for idx in batches:
                mask[0] = x[idx, 1] if tokens else None
                model(x[idx].to(device))
    finally:
        for h in handles:
            h.remove()
    inverse = torch.argsort(torch.cat(batches)) if batches else torch.zeros(0, dtype=torch.long)
    return {name: torch.cat(chunks)[inverse] for name, chunks in outs.items()}


def layer_cka(model_a: TransferModel, model_b: TransferModel, x: torch.Tensor | np.ndarray,
              batch_size: int = 256) -> dict[str, float]:
    """Linear CKA between the two models' activations after each layer group, on inputs ``x``.

    Both models run in eval mode in fp32; the output of each group (the head's logits last) is
    flattened per example, except a text layer's token states, which are averaged over the
    text's tokens (the width of a token sequence varies with the batch; its mean does not). The
    head is compared even when the class counts differ (CKA allows different widths).

    Shape:
        - x: ``[N, *input_shape]`` with ``N >= 2`` (text: int tokens ``[N, 2, L]``)
        - output: ``{group name: CKA}`` in the order of ``model_a.layer_groups()``

    Raises:
        ValueError: the models do not have the same layer group names.
    """
    names_a = [n for n, _ in model_a.layer_groups()]
    names_b = [n for n, _ in model_b.layer_groups()]
    if names_a != names_b:
        raise ValueError(f"models have different layer groups: {names_a} vs {names_b}")
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if xt.is_floating_point():  # token ids (text) stay integers
        xt = xt.float()
    acts_a = group_activations(model_a, xt, batch_size)
    acts_b = group_activations(model_b, xt, batch_size)
    return {name: linear_cka(acts_a[name].numpy(), acts_b[name].numpy()) for name in names_a}


def weight_change(model_a: TransferModel, model_b: TransferModel) -> dict[str, float]:
    """Relative L2 change of each layer group's parameters from ``model_a`` to ``model_b``.

    ``||w_b - w_a||_2 / ||w_a||_2`` over all parameters of the group concatenated (buffers such
    as BatchNorm running statistics are not weights and are left out). 0 means untouched; a
    group whose parameter shapes differ (a head replaced for other classes) gives ``nan``, as
    does a group with no parameters or all-zero weights in ``model_a``.

    Shape:
        - output: ``{group name: relative change}`` in the order of ``model_a.layer_groups()``

    Raises:
        ValueError: the models do not have the same layer group names.
    """
    groups_b = dict(model_b.layer_groups())
    names_a = [n for n, _ in model_a.layer_groups()]
    if names_a != list(groups_b):
        raise ValueError(f"models have different layer groups: {names_a} vs {list(groups_b)}")
    out: dict[str, float] = {}
    for name, module_a in model_a.layer_groups():
        pa = dict(module_a.named_parameters())
        pb = dict(groups_b[name].named_parameters())
        if not pa or pa.keys() != pb.keys() or any(pa[k].shape != pb[k].shape for k in pa):
            out[name] = float("nan")
            continue
        diff = sum(float((pb[k].detach().double().cpu() - pa[k].detach().double().cpu()).pow(2).sum()) for k in pa)
        base = sum(float(pa[k].detach().double().cpu().pow(2).sum()) for k in pa)
        out[name] = math.sqrt(diff) / math.sqrt(base) if base > 0 else float("nan")
    return out
