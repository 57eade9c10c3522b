"""Label-free validators and the proxy A-distance: sanity on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.adaptation.adistance import proxy_a_distance
from transferkit.adaptation.validators import VALIDATORS, ValidationData, score, score_all

RNG = np.random.default_rng(0)


def _clustered(n: int = 120, c: int = 4, scale: float = 8.0) -> np.ndarray:
    return np.eye(c)[np.arange(n) % c] * scale + RNG.normal(scale=0.3, size=(n, c))


def test_information_maximisation_prefers_confident_diverse_predictions() -> None:
    good = ValidationData(_clustered(), np.zeros((120, 2)))
    collapsed = ValidationData(np.tile([8.0, 0, 0, 0], (120, 1)) + RNG.normal(scale=0.3, size=(120, 4)), np.zeros((120, 2)))
    unsure = ValidationData(RNG.normal(scale=0.1, size=(120, 4)), np.zeros((120, 2)))
    assert score("im", good) > score("im", collapsed)
    assert score("im", good) > score("im", unsure)
    assert score("entropy", good) > score("entropy", unsure)
    assert score("im", good) == pytest.approx(np.log(4), abs=0.05)


def test_snd_prefers_clustered_predictions() -> None:
    clustered = ValidationData(_clustered(), np.zeros((120, 2)))
    diffuse = ValidationData(RNG.normal(scale=1.0, size=(120, 4)), np.zeros((120, 2)))
    assert score("snd", clustered) > score("snd", diffuse)


def test_dev_ranks_lower_source_risk_higher() -> None:
    fs, ft = RNG.normal(size=(150, 5)), RNG.normal(loc=0.3, size=(150, 5))
    y = np.arange(150) % 3
    right = np.eye(3)[y] * 5.0
    wrong = np.eye(3)[(y + 1) % 3] * 5.0
    good = ValidationData(np.zeros((150, 3)), ft, right, y, fs)
    bad = ValidationData(np.zeros((150, 3)), ft, wrong, y, fs)
    assert score("dev", good) > score("dev", bad)
    assert set(score_all(good)) == set(VALIDATORS)
    assert "dev" not in score_all(ValidationData(right, ft))


def test_proxy_a_distance_extremes() -> None:
    a, b = RNG.normal(size=(300, 4)), RNG.normal(size=(300, 4))
    assert proxy_a_distance(a, b) < 0.4
    assert proxy_a_distance(a, b + 6.0) == pytest.approx(2.0, abs=0.02)
