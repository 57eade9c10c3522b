"""Contract checks run on every registered score (a new score is covered by registering it)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import pytest

from transferkit.errors import ConfigError, DataError
from transferkit.transferability import SCORES, Score

NAMES = list(SCORES)
#: fold assignment follows row order, so the CV probe moves slightly when rows are shuffled
ROW_ORDER_DEPENDENT = {"linear_probe_cv"}


@pytest.fixture(scope="module")
def sample(make_blobs: Callable[..., tuple[np.ndarray, np.ndarray]],
           make_probs: Callable[..., np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each kind of input: (informative x, uninformative x, labels)."""
    f, y = make_blobs(n_per_class=25, classes=4, dim=12, sep=1.2, seed=30)
    noise = np.random.default_rng(31).normal(size=f.shape)
    return {"features": (f, noise, y),
            "probs": (make_probs(y, 6, informative=True, seed=32), make_probs(y, 6, informative=False, seed=33), y)}


def test_the_expected_scores_are_registered() -> None:
    assert {"logme", "leep", "nce", "hscore", "knn", "linear_probe_cv", "sfda", "parc", "gbc"} <= set(NAMES)


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="score 'logme' is already registered"):
        SCORES.add("logme", SCORES.get("logme"))


def test_unknown_score_suggests_a_name() -> None:
    with pytest.raises(ConfigError, match="unknown score 'logmee' \\(did you mean 'logme'\\?\\)"):
        SCORES.get("logmee")


@pytest.mark.parametrize("name", NAMES)
def test_entry_metadata_and_docstring(name: str) -> None:
    score = SCORES.get(name)
    assert isinstance(score, Score)
    assert score.needs in ("features", "probs")
    assert score.paper
    doc = inspect.getdoc(score.fn) or ""
    assert "Shape:" in doc, f"{name}: docstring needs a Shape: section"
    assert any(str(year) in doc for year in range(2004, 2030)), f"{name}: docstring should cite the paper"
    assert SCORES.list(name)[0].summary


@pytest.mark.parametrize("name", NAMES)
def test_informative_input_scores_better_than_noise(name: str, sample: dict) -> None:
    score = SCORES.get(name)
    good, bad, y = sample[score.needs]
    g, b = score(good, y), score(bad, y)
    assert isinstance(g, float) and np.isfinite(g) and np.isfinite(b)
    assert (g > b) if score.higher_is_better else (g < b)


@pytest.mark.parametrize("name", NAMES)
def test_invariant_to_renaming_classes_and_to_row_order(name: str, sample: dict) -> None:
    score = SCORES.get(name)
    x, _, y = sample[score.needs]
    base = score(x, y)
    renamed = np.array([7, 3, 11, 5])[y]  # any distinct integers work as class ids
    assert score(x, renamed) == pytest.approx(base, rel=1e-7, abs=1e-10)
    if name not in ROW_ORDER_DEPENDENT:
        perm = np.random.default_rng(0).permutation(len(y))
        assert score(x[perm], y[perm]) == pytest.approx(base, rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_one_line_errors(name: str, sample: dict) -> None:
    score = SCORES.get(name)
    x, _, y = sample[score.needs]
    cases: list[tuple[np.ndarray, np.ndarray, str]] = [
        (x, y[:-1], f"{len(y)} input rows but {len(y) - 1} labels"),
        (x, np.zeros_like(y), "need at least 2 target classes, got 1"),
        (x, y.astype(np.float64), "labels must be integers, got dtype float64"),
        (x, y[:, None], "labels must be 1-D"),
        (x[0], y, "must be 2-D"),
    ]
    nan = x.copy()
    nan[3, 0] = np.nan
    cases.append((nan, y, "contain NaN or inf \\(first in row 3\\)"))
    if score.needs == "probs":
        cases.append((x * 2, y, "row 0 sums to 2"))
    for bad_x, bad_y, message in cases:
        with pytest.raises(DataError, match=message) as e:
            score(bad_x, bad_y)
        assert "\n" not in str(e.value)
