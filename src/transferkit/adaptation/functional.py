"""Pure losses and operators for unsupervised domain adaptation.

Every function here is stateless math on tensors; the methods in this package compose them.
The one stateful piece, :class:`GradientReversal`, keeps its schedule step in a registered
buffer so ``state_dict()``, ``.to()`` and resume carry it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Gradient reversal (Ganin & Lempitsky, ICML 2015): identity forward, ``-coeff * grad`` backward.

    Shape: any; the output has the input's shape.
    """
    return _GradReverse.apply(x, float(coeff))


def dann_schedule(progress: float, gamma: float = 10.0, low: float = 0.0, high: float = 1.0) -> float:
    """The DANN trade-off schedule ``lambda_p = 2 (high - low) / (1 + exp(-gamma p)) - (high - low) + low``.

    With the defaults this is Ganin et al. (JMLR 2016, eq. 14): ``lambda_p = 2 / (1 + exp(-10 p)) - 1``
    for training progress ``p`` in ``[0, 1]`` (clipped).
    """
    p = min(max(progress, 0.0), 1.0)
    return 2.0 * (high - low) / (1.0 + math.exp(-gamma * p)) - (high - low) + low


class GradientReversal(nn.Module):
    """A gradient-reversal layer whose coefficient follows :func:`dann_schedule`.

    The step counter and the schedule length are registered buffers (saved in ``state_dict``).
    Each forward pass in training mode advances the step by one; ``max_steps`` is set by the
    method from the training budget (``<= 0`` means a constant coefficient of ``high``).
    """

    step: torch.Tensor
    max_steps: torch.Tensor

    def __init__(self, max_steps: int = 0, gamma: float = 10.0, high: float = 1.0) -> None:
        super().__init__()
        self.gamma, self.high = gamma, high
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("max_steps", torch.tensor(int(max_steps), dtype=torch.long))

    def coeff(self) -> float:
        total = int(self.max_steps)
        if total <= 0:
            return self.high
        return dann_schedule(int(self.step) / total, self.gamma, 0.0, self.high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.coeff()
        if self.training:
            self.step += 1
        return grad_reverse(x, c)


def domain_adversarial_loss(d_source: torch.Tensor, d_target: torch.Tensor,
                            w_source: torch.Tensor | None = None, w_target: torch.Tensor | None = None) -> torch.Tensor:
    """Binary domain-classification loss: source labelled 1, target 0 (DANN; CDAN with weights).

    ``L = 1/2 [ mean_i w_i BCE(d_s,i, 1) + mean_j w_j BCE(d_t,j, 0) ]`` with logits ``d``.

    Shape: ``d_source [Ns]`` or ``[Ns, 1]``, ``d_target [Nt]`` or ``[Nt, 1]``; weights ``[N]``.
    """
    ds, dt = d_source.reshape(-1).float(), d_target.reshape(-1).float()
    ls = F.binary_cross_entropy_with_logits(ds, torch.ones_like(ds), reduction="none")
    lt = F.binary_cross_entropy_with_logits(dt, torch.zeros_like(dt), reduction="none")
    if w_source is not None:
        ls = ls * w_source.reshape(-1)
    if w_target is not None:
        lt = lt * w_target.reshape(-1)
    return 0.5 * (ls.mean() + lt.mean())


def multilinear_map(features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """CDAN's conditioning (Long et al., NeurIPS 2018, eq. 4): ``T(f, g) = g ⊗ f`` flattened.

    Shape: ``features [N, D]``, ``probs [N, C]`` -> ``[N, C * D]``.
    """
    return torch.bmm(probs.unsqueeze(2), features.unsqueeze(1)).flatten(1)


def entropy(probs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Shannon entropy per row, ``H(p) = -sum_c p_c log p_c`` (natural log).

    Shape: ``[N, C]`` -> ``[N]``.
    """
    return -(probs * torch.log(probs + eps)).sum(dim=1)


def entropy_weights(logits: torch.Tensor) -> torch.Tensor:
    """CDAN+E sample weights ``w = 1 + exp(-H(softmax(logits)))``, normalised to mean 1.

    Confident (low-entropy) examples weigh more in the domain loss (Long et al. 2018, eq. 8).

    Shape: ``[N, C]`` -> ``[N]`` (no gradient).
    """
    with torch.no_grad():
        w = 1.0 + torch.exp(-entropy(F.softmax(logits.float(), dim=1)))
        return w / w.mean()


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy minimisation (Grandvalet & Bengio, 2005): ``mean_i H(softmax(logits_i))``. Shape ``[N, C]`` -> scalar."""
    return entropy(F.softmax(logits.float(), dim=1)).mean()


def information_maximization(logits: torch.Tensor) -> torch.Tensor:
    """Information-maximisation loss (SHOT, Liang et al., ICML 2020): ``mean_i H(p_i) - H(mean_i p_i)``.

    Low when each prediction is confident and the predictions are diverse across classes
    (the negative mutual information between inputs and predicted labels).

    Shape: ``[N, C]`` -> scalar.
    """
    p = F.softmax(logits.float(), dim=1)
    return entropy(p).mean() - entropy(p.mean(dim=0, keepdim=True)).squeeze(0)


def gaussian_kernels(x: torch.Tensor, y: torch.Tensor, multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
                     bandwidth: float | None = None) -> torch.Tensor:
    """Sum of Gaussian kernels ``sum_k exp(-||a - b||^2 / (m_k * sigma^2))`` over ``z = [x; y]``.

    ``sigma^2`` defaults to the mean squared pairwise distance in ``z`` (detached), as in DAN.

    Shape: ``x [Ns, D]``, ``y [Nt, D]`` -> ``[Ns + Nt, Ns + Nt]``.
    """
    z = torch.cat([x, y]).float()
    d2 = torch.cdist(z, z).pow(2)
    s2 = d2.detach().sum() / max(1, z.shape[0] ** 2 - z.shape[0]) if bandwidth is None else torch.tensor(bandwidth)
    s2 = torch.clamp(s2, min=1e-8)
    return sum(torch.exp(-d2 / (m * s2)) for m in multipliers)  # type: ignore[return-value]


def mk_mmd(source: torch.Tensor, target: torch.Tensor, multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
           bandwidth: float | None = None) -> torch.Tensor:
    """Multi-kernel maximum mean discrepancy (DAN, Long et al., ICML 2015), biased estimate:

    ``MMD^2 = mean K(s, s') + mean K(t, t') - 2 mean K(s, t)`` with ``K`` from :func:`gaussian_kernels`.

    Shape: ``source [Ns, D]``, ``target [Nt, D]`` -> scalar.
    """
    ns = source.shape[0]
    k = gaussian_kernels(source, target, multipliers, bandwidth)
    return k[:ns, :ns].mean() + k[ns:, ns:].mean() - 2 * k[:ns, ns:].mean()


def coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko, ECCV-W 2016, eq. 1): ``||C_S - C_T||_F^2 / (4 d^2)``.

    ``C`` are the unbiased feature covariances.

    Shape: ``source [Ns, d]``, ``target [Nt, d]`` (``N >= 2``) -> scalar.
    """
    d = source.shape[1]
    cs, ct = _cov(source.float()), _cov(target.float())
    return (cs - ct).pow(2).sum() / (4 * d * d)


def _cov(x: torch.Tensor) -> torch.Tensor:
    xc = x - x.mean(dim=0, keepdim=True)
    return xc.T @ xc / max(1, x.shape[0] - 1)


def minimum_class_confusion(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """MCC loss (Jin et al., ECCV 2020, eqs. 1-6) on target logits.

    ``p = softmax(z / T)``; weights ``w_i = N (1 + exp(-H(p_i))) / sum_j (1 + exp(-H(p_j)))``;
    class confusion ``C = p^T diag(w) p``, rows normalised to sum 1;
    ``L = (sum_jk C_jk - trace C) / num_classes``.

    Shape: ``[N, C]`` -> scalar.
    """
    n, c = logits.shape
    p = F.softmax(logits.float() / temperature, dim=1)
    w = 1.0 + torch.exp(-entropy(p).detach())
    w = n * w / w.sum()
    conf = (p * w.unsqueeze(1)).T @ p
    conf = conf / conf.sum(dim=1, keepdim=True)
    return (conf.sum() - conf.trace()) / c


def pseudo_label_loss(logits: torch.Tensor, threshold: float = 0.9, label_logits: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence-thresholded self-training (Lee, 2013; FixMatch, Sohn et al., NeurIPS 2020).

    ``L = 1/N sum_i 1[max_c p_ic >= tau] CE(z_i, argmax_c p_ic)`` with ``p`` detached, computed
    from ``label_logits`` when given (FixMatch: labels from a clean view, loss on an augmented one),
    else from ``logits``.

    Shape: ``[N, C]`` (both) -> (scalar loss, ``[N]`` bool mask of the examples used).
    """
    with torch.no_grad():
        p = F.softmax((logits if label_logits is None else label_logits).float(), dim=1)
        conf, pseudo = p.max(dim=1)
        mask = conf >= threshold
    ce = F.cross_entropy(logits.float(), pseudo, reduction="none")
    return (ce * mask.float()).mean(), mask


def randomized_multilinear_map(features: torch.Tensor, probs: torch.Tensor, r_features: torch.Tensor,
                               r_probs: torch.Tensor) -> torch.Tensor:
    """CDAN's randomized multilinear map (Long et al., NeurIPS 2018, eq. 6) for large ``C * D``:

    ``T(f, g) = (f R_f) ⊙ (g R_g) / sqrt(d)`` with fixed random matrices ``R_f [D, d]``,
    ``R_g [C, d]`` (standard normal), an unbiased estimate of the inner products of ``g ⊗ f``.

    Shape: ``features [N, D]``, ``probs [N, C]`` -> ``[N, d]``.
    """
    d = r_features.shape[1]
    return (features @ r_features) * (probs @ r_probs) / math.sqrt(d)


def class_balanced_pseudo_label_loss(logits: torch.Tensor, threshold: float = 0.9,
                                     label_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence-thresholded pseudo-labels in which every pseudo-class weighs the same
    (class-balanced self-training in the spirit of CBST, Zou et al., ECCV 2018).

    With ``m_i = 1[max_c p_ic >= tau]``, pseudo-labels ``y_i = argmax_c p_ic`` (``p`` detached),
    ``M = sum_i m_i``, ``M_c = sum_i m_i 1[y_i = c]`` and ``K`` the number of classes with
    ``M_c > 0``: ``L = 1/N sum_i m_i (M / (K M_{y_i})) CE(z_i, y_i)``. The weights sum to ``M``,
    so the loss has the scale of :func:`pseudo_label_loss`, but a class that dominates the
    confident predictions no longer dominates the gradient (the usual collapse of self-training).
    ``label_logits``, when given, supply ``p`` (see :func:`pseudo_label_loss`).

    Shape: ``[N, C]`` (both) -> (scalar loss, ``[N]`` bool mask of the examples used).
    """
    n, c = logits.shape
    with torch.no_grad():
        p = F.softmax((logits if label_logits is None else label_logits).float(), dim=1)
        conf, pseudo = p.max(dim=1)
        mask = conf >= threshold
        counts = torch.bincount(pseudo[mask], minlength=c).float()
        k = (counts > 0).sum().clamp(min=1)
        w = mask.float() * mask.sum() / (k * counts[pseudo].clamp(min=1))
    ce = F.cross_entropy(logits.float(), pseudo, reduction="none")
    return (ce * w).sum() / n, mask


def class_balance_loss(logits: torch.Tensor, prior: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Class-balance (diversity) loss: ``KL(p_bar || pi) = sum_c p_bar_c log(p_bar_c / pi_c)``
    with ``p_bar = 1/N sum_i softmax(z_i)`` the batch's mean prediction and ``pi`` the expected
    class prior (uniform when ``None``, then ``= log C - H(p_bar)``, the diversity term of
    information maximisation, SHOT, Liang et al., ICML 2020; French et al., ICLR 2018, sec. 3.5).

    It stops a self-training / confusion-minimising loss from mapping a whole target class onto
    a neighbouring one (e.g. every 9 read as a 3), which per-example losses cannot see.

    Shape: ``logits [N, C]``, ``prior [C]`` (sums to 1) -> scalar.
    """
    c = logits.shape[1]
    pbar = F.softmax(logits.float(), dim=1).mean(dim=0)
    pi = torch.full_like(pbar, 1.0 / c) if prior is None else prior.to(pbar)
    return (pbar * (torch.log(pbar + eps) - torch.log(pi + eps))).sum()
