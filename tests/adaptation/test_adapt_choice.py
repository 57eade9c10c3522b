"""The label-free choice among auto's candidates: the validator's best unless its lead is within resampling noise
of a candidate earlier in the order of measured accuracy (``stages.choose``, ``validators.pick_within_noise``)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from transferkit.adaptation.spec import AUTO_CANDIDATES
from transferkit.adaptation.stages import CandidateRun, choose
from transferkit.adaptation.validators import ValidationData, info_max, leads, pick_within_noise, resampled

ROOT = Path(__file__).resolve().parents[2]


def _confident(n: int, classes: int, seed: int, sharp: float) -> np.ndarray:
    """Logits of ``n`` predictions spread over ``classes``, each confident to a degree drawn per row."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, classes))
    z[np.arange(n), rng.integers(0, classes, n)] += sharp * rng.uniform(0.5, 1.5, n)
    return z


def _data(z: np.ndarray) -> ValidationData:
    return ValidationData(z, np.zeros((len(z), 2)))


def test_the_order_is_uda_json_s_mean_accuracy_order() -> None:
    uda = json.loads((ROOT / "docs" / "uda.json").read_text())
    acc: dict[str, list[float]] = {}
    for cell in uda["cells"].values():
        for key, c in cell["candidates"].items():
            acc.setdefault(key.split(":")[0].split("(")[0], []).append(c["acc"])
    measured = sorted(acc, key=lambda m: -statistics.fmean(acc[m]))
    assert [c.split(":")[0] for c in AUTO_CANDIDATES] == [m for m in measured if m in
                                                         {c.split(":")[0] for c in AUTO_CANDIDATES}]


def test_resamples_pair_on_the_same_rows() -> None:
    z = _confident(270, 10, 0, 4.0)
    a, b = resampled("im", _data(z), seed=3), resampled("im", _data(z.copy()), seed=3)
    assert a is not None and b is not None and a.shape == (200,)
    assert np.array_equal(a, b) and not leads(a, b)  # the same model on the same rows: no lead
    assert abs(float(np.mean(a)) - info_max(_data(z))) < 0.05  # resamples centre on the score
    assert resampled("dev", _data(z)) is None  # reads source labels: not resampled


def test_a_lead_within_noise_goes_to_the_earlier_candidate() -> None:
    z = _confident(270, 10, 0, 4.0)
    noisy = z + np.random.default_rng(1).normal(scale=0.05, size=z.shape)  # the same predictions, jittered
    scores = [info_max(_data(z)), info_max(_data(noisy))]
    later_best = int(np.argmax(scores))
    order = [1, 0] if later_best == 0 else [0, 1]  # the validator's best is the later one in the order
    res = [resampled("im", _data(z)), resampled("im", _data(noisy))]
    pick, best, tied = pick_within_noise(scores, res, order)
    assert best == later_best and tied == [1 - best] and pick == 1 - best


def test_a_clear_lead_keeps_the_validator_s_best() -> None:
    sharp, vague = _confident(270, 10, 0, 6.0), _confident(270, 10, 0, 1.0)
    scores = [info_max(_data(vague)), info_max(_data(sharp))]
    res = [resampled("im", _data(vague)), resampled("im", _data(sharp))]
    assert pick_within_noise(scores, res, [0, 1]) == (1, 1, [])  # the earlier one is clearly worse
    assert pick_within_noise(scores, [None, None], [0, 1]) == (1, 1, [])  # no resamples: the best


def _run(label: str, z: np.ndarray) -> CandidateRun:
    return CandidateRun({"label": label, "validators": {"im": info_max(_data(z))}}, None,  # type: ignore[arg-type]
                        resampled=resampled("im", _data(z)))


def test_choose_records_the_rule_and_notes_an_override() -> None:
    z = _confident(270, 10, 0, 4.0)
    jitter = [z + np.random.default_rng(s).normal(scale=0.05, size=z.shape) for s in range(1, 8)]
    first, second = next((a, b) for a, b in zip(jitter, jitter[1:], strict=False)
                         if info_max(_data(b)) > info_max(_data(a)))
    runs = [_run("st", first), _run("mcc", second), _run("vague", _confident(270, 10, 5, 0.5))]
    pick, info = choose(runs, "im", ["st", "mcc", "vague"])
    assert pick is runs[0] and info["validator_best"] == "mcc" and info["within_noise"] == ["st"]
    assert info["lead_share"]["st"] < 0.95 <= info["lead_share"]["vague"] and "within noise" in info["note"]
    pick, info = choose(runs, "im", ["mcc", "st", "vague"])  # the best is first in the order: no override
    assert pick is runs[1] and info["within_noise"] == [] and "note" not in info


@pytest.mark.parametrize("order", [["a", "b"], ["b", "a"]])
def test_exact_ties_without_resamples_keep_the_first_run(order: list[str]) -> None:
    runs = [CandidateRun({"label": k, "validators": {"dev": -1.0}}, None) for k in ("a", "b")]  # type: ignore[arg-type]
    assert choose(runs, "dev", order)[0] is runs[0]


def test_a_diverged_candidate_is_never_the_choice() -> None:
    r = np.linspace(1.0, 2.0, 200)
    nan = np.full(200, np.nan)
    # the NaN one comes first in the order and scores NaN: it neither ranks best nor counts as tied
    assert pick_within_noise([float("nan"), 1.5, 1.6], [nan, r - 0.5, r], [0, 1, 2]) == (2, 2, [])
    assert pick_within_noise([1.5, float("inf"), 1.6], [r, r, r], [0, 1, 2])[1] == 2  # inf ranks last too
    assert leads(r, nan)  # a score that is not a number is led by any number


def test_snd_is_not_resampled() -> None:  # a row's duplicate would be its nearest neighbour
    assert resampled("snd", _data(_confident(50, 3, 0, 2.0))) is None


def test_selection_and_the_cli_line_speak_of_the_chosen_candidate() -> None:
    from transferkit.adaptation.cli import candidate_lines
    from transferkit.adaptation.stages import selection_report

    cands = [{"label": "st", "validators": {"im": 2.25}, "target_accuracy": 0.92},
             {"label": "mcc", "validators": {"im": 2.26}, "target_accuracy": 0.83}]
    sel = selection_report(cands, "st")
    assert sel["validators"]["im"]["choice"] == "mcc" and not sel["validators"]["im"]["matches"]  # im's argmax
    assert sel["chosen"] == {"choice": "st", "matches": True, "regret": 0.0}
    line = candidate_lines({"candidates": cands, "chosen": "st", "selection": sel}, "im")[-1]
    assert line == "chose st by im (matches the label oracle st)"
