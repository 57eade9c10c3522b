"""``predict --top-k``: the K most probable classes per input, in the API and the CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.cli import main
from transferkit.data import ArrayDataset
from transferkit.errors import ConfigError
from transferkit.prediction import predict, topk_columns


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, digits_ds: ArrayDataset) -> Path:
    path = tmp_path_factory.mktemp("topk") / "digits.npz"
    np.savez(path, x=digits_ds.x[:6])
    return path


def test_topk_rows_match_the_models_sorted_probabilities(source_run: Path, inputs: Path) -> None:
    rows = predict(source_run, inputs, top_k=3)
    loaded = transferkit.load_run(source_run)
    x = transferkit.data.conform(ArrayDataset(np.load(inputs)["x"], None, [], "x"), loaded.spec.input_shape).x
    with torch.no_grad():
        probs = loaded.model.eval()(torch.from_numpy(x)).softmax(1)
    want_p, want_i = probs.topk(4, dim=1)
    classes = loaded.spec.class_names
    for row, ii, pp in zip(rows, want_i, want_p):
        assert list(row) == topk_columns(3)
        got = [row["probability"], row["probability_2"], row["probability_3"]]
        assert got == pytest.approx(pp[:3].tolist(), abs=1e-2)  # predict runs in the auto precision (bf16 on CPU)
        assert got == sorted(got, reverse=True)
        picked = [row["class"], row["class_2"], row["class_3"]]
        assert len(set(picked)) == 3
        gaps = (pp[:-1] - pp[1:]).tolist()
        clear = [all(g > 2e-2 for g in gaps[max(r - 1, 0) : r + 1]) for r in range(3)]  # no near-tie either side
        assert all(c == classes[int(i)] for c, i, ok in zip(picked, ii, clear) if ok)
    top1 = predict(source_run, inputs)
    assert [list(r) for r in top1] == [["input", "class", "probability"]] * len(top1)  # default: unchanged columns
    assert [r["class"] for r in top1] == [r["class"] for r in rows]


def test_topk_cli_columns_and_bad_k(source_run: Path, inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(source_run), str(inputs), "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "input,class,probability,class_2,probability_2"
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 6 and all(float(r["probability"]) >= float(r["probability_2"]) for r in rows)
    for k in ("0", "11"):
        assert main(["predict", str(source_run), str(inputs), "--top-k", k]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"transferkit: error: --top-k {k}: must be between 1 and the run's 10 classes"
    with pytest.raises(ConfigError, match="--top-k 0"):
        predict(source_run, inputs, top_k=0)
