"""Errors argparse finds (a bad flag value, a missing flag, an unknown command) are one line too."""

from __future__ import annotations

import pytest

from transferkit.cli import main


@pytest.mark.parametrize("argv, text", [
    (["transfer", "--source", "small_cnn", "--out", "o"], "the following arguments are required: --data"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["zeroshot", "--split", "nope"], "argument --split: invalid choice: 'nope'"),
    (["transfer", "--source", "small_cnn", "--data", "digits8", "--out", "o", "--head", "old"],
     "argument --head: invalid choice: 'old' (choose from 'auto', 'new', 'keep')"),  # a spec's Literal field
])
def test_argparse_errors_are_one_line(argv: list[str], text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("transferkit: error: ") and text in err


@pytest.mark.parametrize("argv, text", [
    (["transfer", "--source", "small_cnn", "--data", "digits8", "--out", "o", "--seed", "abc"],
     "transfer option seed='abc' is not a valid int"),
    (["pretrain", "--data", "digits8", "--out", "o", "--skip-bad-files", "--seed", "1.5"],
     "pretrain option seed='1.5' is not a valid int"),
])
def test_bad_spec_values_are_one_line_naming_the_field(argv: list[str], text: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Values typed by the spec (spec.py), not argparse: the error names the field and the value; nothing runs."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("transferkit: error: ") and text in err, err


def test_help_still_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["transfer", "--help"])
    assert info.value.code == 0 and "usage: transferkit transfer" in capsys.readouterr().out
