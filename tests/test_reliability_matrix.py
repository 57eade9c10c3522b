"""Every case of the bad-input matrix (benchmarks/reliability.py) ends in one clear line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import transferkit
import transferkit.data
import transferkit.errors

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


def test_new_modalities_and_config_cases_name_their_culprit(outcomes: list) -> None:  # type: ignore[type-arg]
    by = {o.case: o.message for o in outcomes}
    assert "wavs/b/1.wav" in by["truncated WAV file"]
    assert "notwav/b/0.wav" in by["corrupt (non-PCM) WAV file"]
    assert "notext.jsonl" in by["text field missing (JSON Lines)"]
    assert "ragged.csv" in by["ragged CSV rows"]
    assert "text" in by["text data into an image model (modality)"]
    assert "model.safetensors" in by["architecture does not match the weights"]
    assert "did you mean 'efficientnet_lite0'" in by["unknown backbone (did you mean)"]
    assert "did you mean 'logme'" in by["unknown transferability score"]
    assert "escapes the config's folder" in by["config path escapes its folder"]
    assert "did you mean 'epochs'" in by["config with an unknown key"]


API_CASES = {
    "missing data path": (lambda tmp, src: transferkit.pretrain(str(tmp / "nope"), out=tmp / "o"), "DataError", "no such file"),
    "unknown strategy": (lambda tmp, src: transferkit.transfer(src, "digits8", strategy="lpft", out=tmp / "o"),
                         "ConfigError", "did you mean 'lp_ft'"),
    "modality mismatch": (lambda tmp, src: transferkit.transfer(src, "vader-tweets", out=tmp / "o"), "DataError",
                          "text data cannot feed the image model"),
    "unknown backbone": (lambda tmp, src: transferkit.transfer("efficientnet_lite", "digits8", out=tmp / "o"),
                         "CheckpointError", "did you mean 'efficientnet_lite0'"),
    "negative learning rate": (lambda tmp, src: transferkit.transfer(src, "digits8", lr=-0.1, out=tmp / "o"),
                               "ConfigError", "-0.1"),
    "shots larger than a class": (lambda tmp, src: transferkit.transfer(src, "digits8", shots=500, out=tmp / "o"),
                                  "ConfigError", "shots=500"),
    "unknown score": (lambda tmp, src: transferkit.rank([src], "digits8", scores=("logm",)), "ConfigError",
                      "did you mean 'logme'"),
    "unknown dataset option": (lambda tmp, src: transferkit.data.load_dataset("spoken-digits:voice=B"), "ConfigError",
                               "did you mean 'voices'"),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_the_api_raises_the_same_typed_one_line_errors(case: str, tmp_path: Path, source_run: Path) -> None:
    """The CLI's messages come from the API: a Python caller gets the typed error, one line, no run left complete."""
    call, kind, text = API_CASES[case]
    with pytest.raises(transferkit.errors.TransferkitError) as info:
        call(tmp_path, source_run)
    assert type(info.value).__name__ == kind and text in str(info.value) and "\n" not in str(info.value)
    run_json = tmp_path / "o" / "run.json"
    assert not run_json.exists() or '"complete"' not in run_json.read_text()
