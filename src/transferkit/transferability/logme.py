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


#: ``log alpha`` and ``log beta`` stay within ``[-LOG_BOUND, LOG_BOUND]`` (``e^230 ~ 1e100``): a supremum
#: at ``alpha -> inf`` (no signal) or ``beta -> inf`` (a noise-free fit, e.g. ``N <= D``) is approached
#: that far, where the evidence has long settled, instead of overflowing.
LOG_BOUND = 230.0


def _stats(log_t: np.ndarray, s: np.ndarray, z2: np.ndarray, res_perp: np.ndarray,
           n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``gamma``, ``N - gamma``, ``m^T m``, ``||F m - y||^2`` and ``sum_i log(t + s_i)`` at ``t = alpha / beta``.

    Written with ``r_i = s_i / (t + s_i)`` and ``q_i = t / (t + s_i)``, both in ``[0, 1]``, so nothing
    overflows for any ``t``; ``N - gamma = (N - k) + sum_i q_i`` keeps its digits when ``gamma -> N``.
    """
    t = np.exp(log_t)
    r, q = s / (t + s), t / (t + s)
    gamma = r.sum(axis=0)
    rest = (n - len(s)) + q.sum(axis=0)
    m2 = (r**2 * z2 / s).sum(axis=0)
    res2 = (q**2 * z2).sum(axis=0) + res_perp
    return gamma, rest, m2, res2, np.log(t + s).sum(axis=0)


def _log(v: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(v, _TINY))


def _fixed_point(sigma: np.ndarray, z: np.ndarray, res_perp: np.ndarray, n: int, d: int, *, tol: float,
                 max_iter: int) -> list[Evidence]:
    """MacKay's fixed point for every target column at once, given ``sigma = s_i^2`` and ``Z = U^T Y``.

    With ``t = alpha / beta``: ``m = V diag(s / (t + s^2)) z``, ``gamma = sum s^2 / (t + s^2)``,
    ``alpha <- gamma / m^T m``, ``beta <- (N - gamma) / ||F m - y||^2``, until ``t`` settles (per
    column; relative change below ``tol``). The iteration runs on ``log alpha`` and ``log beta``
    (bounded by :data:`LOG_BOUND`), as the authors' reference code bounds ``alpha`` and ``beta`` by
    adding ``1e-5`` to both denominators: when the supremum lies at ``alpha`` or ``beta -> inf`` (no
    signal at all, or a noise-free fit when ``N <= D``) it stops at the bound, with no overflow.
    With ``k`` non-zero ``s_i^2`` the evidence is evaluated as

        L = k/2 log alpha + (N - k)/2 log beta - 1/2 sum_i log(t + s_i^2) - N/2 log 2 pi
            - beta/2 ||F m - y||^2 - alpha/2 m^T m

    (``log|A| = sum_i log(alpha + beta s_i^2) + (D - k) log alpha``, with ``alpha + beta s_i^2 =
    beta (t + s_i^2)``), which is finite for any bounded ``alpha, beta``.
    """
    s = sigma[:, None]
    z2 = z**2
    k, cols = z.shape
    log_a, log_b = np.zeros(cols), np.zeros(cols)
    iters = np.zeros(cols, dtype=np.int64)
    active = np.ones(cols, dtype=bool)
    for _ in range(max_iter):
        gamma, rest, m2, res2, _ = _stats(log_a - log_b, s, z2, res_perp, n)
        log_t_old = log_a - log_b
        log_a = np.where(active, np.clip(_log(gamma) - _log(m2), -LOG_BOUND, LOG_BOUND), log_a)
        log_b = np.where(active, np.clip(_log(rest) - _log(res2), -LOG_BOUND, LOG_BOUND), log_b)
        iters += active
        change = np.abs(np.expm1(np.minimum(np.abs(log_a - log_b - log_t_old), 1.0)))  # |t / t_old - 1|, capped
        active &= change > tol
        if not active.any():
            break
    _, _, m2, res2, log_t_s = _stats(log_a - log_b, s, z2, res_perp, n)
    ev = (k / 2 * log_a + (n - k) / 2 * log_b - log_t_s / 2 - n / 2 * np.log(2 * np.pi)
          - np.exp(log_b) / 2 * res2 - np.exp(log_a) / 2 * m2)
    return [Evidence(float(e / n), float(np.exp(a)), float(np.exp(b)), int(i))
            for e, a, b, i in zip(ev, log_a, log_b, iters, strict=True)]


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
