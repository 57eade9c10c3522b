"""``--label-column`` / ``--text-column`` on data without columns: one line, not silently recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transferkit.cli import main
from transferkit.data import check_column_flags
from transferkit.errors import DataError


@pytest.mark.parametrize(("command", "flag"), [("pretrain", "--label-column"), ("transfer", "--text-column")])
def test_column_flag_on_a_built_in_data_set_is_one_line(command: str, flag: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Before: `--data digits8 --label-column foo` loaded fine and config.json recorded the column."""
    source = ["--model", "mlp"] if command == "pretrain" else ["--source", "mnist_cnn"]
    code = main([command, "--data", "digits8", *source, flag, "foo", "--epochs", "1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1, err
    assert f"{flag} foo: digits8 is a built-in data set" in err[0] and ".csv or .jsonl" in err[0]
    assert not (tmp_path / "o").exists()


def test_folders_and_npz_have_no_columns_tables_do(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 1, 4, 4), np.float32), y=np.array([0, 1]))
    (tmp_path / "t.csv").write_text("text,label\na,0\n")
    with pytest.raises(DataError, match="--label-column y: .* is a folder"):
        check_column_flags(str(tmp_path), label_column="y")
    with pytest.raises(DataError, match=r"--text-column t: .* is a \.npz file"):
        check_column_flags(str(tmp_path / "d.npz"), text_column="t")
    with pytest.raises(DataError, match="spoken-digits:voices=A is a built-in data set"):
        check_column_flags("spoken-digits:voices=A", label_column="y")
    check_column_flags(str(tmp_path / "t.csv"), label_column="label", text_column="text")  # a table has columns
    check_column_flags("digits8")  # no flag given: nothing to check
    check_column_flags(str(tmp_path / "missing.csv"), label_column="y")  # left to load_dataset's own error
