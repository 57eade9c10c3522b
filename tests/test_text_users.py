"""docs/TEXT.md's user table: each row's command, parsed by the CLI's own parser, trains with the settings the
benchmark measured (benchmarks/text_users.py derives the commands; this checks the round trip)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import text_users  # noqa: E402

from transferkit.cli import build_parser, train_overrides  # noqa: E402
from transferkit.spec import TransferSpec, spec_from_args  # noqa: E402

CFG = json.loads((ROOT / "docs" / "text.json").read_text(encoding="utf-8"))["settings"]


@pytest.mark.parametrize("row", [r for r in text_users.USER_ROWS if not r.startswith("zero_shot")])
def test_a_rows_command_trains_the_benchmarks_settings(row: str) -> None:
    cmd = text_users.command(row, CFG)
    assert cmd.startswith("`transferkit transfer "), cmd  # every trained row has a command today
    args = build_parser().parse_args(shlex.split(cmd.strip("`"))[1:])
    spec = spec_from_args(TransferSpec, args, train=train_overrides(args))  # as the CLI builds it
    assert (spec.source, spec.data, spec.shots, spec.strategy) == ("minilm", "vader-movies", 64, row.split("@")[0])
    options = {k: str(v) for k, v in spec.options.items()}
    got = text_users.cli_settings(spec.strategy, options, dict(spec.train))
    want = text_users.bench_settings(row, CFG)
    for field in text_users.FIXED:
        assert got[field] == want[field], (row, field)
    for rate in ("body_lr", "head_lr"):
        assert got[rate] == pytest.approx(want[rate], rel=1e-9), (row, rate)
    # every option the benchmark set is either passed or the strategy's default
    from transferkit.strategies import make_strategy

    bench = make_strategy(spec.strategy, {k: str(v) for k, v in want["options"].items()}).options
    cli = make_strategy(spec.strategy, options).options
    differ = [f for f in vars(bench) if getattr(bench, f) != getattr(cli, f)]
    assert differ in ([], ["ft_lr_scale"], ["base_options"]), (row, differ)  # a body-rate scale the rates cover
    assert (spec.unlabelled == "rest") == (spec.strategy == "self_train")


def test_a_rate_no_flag_reaches_has_no_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """LP-FT with the body at 0.1 x 3e-5 and the probe at 100 x 3e-5: the CLI's recipe has the probe at 50 x lr,
    so no --lr gives both rates; the row says so instead of printing a command that trains something else."""
    monkeypatch.setitem(text_users.RECIPES, "lp_ft@odd", ({"ft_lr_scale": "0.1"}, {"lr": 3e-5}))
    assert text_users.train_flags("lp_ft@odd", CFG) is None
    assert "no single command" in text_users.command("lp_ft@odd", CFG)
    assert text_users.train_flags("lp_ft", CFG) == ({}, {})  # the recipe reaches the measured rates by itself
