"""Errors argparse finds (a bad flag value, a missing flag, an unknown command) are one line too."""

from __future__ import annotations

import pytest

from transferkit.cli import main


@pytest.mark.parametrize("argv, text", [
    (["transfer", "--source", "small_cnn", "--data", "digits8", "--out", "o", "--seed", "abc"],
     "argument --seed: invalid int value: 'abc' (see 'transferkit transfer --help')"),
    (["transfer", "--source", "small_cnn", "--out", "o"], "the following arguments are required: --data"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["zeroshot", "--split", "nope"], "argument --split: invalid choice: 'nope'"),
])
def test_argparse_errors_are_one_line(argv: list[str], text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("transferkit: error: ") and text in err


def test_help_still_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["transfer", "--help"])
    assert info.value.code == 0 and "usage: transferkit transfer" in capsys.readouterr().out
