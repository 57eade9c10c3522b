"""Every case of the bad-input matrix (benchmarks/reliability.py) ends in one clear line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "reliability", Path(__file__).resolve().parent.parent / "benchmarks" / "reliability.py")
assert _SPEC is not None and _SPEC.loader is not None
reliability = importlib.util.module_from_spec(_SPEC)
sys.modules["reliability"] = reliability  # dataclasses look their module up there
_SPEC.loader.exec_module(reliability)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list:  # type: ignore[type-arg]
    return reliability.run_matrix(tmp_path_factory.mktemp("matrix"))


def test_every_bad_input_ends_in_one_line_and_a_nonzero_exit(outcomes: list) -> None:  # type: ignore[type-arg]
    bad = [(o.case, o.exit_code, o.lines, o.traceback, o.message) for o in outcomes if not o.ok]
    assert not bad
    assert len(outcomes) >= 20


def test_each_message_names_its_culprit(outcomes: list) -> None:  # type: ignore[type-arg]
    by = {o.case: o.message for o in outcomes}
    assert "nolabel.csv" in by["CSV without a label column"]
    assert "corrupt/b/1.png" in by["corrupt image"]
    assert "did you mean 'lp_ft'" in by["unknown strategy (did you mean)"]
    assert "did you mean 'mnist5k'" in by["unknown dataset name"]
    assert "pickle" in by["a pickle posing as weights"] and "safetensors" in by["a pickle posing as weights"]
    assert "lr" in by["negative learning rate"] and "-0.1" in by["negative learning rate"]
    assert "status: running" in by["incomplete (killed) source run"]
