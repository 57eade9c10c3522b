"""BatchNorm and Dropout that see the *global* batch while each rank holds only its shard.

Data parallelism over ``W`` ranks is the one-process computation only for layers that treat
samples independently. Two common layers do not:

* **BatchNorm** in training mode normalises with statistics of its batch. On a shard of
  ``B / W`` samples those are noisier than the one-process statistics of ``B`` samples. Here
  the per-channel sums travel through a differentiable all-reduce (as ``nn.SyncBatchNorm``,
  which PyTorch only offers for GPUs), so every rank normalises with the global-batch

  .. math:: \\mu = \\frac{1}{N}\\sum_{r}\\sum_{i \\in r} x_i, \\qquad
            \\sigma^2 = \\frac{1}{N}\\sum_{r}\\sum_{i \\in r} (x_i - \\mu)^2, \\qquad
            y = \\gamma \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta

  (``N`` elements per channel over all ranks; Ioffe & Szegedy, 2015). The backward pass
  all-reduces the gradients of the two sums, so the input gradient is the one-process one.
  The running statistics get the same update on every rank, ``N / (N - 1)`` unbiasing the variance.

* **Dropout** draws its mask from the global RNG. Each rank draws the mask of the whole global
  batch (same seed, same shape, hence the same bits as the one process) and keeps its rows,
  so sample ``i`` is dropped exactly as in one process and the RNG streams stay in step.

Shape: BatchNorm input ``[n, C, *]`` (any ``n``, also 0); Dropout input ``[n, *]`` where ``n`` is
this rank's shard size. A Dropout called on any other batch (e.g. a domain-adaptation loss
feeding source and target together) falls back to an ordinary per-rank mask.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """``sum_r t_r`` on every rank; the gradient of ``t_r`` is ``sum_r`` of the output gradients."""

    @staticmethod
    def forward(ctx: object, t: torch.Tensor) -> torch.Tensor:
        out = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)


def all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over ranks (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    return _AllReduceSum.apply(t)


def synced_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` in training mode with statistics over the inputs of every rank."""
    dims = [0, *range(2, x.ndim)]
    shape = [1, x.shape[1]] + [1] * (x.ndim - 2)
    xf = x.float()
    count = torch.full((1,), x.numel() / max(1, x.shape[1]), device=x.device)
    s = all_reduce(torch.cat([xf.sum(dims), count]))
    n = s[-1]
    mean = s[:-1] / n
    d = xf - mean.view(shape)
    var = all_reduce((d * d).sum(dims)) / n
    y = d * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)  # type: ignore[union-attr]
            f = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)  # type: ignore[arg-type]
            unbiased = var * (n / (n - 1)) if float(n) > 1 else var
            bn.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
            bn.running_var.mul_(1 - f).add_(unbiased.detach(), alpha=f)
    return y.to(x.dtype)


def shard_dropout(p: float, x: torch.Tensor, offset: int, total: int, inplace: bool) -> torch.Tensor:
    """Rows ``offset : offset + len(x)`` of dropout applied to a ``total``-row batch (see module doc)."""
    if p == 0:
        return x
    fmt = torch.channels_last if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last) else torch.contiguous_format
    noise = torch.empty((total, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=fmt)
    if p == 1:
        noise.zero_()
    else:
        noise.bernoulli_(1 - p).div_(1 - p)
    noise = noise[offset : offset + len(x)]
    return x.mul_(noise) if inplace else x * noise


@contextlib.contextmanager
def global_batch(module: nn.Module, n_local: int, offset: int, total: int) -> Iterator[None]:
    """While active, ``module``'s BatchNorm and Dropout layers behave as on the global batch.

    ``n_local`` rows starting at row ``offset`` of a ``total``-row global batch are this rank's.
    Layers in eval mode (frozen BatchNorm, inference) are untouched.
    """
    # (layer, its own instance-level forward, if any)
    patched: list[tuple[nn.Module, Callable[..., torch.Tensor] | None]] = []

    def bn_forward(bn: nn.modules.batchnorm._BatchNorm) -> Callable[[torch.Tensor], torch.Tensor]:
        plain = bn.forward

        def forward(x: torch.Tensor) -> torch.Tensor:
            return synced_batch_norm(bn, x) if bn.training else plain(x)

        return forward

    def dropout_forward(m: nn.Dropout) -> Callable[[torch.Tensor], torch.Tensor]:
        plain = m.forward

        def forward(x: torch.Tensor) -> torch.Tensor:
            if not m.training or len(x) != n_local:
                return plain(x)
            return shard_dropout(m.p, x, offset, total, m.inplace)

        return forward

    try:
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm):
                patched.append((m, m.__dict__.get("forward")))
                m.forward = bn_forward(m)  # type: ignore[method-assign,assignment]
            elif type(m) is nn.Dropout:
                patched.append((m, m.__dict__.get("forward")))
                m.forward = dropout_forward(m)  # type: ignore[method-assign,assignment]
        yield
    finally:
        for m, own in patched:
            if own is None:
                del m.forward  # the class's forward is back
            else:
                m.forward = own
