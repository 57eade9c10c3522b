"""The command line: listings, the pretrain -> transfer -> evaluate -> predict path, and user errors
that end in one ``transferkit: error:`` line with a non-zero exit and no traceback."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.cli import main
from transferkit.data import DATASETS, ArrayDataset
from transferkit.models import MODELS
from transferkit.runs import RunDir, load_run
from transferkit.strategies import STRATEGIES

FAST = ["--epochs", "1", "--batch-size", "128", "--precision", "fp32", "--progress", "off"]
_SCRIPT = Path(sys.executable).parent / "transferkit"
#: the installed console script (``python -m transferkit`` where the script is not beside the interpreter)
SCRIPT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "transferkit"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(path)


# ------------------------------------------------------------------------------ listings


@pytest.mark.parametrize(("kind", "registry"), [("datasets", DATASETS), ("strategies", STRATEGIES),
                                                 ("models", MODELS)])
def test_listings(kind: str, registry: object, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, kind)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(registry)  # type: ignore[call-overload]
    assert all(len(ln.split()) > 1 for ln in lines), "an entry without a summary"


def test_listing_glob(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "strategies", "l*")
    assert code == 0
    names = [ln.split()[0] for ln in out.splitlines()]
    assert names == [n for n in STRATEGIES if n.startswith("l")] and "lp_ft" in names


def test_help_subprocess_is_fast_and_clean() -> None:
    proc = subprocess.run([*SCRIPT, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: transferkit")
    for cmd in ("pretrain", "transfer", "evaluate", "predict", "strategies"):
        assert cmd in proc.stdout
    assert proc.stderr == ""


def test_error_subprocess_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([*SCRIPT, "evaluate", str(tmp_path / "nothing"), "--data", "digits8"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("transferkit: error:"), proc.stderr
    assert str(tmp_path / "nothing") in lines[0]


# ------------------------------------------------------------------------------ user errors


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, digits_ds: ArrayDataset) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    imgs = root / "images"
    _png(imgs / "zero" / "a.png", digits_ds.x[0, 0])
    _png(imgs / "one" / "b.png", digits_ds.x[1, 0])
    (imgs / "one" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    nolabel = root / "nolabel.csv"
    nolabel.write_text("f1,f2,f3\n0.1,0.2,0.3\n0.3,0.2,0.1\n")
    three = root / "three.npz"
    y = digits_ds.require_labels()
    idx = np.flatnonzero(y < 3)[:60]
    np.savez(three, x=digits_ds.x[idx], y=y[idx])
    return {"images": imgs, "nolabel": nolabel, "three": three, "root": root}


def _assert_one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    code, out, err = _run(capsys, *argv)
    assert code != 0, f"{argv} succeeded"
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("transferkit: error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _no_running_run(path: Path) -> None:
    assert RunDir(path).status() in (None, "failed"), f"{path} left as {RunDir(path).status()}"


def test_missing_data_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "data"
    _assert_one_line_error(capsys, ["pretrain", "--data", str(missing), "--out", str(tmp_path / "o"), *FAST],
                           str(missing), "no such file or folder")
    _no_running_run(tmp_path / "o")


def test_unknown_dataset_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["pretrain", "--data", "mnist5", "--out", str(tmp_path / "o"), *FAST],
                           "unknown dataset 'mnist5'", "did you mean 'mnist5k'")


def test_unknown_strategy(capsys: pytest.CaptureFixture[str], source_run: Path, tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["transfer", "--source", str(source_run), "--data", "digits8", "--strategy", "lpft",
                                    "--out", str(tmp_path / "o"), *FAST],
                           "unknown strategy 'lpft'", "did you mean 'lp_ft'")
    _no_running_run(tmp_path / "o")


def test_bad_strategy_option(capsys: pytest.CaptureFixture[str], source_run: Path, tmp_path: Path) -> None:
    base = ["transfer", "--source", str(source_run), "--data", "digits8", "--strategy", "partial",
            "--out", str(tmp_path / "o"), *FAST]
    _assert_one_line_error(capsys, [*base, "--option", "k"], "--option expects key=value")
    _assert_one_line_error(capsys, [*base, "--option", "kk=2"], "unknown strategy option 'kk'")
    _assert_one_line_error(capsys, [*base, "--option", "k=0"], "k must be at least 1")


def test_negative_lr(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["pretrain", "--data", "mnist5k", "--out", str(tmp_path / "o"), "--lr", "-0.1"],
                           "lr must be positive", "-0.1")
    _no_running_run(tmp_path / "o")


def test_bad_choice_value(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["pretrain", "--data", "mnist5k", "--out", str(tmp_path / "o"),
                                    "--optimizer", "adam"], "optimizer='adam' is not one of adamw, sgd")


def test_bad_model_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = ["pretrain", "--data", "mnist5k", "--out", str(tmp_path / "o"), *FAST]
    _assert_one_line_error(capsys, [*base, "--model-opt", "widht=8"], "unknown option 'widht'",
                           "did you mean 'width'")
    _assert_one_line_error(capsys, [*base, "--model-opt", "width=wide"], "width='wide' is not a valid int")
    _assert_one_line_error(capsys, [*base, "--model", "small_cn"], "unknown model 'small_cn'",
                           "did you mean 'small_cnn'")


def test_shots_larger_than_class(capsys: pytest.CaptureFixture[str], source_run: Path, tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["transfer", "--source", str(source_run), "--data", "digits8", "--shots", "5000",
                                    "--out", str(tmp_path / "o"), *FAST],
                           "shots=5000 is larger than class")
    _no_running_run(tmp_path / "o")


def test_unlabelled_rest_without_shots(capsys: pytest.CaptureFixture[str], source_run: Path, tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["transfer", "--source", str(source_run), "--data", "digits8", "--strategy",
                                    "self_train", "--unlabelled", "rest", "--out", str(tmp_path / "o"), *FAST],
                           "--unlabelled rest", "no --shots was given")
    _no_running_run(tmp_path / "o")


def test_unlabelled_pool_with_an_unknown_source(capsys: pytest.CaptureFixture[str], source_run: Path,
                                                tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["transfer", "--source", str(source_run), "--data", "digits8", "--strategy",
                                    "self_train", "--shots", "5", "--unlabelled", "rest+digitz8",
                                    "--out", str(tmp_path / "o"), *FAST], "digitz8")
    _no_running_run(tmp_path / "o")


def test_corrupt_image_in_folder(capsys: pytest.CaptureFixture[str], bad_inputs: dict[str, Path],
                                 tmp_path: Path) -> None:
    broken = bad_inputs["images"] / "one" / "broken.png"
    _assert_one_line_error(capsys, ["pretrain", "--data", str(bad_inputs["images"]), "--out", str(tmp_path / "o"),
                                    *FAST], str(broken), "cannot read image")
    _no_running_run(tmp_path / "o")


def test_csv_without_label_column(capsys: pytest.CaptureFixture[str], bad_inputs: dict[str, Path],
                                  tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["pretrain", "--data", str(bad_inputs["nolabel"]), "--out", str(tmp_path / "o"),
                                    *FAST], str(bad_inputs["nolabel"]), "no label column 'label'", "f1, f2, f3")


def test_head_keep_with_class_mismatch(capsys: pytest.CaptureFixture[str], source_run: Path,
                                       bad_inputs: dict[str, Path], tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["transfer", "--source", str(source_run), "--data", str(bad_inputs["three"]),
                                    "--head", "keep", "--out", str(tmp_path / "o"), *FAST],
                           "--head keep", "source has 10 classes", "has 3")
    _no_running_run(tmp_path / "o")


def test_evaluate_on_a_non_run_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["evaluate", str(tmp_path), "--data", "digits8"], str(tmp_path),
                           "not a complete run")


def test_source_is_not_a_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["transfer", "--source", str(tmp_path / "nope"), "--data", "digits8",
                                    "--out", str(tmp_path / "o"), *FAST], str(tmp_path / "nope"))


def test_predict_missing_inputs(capsys: pytest.CaptureFixture[str], source_run: Path, tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["predict", str(source_run), str(tmp_path / "nothing.png")],
                           str(tmp_path / "nothing.png"))


def test_out_holds_a_complete_run(capsys: pytest.CaptureFixture[str], source_run: Path, tmp_path: Path) -> None:
    _assert_one_line_error(capsys, ["pretrain", "--data", "mnist5k", "--out", str(source_run), *FAST],
                           str(source_run), "already holds a complete run", "--overwrite")
    assert load_run(source_run).spec.name == "small_cnn"


# ------------------------------------------------------------------------------ happy path


def test_pretrain_transfer_evaluate_predict(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            digits_ds: ArrayDataset) -> None:
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    code, out, err = _run(capsys, "pretrain", "--data", "mnist5k", "--model", "small_cnn", "--model-opt", "width=8",
                          "--model-opt", "hidden=32", "--out", str(src), *FAST)
    assert code == 0, err
    assert out.startswith("source accuracy ") and str(src) in out
    assert RunDir(src).status() == "complete"
    assert load_run(src).spec.kwargs == {"width": 8, "hidden": 32}

    code, out, err = _run(capsys, "transfer", "--source", str(src), "--data", "digits8", "--strategy", "lp_ft",
                          "--shots", "5", "--source-data", "mnist5k", "--out", str(tgt), *FAST)
    assert code == 0, err
    assert "note: target classes match the source" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("target accuracy ") and "source " in last and str(tgt) in last
    loaded = load_run(tgt)
    assert loaded.config["strategy"] == "lp_ft" and loaded.config["shots"] == 5
    assert "forgetting" in loaded.metrics

    code, out, err = _run(capsys, "evaluate", str(tgt), "--data", "digits8", "--source-data", "mnist5k")
    assert code == 0, err
    scores = json.loads(out)
    assert 0.0 <= scores["target"]["accuracy"] <= 1.0 and 0.0 <= scores["source"]["accuracy"] <= 1.0
    assert scores["target"]["accuracy"] == pytest.approx(loaded.metrics["target"]["accuracy"])
    assert "digits8" in load_run(tgt).metrics["evaluations"]

    folder = tmp_path / "inputs"
    for i in range(4):
        _png(folder / f"img{i}.png", digits_ds.x[i, 0])
    code, out, err = _run(capsys, "predict", str(tgt), str(folder), "--out", str(tmp_path / "pred.csv"))
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [Path(r["input"]).name for r in rows] == [f"img{i}.png" for i in range(4)]
    assert all(r["class"] in [str(d) for d in range(10)] and 0.0 < float(r["probability"]) <= 1.0 for r in rows)
    assert (tmp_path / "pred.csv").read_text() == out

    npz = tmp_path / "inputs.npz"
    np.savez(npz, x=digits_ds.x[:3])
    code, out, err = _run(capsys, "predict", str(tgt), str(npz))
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1 + 3
