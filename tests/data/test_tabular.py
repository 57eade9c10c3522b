"""Tables as a first-class modality: loading (numeric, categorical, missing cells), preprocessing
fitted on the training split only and saved in the run, and every command on a table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_wine

from transferkit.cli import main
from transferkit.data import load_dataset, split
from transferkit.data.tabular_prep import TabularPreprocess, fit_splits
from transferkit.errors import DataError
from transferkit.strategies import STRATEGIES

FAST = ["--epochs", "3", "--precision", "fp32", "--progress", "off"]
WINE_CATEGORY = "colour_band"  # a categorical column derived from the real colour intensity


def wine_rows(kind: str = "mixed") -> tuple[list[str], list[list[str]]]:
    """sklearn's wine table (real, 178 rows): ``numeric`` as is; ``mixed`` with the colour intensity
    turned into a categorical band and every 9th row missing its magnesium (blank) and band (NA)."""
    d = load_wine()
    names = [str(n) for n in d.feature_names]
    header = [*names, "label"]
    rows = [[repr(float(v)) for v in r] + [str(d.target_names[t])] for r, t in zip(d.data, d.target)]
    if kind == "numeric":
        return header, rows
    ci, mg = names.index("color_intensity"), names.index("magnesium")
    for i, r in enumerate(rows):
        value = float(r[ci])
        r[ci] = "pale" if value < 3.5 else "medium" if value < 6 else "deep"
        if i % 9 == 4:
            r[mg], r[ci] = "", "NA"
    header[ci] = WINE_CATEGORY
    return header, rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, _, err = _run(capsys, *argv)
    assert code != 0 and err.startswith("transferkit: error: ") and err.count("\n") == 1, err
    return err


def test_loads_numeric_categorical_and_missing(tmp_path: Path) -> None:
    ds = load_dataset(str(write_csv(tmp_path / "w.csv", *wine_rows())))
    assert ds.modality == "tabular" and ds.x.dtype == object and ds.x.shape == (178, 13)
    assert ds.meta["kinds"][ds.meta["columns"].index(WINE_CATEGORY)] == "categorical"
    prep = TabularPreprocess.fit(ds)
    band = next(c for c in prep.columns if c.name == WINE_CATEGORY)
    assert band.categories == ["(missing)", "deep", "medium", "pale"]
    magnesium = next(c for c in prep.columns if c.name == "magnesium")
    assert magnesium.indicator and prep.width == 12 + 1 + 5
    x = prep.transform(ds)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    back = TabularPreprocess.from_json(json.loads(json.dumps(prep.to_json())))
    np.testing.assert_array_equal(back.transform(ds), x)


def test_preprocessing_is_fitted_on_the_training_split_only(tmp_path: Path) -> None:
    header, rows = wine_rows("numeric")
    ds = load_dataset(str(write_csv(tmp_path / "w.csv", header, rows)))
    sp = split(ds, seed=0, val=0.15, test=0.3)
    big = ds.x.copy()
    big[np.isin(np.arange(len(ds)), _rows_of(ds, sp.test))] += 1000.0  # test rows far away
    shifted = split(type(ds)(big, ds.y, ds.class_names, ds.name, "tabular", ds.meta), seed=0, val=0.15, test=0.3)
    _, prep = fit_splits(shifted)
    assert prep is not None
    means = [c["mean"] for c in prep["columns"]]
    np.testing.assert_allclose(means, sp.train.x.astype(np.float64).mean(0), rtol=1e-5)
    assert prep["fitted_on"].endswith(f"({len(sp.train)} rows)")


def _rows_of(ds: object, part: object) -> np.ndarray:
    """Indices of ``part``'s rows in ``ds`` (rows are unique in wine)."""
    full = {tuple(r): i for i, r in enumerate(ds.x.tolist())}  # type: ignore[attr-defined]
    return np.array([full[tuple(r)] for r in part.x.tolist()])  # type: ignore[attr-defined]


def test_pretrain_saves_the_train_split_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_csv(tmp_path / "w.csv", *wine_rows("numeric"))
    assert _run(capsys, "pretrain", "--data", str(data), "--model", "mlp", "--out", str(tmp_path / "r"), *FAST)[0] == 0
    spec = json.loads((tmp_path / "r" / "model.json").read_text())
    train = split(load_dataset(str(data)), seed=0, val=0.15, test=0.3).train
    assert spec["input_shape"] == [13] and spec["preprocess"]["kind"] == "tabular"
    np.testing.assert_allclose([c["mean"] for c in spec["preprocess"]["columns"]], train.x.astype(np.float64).mean(0),
                               rtol=1e-5)


def test_every_command_on_a_mixed_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header, rows = wine_rows()
    data = write_csv(tmp_path / "w.csv", header, rows)
    src, tgt = str(tmp_path / "src"), str(tmp_path / "tgt")
    assert _run(capsys, "pretrain", "--data", str(data), "--model", "mlp", "--out", src, *FAST)[0] == 0
    code, out, _ = _run(capsys, "evaluate", src, "--data", str(data))
    assert code == 0 and json.loads(out)["target"]["n"] == 53
    new = [r[:-1] for r in rows[:4]]
    new[0][header.index(WINE_CATEGORY)] = "violet"  # a category never seen in training: the "other" feature
    new[1][header.index("magnesium")] = "?"  # missing: the training median
    code, out, _ = _run(capsys, "predict", src, str(write_csv(tmp_path / "new.csv", header[:-1], new)))
    assert code == 0 and out.splitlines()[0].startswith("input,class,probability") and len(out.splitlines()) == 5
    flipped = write_csv(tmp_path / "flipped.csv", header[:-1][::-1], [r[::-1] for r in new])  # matched by name
    assert _run(capsys, "predict", src, str(flipped))[1] == out.replace("new.csv", "flipped.csv")
    labelled = _run(capsys, "predict", src, str(data))[1].splitlines()  # the label column is ignored
    assert len(labelled) == 179 and labelled[1].startswith("w.csv:row 1,")
    code, out, _ = _run(capsys, "transfer", "--source", src, "--data", str(data), "--strategy", "lp_ft",
                        "--shots", "5", "--out", tgt, *FAST)
    assert code == 0 and "target accuracy" in out
    spec = json.loads(Path(tgt, "model.json").read_text())
    assert spec["preprocess"] == json.loads(Path(src, "model.json").read_text())["preprocess"]
    code, out, _ = _run(capsys, "rank", "--data", str(data), "--candidates", src, tgt, "--scores", "logme,leep")
    assert code == 0 and src in out and tgt in out
    code, out, err = _run(capsys, "report", src, tgt, "--out", str(tmp_path / "report.html"))
    assert code == 0, err
    assert "<html" in (tmp_path / "report.html").read_text().lower()


@pytest.fixture(scope="module")
def table_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A mixed wine table and an mlp pretrained on it (3 epochs)."""
    root = tmp_path_factory.mktemp("table_source")
    data = write_csv(root / "w.csv", *wine_rows())
    assert main(["pretrain", "--data", str(data), "--model", "mlp", "--out", str(root / "src"), *FAST]) == 0
    return data, root / "src"


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_transfers_on_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             table_source: tuple[Path, Path], strategy: str) -> None:
    data, src = table_source
    code, out, err = _run(capsys, "transfer", "--source", str(src), "--data", str(data), "--strategy", strategy,
                          "--shots", "5", "--out", str(tmp_path / strategy), *FAST)
    assert code == 0 and "target accuracy" in out, err


def test_column_mismatch_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header, rows = wine_rows("numeric")
    data = write_csv(tmp_path / "w.csv", header, rows)
    src = str(tmp_path / "src")
    assert _run(capsys, "pretrain", "--data", str(data), "--model", "mlp", "--out", src, *FAST)[0] == 0
    other = [h if h != "hue" else "tint" for h in header]
    bad = write_csv(tmp_path / "other.csv", [*other[:-1], "extra", "label"], [[*r[:-1], "1", r[-1]] for r in rows])
    for argv in (["transfer", "--source", src, "--data", str(bad), "--out", str(tmp_path / "t"), *FAST],
                 ["evaluate", src, "--data", str(bad)], ["predict", src, str(bad)]):
        err = _error(capsys, *argv)
        assert f"{bad}: its columns differ" in err and "missing hue" in err and "extra tint, extra" in err
    assert not (tmp_path / "t").exists()


def test_label_and_text_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header, rows = wine_rows("numeric")
    data = write_csv(tmp_path / "w.csv", [*header[:-1], "cultivar"], rows)
    err = _error(capsys, "pretrain", "--data", str(data), "--model", "mlp", "--out", str(tmp_path / "x"), *FAST)
    assert f"{data}: no label column 'label' (columns: alcohol, malic_acid" in err
    err = _error(capsys, "pretrain", "--data", str(data), "--label-column", "kind", "--model", "mlp",
                 "--out", str(tmp_path / "x"), *FAST)
    assert "no label column 'kind'" in err and "cultivar" in err
    src = str(tmp_path / "src")
    assert _run(capsys, "pretrain", "--data", str(data), "--label-column", "cultivar", "--model", "mlp", "--out", src,
                *FAST)[0] == 0
    code, out, _ = _run(capsys, "evaluate", src, "--data", str(data))  # the run's label column by default
    assert code == 0 and json.loads(out)["target"]["n"] == 53
    jsonl = tmp_path / "w.jsonl"
    jsonl.write_text("".join(json.dumps({**dict(zip(header[:-1], map(float, r[:-1]))), "cultivar": r[-1]}) + "\n"
                             for r in rows))
    ds = load_dataset(str(jsonl), label_column="cultivar")
    assert ds.modality == "tabular" and ds.x.shape == (178, 13) and ds.class_names == ["class_0", "class_1", "class_2"]
    assert _run(capsys, "evaluate", src, "--data", str(jsonl))[0] == 0
    err = _error(capsys, "evaluate", src, "--data", str(data), "--text-column", "review")
    assert f"{data}: no text column 'review' (columns: alcohol" in err


def test_pretrain_on_text_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_csv(tmp_path / "w.csv", *wine_rows("numeric"))
    err = _error(capsys, "pretrain", "--data", str(data), "--text-column", "alcohol", "--model", "mlp",
                 "--out", str(tmp_path / "x"), *FAST)
    assert f"{data}: pretrain trains from random weights on images, tables and audio" in err
    assert not (tmp_path / "x").exists()


def test_text_column_flag_reads_csv_and_jsonl_as_text(tmp_path: Path) -> None:
    reviews = [("a gripping and tender film", "pos"), ("dull plot and wooden acting", "neg"),
               ("a joy from start to end", "pos"), ("I left before the end", "neg")]
    f = write_csv(tmp_path / "r.csv", ["review", "stars"], [list(r) for r in reviews])
    with pytest.raises(DataError, match="pass --text-column review"):
        load_dataset(str(f), label_column="stars")
    ds = load_dataset(str(f), label_column="stars", text_column="review")
    assert ds.modality == "text" and list(ds.x) == [r for r, _ in reviews] and ds.class_names == ["neg", "pos"]
    j = tmp_path / "r.jsonl"
    j.write_text("".join(json.dumps({"body": r, "stars": s}) + "\n" for r, s in reviews))
    assert load_dataset(str(j), label_column="stars", text_column="body").modality == "text"
    with pytest.raises(DataError, match=r"no text field 'review' \(fields: body, stars\)"):
        load_dataset(str(j), text_column="review")


@pytest.mark.parametrize(("text", "expected"), [
    (",a,label\n1,2,x\n3,4,y\n", "column 1 of the header has no name"),
    ("a,a,label\n1,2,x\n3,4,y\n", "column 'a' appears twice"),
    ("a,b,label\n1,2,x\n3,oops,y\n5,6,x\n", "line 3, column 'b': 'oops' is not a number"),
    ("a,b,label\n1,2,x\n3,4,\n", "line 3: the label column 'label' is empty"),
    ("a,label\n1,x\n", None),
])
def test_hostile_tables(tmp_path: Path, text: str, expected: str | None) -> None:
    f = tmp_path / "t.csv"
    f.write_text(text)
    if expected is None:
        assert load_dataset(str(f)).x.shape == (1, 1)
        return
    with pytest.raises(DataError) as err:
        load_dataset(str(f))
    assert str(err.value).startswith(f"{f}: ") and expected in str(err.value) and "\n" not in str(err.value)


def test_jsonl_table_fields_absent_or_null_are_missing(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text('{"a": 1, "b": "x", "label": "p"}\n{"a": null, "label": "q"}\n{"b": "y", "a": 3, "label": "p"}\n')
    ds = load_dataset(str(f))
    assert ds.meta["columns"] == ["a", "b"] and ds.x.tolist() == [["1", "x"], ["", ""], ["3", "y"]]
    assert TabularPreprocess.fit(ds).width == 2 + 4  # a, a=missing; b=(missing), x, y, other


def test_a_category_phrase_column_is_not_taken_for_text(tmp_path: Path) -> None:
    rows = [[str(i), ["New York", "Los Angeles", "San Diego"][i % 3], "ab"[i % 2]] for i in range(30)]
    ds = load_dataset(str(write_csv(tmp_path / "c.csv", ["n", "city", "label"], rows)))
    assert ds.meta["kinds"] == ["numeric", "categorical"]


def test_wine_pretrain_with_defaults_matches_a_scaled_logistic_regression(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    data = write_csv(tmp_path / "w.csv", *wine_rows("numeric"))
    code, out, err = _run(capsys, "pretrain", "--data", str(data), "--model", "mlp", "--out", str(tmp_path / "r"),
                          "--progress", "off")
    assert code == 0, err
    acc = json.loads((tmp_path / "r" / "metrics.json").read_text())["source"]["accuracy"]
    sp = split(load_dataset(str(data)), seed=0, val=0.15, test=0.3)
    scaler = StandardScaler().fit(sp.train.x)
    lr = LogisticRegression(max_iter=1000).fit(scaler.transform(sp.train.x), sp.train.y)
    baseline = float((lr.predict(scaler.transform(sp.test.x)) == sp.test.y).mean())
    assert acc >= baseline - 0.02, (acc, baseline)
