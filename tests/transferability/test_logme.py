"""LogME against a direct (slow) evaluation of the evidence and against its maximiser."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy.optimize import minimize

Blobs = Callable[..., tuple[np.ndarray, np.ndarray]]

from transferkit.transferability import logme, logme_evidence


def direct_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """L(alpha, beta) / N straight from the formula: A, m, log|A| by dense linear algebra."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, logdet = np.linalg.slogdet(a)
    ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
          - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m - logdet / 2)
    return float(ev / n)


@pytest.mark.parametrize("n,d", [(60, 8), (12, 30)], ids=["N>D", "N<D"])
def test_evidence_matches_the_formula_at_the_fitted_alpha_beta(n: int, d: int) -> None:
    rng = np.random.default_rng(1)
    f = rng.normal(size=(n, d))
    y = (rng.random(n) < 0.4).astype(np.float64)
    (fit,) = logme_evidence(f, y[:, None])
    assert fit.evidence == pytest.approx(direct_evidence(f, y, fit.alpha, fit.beta), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("n,d,tol", [(60, 8, 1e-9), (12, 30, 1e-4)], ids=["N>D", "N<D"])
def test_fixed_point_is_the_evidence_maximum(n: int, d: int, tol: float) -> None:
    """A numerical optimiser of the slow formula finds no higher evidence.

    With N < D every target lies in the span of F, and the supremum can sit at beta -> inf (a
    noise-free fit); the iteration then approaches it without reaching it, hence the looser bound.
    """
    rng = np.random.default_rng(2)
    f = rng.normal(size=(n, d)) + 0.5
    y = (rng.random(n) < 0.5).astype(np.float64) + 0.3 * f[:, 0]
    (fit,) = logme_evidence(f, y[:, None])

    def neg(log_ab: np.ndarray) -> float:
        return -direct_evidence(f, y, *np.exp(log_ab))

    best = min((minimize(neg, np.array(x0), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14,
                                                                             "maxiter": 4000})
                for x0 in [(0.0, 0.0), (3.0, -2.0), (-3.0, 2.0)]), key=lambda r: r.fun)
    assert fit.evidence == pytest.approx(-best.fun, abs=tol)
    if n > d:  # an interior maximum: the same (alpha, beta)
        assert np.log([fit.alpha, fit.beta]) == pytest.approx(best.x, abs=1e-3)


def test_logme_averages_one_vs_rest_evidence_over_classes(make_blobs: Blobs) -> None:
    f, y = make_blobs(n_per_class=15, classes=3, dim=5)
    fits = logme_evidence(f, np.eye(3)[y])
    expected = np.mean([direct_evidence(f, (y == c).astype(float), e.alpha, e.beta) for c, e in enumerate(fits)])
    assert logme(f, y) == pytest.approx(expected, rel=1e-10)


def test_more_separable_features_score_higher(make_blobs: Blobs) -> None:
    values = [logme(*make_blobs(sep=sep, seed=3)) for sep in (0.1, 1.0, 3.0, 10.0)]
    assert values == sorted(values), values


def test_invariant_to_rotating_the_features(make_blobs: Blobs) -> None:
    """The isotropic prior makes the evidence depend on F only through its singular values and U."""
    f, y = make_blobs(dim=6, seed=4)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))
    assert logme(f @ q, y) == pytest.approx(logme(f, y), rel=1e-9)


def test_all_zero_features_stay_finite() -> None:
    y = np.array([0, 1] * 10)
    assert np.isfinite(logme(np.zeros((20, 4)), y))


def _no_signal_target(f: np.ndarray, seed: int = 0) -> np.ndarray:
    """A target column with no linear relation to ``f``: noise with its projection on ``F``'s span removed."""
    y = np.random.default_rng(seed).normal(size=len(f))
    return y - f @ np.linalg.lstsq(f, y, rcond=None)[0]


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e6])
def test_a_target_without_signal_stops_at_the_bound_without_overflow(pretrained_inputs: Any, scale: float) -> None:
    """The supremum at alpha -> inf used to be chased for max_iter steps until ``(t + s)^2`` overflowed
    (a RuntimeWarning from ``auto`` on real features, issue 17 item 9); now it stops at the bound."""
    f = pretrained_inputs.features[:, :24] * scale  # N > D: an interior beta, alpha -> inf
    y = _no_signal_target(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (fit,) = logme_evidence(f, y[:, None])
    assert fit.iterations < 20 and fit.alpha > 1e90
    assert fit.evidence == pytest.approx(direct_evidence(f, y, fit.alpha, fit.beta), rel=1e-9)


def _bf16(f: np.ndarray) -> np.ndarray:
    import torch

    return torch.from_numpy(f).to(torch.bfloat16).double().numpy()


def test_no_runtime_warning_on_real_features(pretrained_inputs: Any, random_init_inputs: Any) -> None:
    """Real digits8 features of a pretrained and an untrained CNN: all 500, few-shot draws (N < D: the
    noise-free fit, beta -> inf), bf16-rounded and rescaled copies; every score finite, no warning."""
    y = pretrained_inputs.labels
    cases: list[tuple[np.ndarray, np.ndarray]] = []
    for inputs in (pretrained_inputs, random_init_inputs):
        f = inputs.features
        cases += [(f, y), (_bf16(f), y), (f * 1e-6, y), (f * 1e6, y)]
        for seed in range(8):
            rng = np.random.default_rng(seed)
            idx = np.concatenate([rng.choice(np.flatnonzero(y == c), 5, replace=False) for c in range(10)])
            cases.append((f[idx], y[idx]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = [logme(f, lab) for f, lab in cases]
    assert np.isfinite(values).all()
