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
    assert len(outcomes) >= 100
    assert sum(o.expect == "result" for o in outcomes) >= 9


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



def test_run_folder_and_table_cases_name_their_culprit(outcomes: list) -> None:  # type: ignore[type-arg]
    by = {o.case: o.message for o in outcomes}
    assert "h1/p: exists and is not a transferkit run (holds checkpoints/, config.json)" in \
        by["--out is a user's folder, with --overwrite"]
    assert "h1/q: exists and is not a transferkit run (holds run.json)" in \
        by["--out holds a run.json not written by transferkit"]
    assert "h1/race: in use by a running transferkit command (pid " in by["--out is in use by a running command"]
    for case, name in (("predict --out is a user's file", "notes.csv"), ("report --out is a user's file", "index.html"),
                       ("rank --json is a user's file", "mine.json")):
        assert f"h1/{name}: exists and was not written by transferkit" in by[case]
    assert "somefolder: is a folder" in by["predict --out is a folder"]
    assert "status: foreign" in by["evaluate a run.json with a foreign status"]
    assert "unnamed.csv: column 2 of the header has no name" in by["CSV header with an unnamed column"]
    assert "twice.csv: column 'a' appears twice" in by["CSV header names a column twice"]
    assert "oops.csv: line 3, column 'b': 'oops' is not a number" in by["a word in a numeric column"]
    assert "nolabel.csv: line 3: the label column 'label'" in by["an empty label cell"]
    assert "no label column 'kind'" in by["--label-column names no column"]
    assert "no text column 'review'" in by["--text-column names no column"]
    assert "--text-column review" in by["free text in a table, no --text-column"]
    for verb in ("transfer", "evaluate", "predict"):
        assert "differ.csv: its columns differ" in by[f"{verb}: columns differ from the model's"]
        assert "missing hue; extra tint, extra" in by[f"{verb}: columns differ from the model's"]
    assert "digits8: image data cannot feed the tabular model mlp" in by["transfer a tabular run to images"]
    assert "digit.png: a tabular model takes" in by["predict an image with a tabular run"]


def test_image_config_export_and_engine_cases_name_their_culprit(outcomes: list) -> None:  # type: ignore[type-arg]
    by = {o.case: o.message for o in outcomes}
    assert "inputs/one: only one class ('3')" in by["a data set with one class"]
    assert "declared.npz: image values 0..16 lie outside the range 0..8" in by["values 0..16 beyond a declared 0..8"]
    assert "negative.npz" in by["negative pixel values"] and "negative" in by["negative pixel values"]
    assert "big13k.png: image is 13000x13000" in by["a 13000x13000 PNG (decompression bomb)"]
    assert "corrupt/4/broken.png" in by["a corrupt image in a predict folder"]
    assert "--skip-bad-files" in by["a corrupt image in a predict folder"]
    assert "k=99" in by["partial --option k=99"]
    assert "names differ" in by["--head keep, same count, other class names"]
    assert "--top-k 0" in by["predict --top-k 0"]
    assert "abs.toml: unlabelled = " in by["config: unlabelled is an absolute path"]
    assert "escapes the config's folder" in by["config: unlabelled climbs out (rest+../)"]
    assert "clients_from = " in by["config: clients_from holds an absolute path"]
    assert "candidates = " in by["config: rank candidates hold an absolute path"]
    assert "--device 'tpu'" in by["--device tpu"]
    assert "running: not a complete run (status: running)" in by["export a run that is not complete"]
    assert "existing.onnx: already exists" in by["export onto an existing file"]
    assert "m.txt: the export file must end in .onnx" in by["export to a file not ending in .onnx"]
    assert "--tolerance -1" in by["export --tolerance -1"]
    assert "pytorch_model.bin: a pickle" in by["HF folder with only pytorch_model.bin"]
    assert "no_tokenizer: no tokenizer files" in by["HF folder without tokenizer files"]
    assert "augment='sideways'" in by["--augment sideways"]
    assert "augment=on applies to image models; minilm" in by["--augment on with a text model"]
    assert "'weather' is not a class of vader-tweets" in by["zeroshot --labels names no class"]
    lr = next(o for o in outcomes if o.case == "--lr 1e6 (divergence)")
    assert "seed='abc' is not a valid int" in by["--seed is not a number"]  # typed by the spec, naming the field
    assert "required: --data" in by["a required flag missing"]
    assert "--learning-rate" in by["an unknown flag"] and "'frobnicate'" in by["an unknown command"]
    assert "epochs" in by["--epochs 0"] and "batch_size" in by["--batch-size 0"] and "nan" in by["--lr nan"]
    assert "--top-k 11" in by["predict --top-k above the class count"]
    assert "nowhere: no such run directory" in by["rank a candidate that does not exist"]
    assert "'positive' of vader-tweets is given twice" in by["zeroshot --labels names a class twice"]
    assert "unknown strategy option 'k'" in by["a strategy option the strategy lacks"]
    assert "--lr 1e+06" in lr.message and "--lr 0.001" in lr.message and lr.lines == 1


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
