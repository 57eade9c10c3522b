"""Domain-specific BatchNorm statistics and the exponential-moving-average (mean) teacher.

Two ingredients of self-ensembling for domain adaptation (French et al., ICLR 2018, sec. 3):

* **Separate source and target batches** through BatchNorm (as in DSBN, Chang et al., CVPR
  2019, with shared affine parameters): each domain is normalised by its own batch statistics,
  and the running statistics -- used at evaluation -- follow the *target* batches only, so the
  adapted model is evaluated on the target with target statistics (AdaBN-consistent, Li et al.
  2016) instead of a source/target blend.
* **A mean teacher** (Tarvainen & Valpola, NeurIPS 2017): ``theta'_t = a theta'_{t-1} + (1 - a)
  theta_t``, whose predictions on clean target inputs give the pseudo-labels the student is
  trained on (on re-styled copies). Averaged weights give steadier labels than the student's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from transferkit.models.base import TransferModel


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def frozen_running_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers still normalise with batch statistics (train mode) but leave their running
    statistics unchanged (momentum 0: ``running = (1 - 0) running + 0 batch``)."""
    bns = _batchnorms(model)
    saved = [(bn.momentum, bn.num_batches_tracked.clone() if bn.num_batches_tracked is not None else None)
             for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    try:
        yield
    finally:
        for bn, (mom, nbt) in zip(bns, saved, strict=True):
            bn.momentum = mom
            if nbt is not None and bn.num_batches_tracked is not None:
                bn.num_batches_tracked.copy_(nbt)


def domain_bn_forward(model: TransferModel, xs: torch.Tensor, xt: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Source and target in *separate* BatchNorm batches; running statistics track the target only.

    The counterpart of :func:`~transferkit.adaptation.base.joint_forward` (one mixed batch).
    Without BatchNorm layers the two agree. Returns ``(f_s, z_s, f_t, z_t)``: features ``[N, D]``
    and logits ``[N, C]`` per domain.
    """
    if xt is None:
        with frozen_running_stats(model):
            f = model.forward_features(xs)
        return f, model.head(f), None, None
    with frozen_running_stats(model):
        fs = model.forward_features(xs)
    ft = model.forward_features(xt)
    return fs, model.head(fs), ft, model.head(ft)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """Mean-teacher update: ``p_teacher <- decay p_teacher + (1 - decay) p_student`` for every
    parameter; buffers (BatchNorm running statistics) are copied from the student.

    Both modules must have the same architecture (``teacher`` is a copy of ``student``).
    """
    for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True):
        pt.mul_(decay).add_(ps.detach(), alpha=1.0 - decay)
    for bt, bs in zip(teacher.buffers(), student.buffers(), strict=True):
        bt.copy_(bs)
