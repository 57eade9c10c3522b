"""A ``.txt`` file (one text per line) is unlabelled text wherever unlabelled inputs are read."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transferkit.data import load_dataset
from transferkit.errors import DataError

REVIEWS = Path(__file__).resolve().parents[2] / "examples" / "reviews.txt"


def test_txt_loads_as_unlabelled_text_with_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("first text\n\n  second text  \n", encoding="utf-8")
    ds = load_dataset(str(f), labels_required=False)
    assert ds.modality == "text" and ds.y is None
    assert list(ds.x) == ["first text", "second text"]
    assert ds.meta["lines"] == [1, 3]


@pytest.mark.parametrize(("content", "needle"), [(b"\n \n", "no text"), (b"caf\xe9\n", "not UTF-8")])
def test_txt_bad_content_is_a_one_line_error(tmp_path: Path, content: bytes, needle: str) -> None:
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(DataError, match=needle) as err:
        load_dataset(str(f), labels_required=False)
    assert str(f) in str(err.value) and "\n" not in str(err.value)


def test_txt_where_labels_are_required_names_the_file_and_the_labelled_formats() -> None:
    with pytest.raises(DataError, match=r"reviews\.txt: a \.txt file holds texts without labels"):
        load_dataset(str(REVIEWS))


def test_suggest_labels_reads_a_txt_file(tmp_path: Path) -> None:
    out = tmp_path / "to_label.csv"
    proc = subprocess.run([sys.executable, "-m", "transferkit", "suggest-labels", "--source", "minilm", "--data",
                           str(REVIEWS), "--budget", "2", "--classes", "negative,positive", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ,
                                                                              "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    with out.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["input", "why", "label"] and len(rows) == 3
    texts = set(REVIEWS.read_text(encoding="utf-8").splitlines())
    assert all(r[0] in texts and r[2] == "" for r in rows[1:])
