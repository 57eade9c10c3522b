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


def test_bnm_is_the_normalised_nuclear_norm_of_the_predictions() -> None:
    logits = RNG.normal(scale=2.0, size=(50, 4))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    expected = np.linalg.norm(p, ord="nuc") / np.sqrt(50 * 4)
    assert score("bnm", ValidationData(logits, np.zeros((50, 2)))) == pytest.approx(expected, rel=1e-9)
    # confident and balanced: the bound 1; confident but collapsed onto one class: 1/sqrt(C)
    assert score("bnm", ValidationData(np.eye(4)[np.arange(40) % 4] * 50.0, np.zeros((40, 2)))) == pytest.approx(1.0)
    collapsed = ValidationData(np.tile([50.0, 0, 0, 0], (40, 1)), np.zeros((40, 2)))
    assert score("bnm", collapsed) == pytest.approx(0.5)
    assert "bnm" in score_all(ValidationData(logits, np.zeros((50, 2))))


def test_agreement_flags_a_pick_another_validator_ranks_in_its_worse_half() -> None:
    from transferkit.adaptation.validators import agreement

    same = agreement([{"im": 1.0, "snd": 3.0}, {"im": 0.5, "snd": 2.0}, {"im": 0.1, "snd": 1.0}])
    assert same["all_agree"] and same["spread"] == 0.0 and not same["disagree"]
    near = agreement([{"im": 1.0, "snd": 2.9}, {"im": 0.9, "snd": 3.0}, {"im": 0.1, "snd": 1.0}])
    assert not near["all_agree"] and near["spread"] == 0.5 and not near["disagree"]
    far = agreement([{"im": 1.0, "snd": 1.0}, {"im": 0.9, "snd": 2.0}, {"im": 0.1, "snd": 3.0}])
    assert far["picks"] == {"im": 0, "snd": 2} and far["spread"] == 1.0 and far["disagree"]


def test_assess_notes_a_disagreement_and_points_to_suggest_labels() -> None:
    from transferkit.adaptation.stages import disagreement_note
    from transferkit.adaptation.validators import agreement

    far = agreement([{"im": 1.0, "snd": 1.0}, {"im": 0.9, "snd": 2.0}, {"im": 0.1, "snd": 3.0}])
    note = disagreement_note(far, ["dann", "mcc", "coral"], "digits8")
    assert note is not None and "im picks dann" in note and "snd picks coral" in note
    assert "transferkit suggest-labels" in note and "--data digits8" in note
    near = agreement([{"im": 1.0, "snd": 2.9}, {"im": 0.9, "snd": 3.0}, {"im": 0.1, "snd": 1.0}])
    assert disagreement_note(near, ["dann", "mcc", "coral"], "digits8") is None
