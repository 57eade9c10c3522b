"""LogME: the log of the maximum evidence of a Bayesian linear model on frozen features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transferkit.errors import ConfigError
from transferkit.transferability.base import check_features, check_positive_int, one_hot

_TINY = 1e-300


@dataclass(frozen=True)
class Evidence:
    """The fitted evidence of one target column: ``evidence`` is ``L(alpha, beta) / N``."""

    evidence: float
    alpha: float
    beta: float
    iterations: int


def _spectrum(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero squared singular values ``s^2 [k]`` of ``F`` and ``Z = U^T Y [k, K]``.

    For ``N > D`` from the eigen-decomposition of ``F^T F`` (``U^T Y = S^-1 V^T F^T Y``; several
    times cheaper than an SVD of ``F``), otherwise from the thin SVD of ``F``.
    """
    n, d = f.shape
    eps = np.finfo(np.float64).eps * max(n, d)
    if n > d:
        sigma, v = np.linalg.eigh(f.T @ f)
        keep = sigma > max(sigma.max(initial=0.0), 0.0) * eps
        return sigma[keep], (v[:, keep].T @ (f.T @ y)) / np.sqrt(sigma[keep])[:, None]
    u, sv, _ = np.linalg.svd(f, full_matrices=False)
    keep = sv > sv.max(initial=0.0) * eps
    return sv[keep] ** 2, u[:, keep].T @ y


def _fixed_point(sigma: np.ndarray, z: np.ndarray, res_perp: np.ndarray, n: int, d: int, *, tol: float,
                 max_iter: int) -> list[Evidence]:
    """MacKay's fixed point for every target column at once, given ``sigma = s_i^2`` and ``Z = U^T Y``.

    With ``t = alpha / beta``: ``m = V diag(s / (t + s^2)) z``, ``gamma = sum s^2 / (t + s^2)``,
    ``alpha <- gamma / m^T m``, ``beta <- (N - gamma) / ||F m - y||^2``, until ``t`` settles (per
    column). When the supremum lies at ``alpha`` or ``beta -> inf`` (no signal at all, or a noise-free
    fit when ``N <= D``) the iteration approaches it and stops at ``max_iter``.
    """
    s = sigma[:, None]
    z2 = z**2
    k, cols = z.shape
    alpha, beta = np.ones(cols), np.ones(cols)
    iters = np.zeros(cols, dtype=np.int64)
    active = np.ones(cols, dtype=bool)

    def stats(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = alpha / beta
        gamma = (s / (t + s)).sum(axis=0)
        m2 = (s * z2 / (t + s) ** 2).sum(axis=0)
        res2 = ((t / (t + s)) ** 2 * z2).sum(axis=0) + res_perp
        return gamma, m2, res2

    for _ in range(max_iter):
        gamma, m2, res2 = stats(alpha, beta)
        t_old = alpha / beta
        alpha = np.where(active, np.maximum(gamma, _TINY) / np.maximum(m2, _TINY), alpha)
        beta = np.where(active, np.maximum(n - gamma, _TINY) / np.maximum(res2, _TINY), beta)
        iters += active
        active &= np.abs(alpha / beta - t_old) > tol * t_old
        if not active.any():
            break
    _, m2, res2 = stats(alpha, beta)
    log_det_a = np.log(alpha + beta * s).sum(axis=0) + (d - k) * np.log(alpha)
    ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
          - beta / 2 * res2 - alpha / 2 * m2 - log_det_a / 2)
    return [Evidence(float(e / n), float(a), float(b), int(i)) for e, a, b, i in zip(ev, alpha, beta, iters)]


def logme_evidence(features: np.ndarray, targets: np.ndarray, *, tol: float = 1e-7,
                   max_iter: int = 200) -> list[Evidence]:
    """Maximised evidence ``L(alpha*, beta*) / N`` of each target column (see :func:`logme`).

    Shape:
        - features: ``[N, D]`` float
        - targets: ``[N, K]`` float (one regression target per column)
        - returns: ``K`` :class:`Evidence` records
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    n, d = f.shape
    sigma, z = _spectrum(f, y)  # [k], [k, K]
    res_perp = np.maximum((y**2).sum(axis=0) - (z**2).sum(axis=0), 0.0)  # ||y||^2 - ||U^T y||^2
    return _fixed_point(sigma, z, res_perp, n, d, tol=tol, max_iter=max_iter)


def logme(features: np.ndarray, labels: np.ndarray, *, tol: float = 1e-7, max_iter: int = 200) -> float:
    """LogME of features for a classification target (higher is better).

    You, Liu, Wang & Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning", ICML 2021. Each class ``c`` gives a one-vs-rest target ``y = [labels == c]``
    fitted by Bayesian linear regression ``y ~ N(F w, 1/beta)``, ``w ~ N(0, 1/alpha)``. The log
    evidence (marginal likelihood) is

        L(alpha, beta) = D/2 log alpha + N/2 log beta - N/2 log 2 pi
                         - beta/2 ||F m - y||^2 - alpha/2 m^T m - 1/2 log|A|,
        A = alpha I + beta F^T F,   m = beta A^{-1} F^T y,

    maximised over ``(alpha, beta)`` by MacKay's fixed-point iteration (``gamma = sum_i beta s_i^2
    / (alpha + beta s_i^2)``, ``alpha = gamma / m^T m``, ``beta = (N - gamma) / ||F m - y||^2``).
    The score is ``mean_c L_c / N``. One decomposition ``F = U S V^T`` serves every class and
    every iteration (all classes iterate together); ``log|A|`` counts the ``D - rank(F)`` zero
    singular values as ``log alpha`` each, so the value is exact also when ``N < D`` (the authors'
    fixed-point code omits that term there). Features are used as given (no normalisation).

    Shape:
        - features: ``[N, D]``
        - labels: ``[N]`` integers (at least 2 classes)
        - returns: scalar, the mean per-sample log evidence (nats)
    """
    f, y = check_features(features, labels)
    check_positive_int("max_iter", max_iter)
    if not 0 < tol < 1:
        raise ConfigError(f"logme tol must be in (0, 1), got {tol!r}")
    return float(np.mean([e.evidence for e in logme_evidence(f, one_hot(y), tol=tol, max_iter=max_iter)]))
