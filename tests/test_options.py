"""Typed options and run specs: CLI strings to types, one-line errors naming the field, JSON round trip."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Literal

import pytest

from transferkit import options
from transferkit.errors import ConfigError
from transferkit.options import opt
from transferkit.spec import Spec, SplitSpec, add_spec_args, spec_from_args


@dataclasses.dataclass(frozen=True)
class Inner:
    k: int = opt(3, "neighbours")
    rule: Literal["best", "1se"] = opt("best", "how")


@dataclasses.dataclass(frozen=True)
class Outer:
    lr: float = opt(0.1, "learning rate")
    weight: float | Literal["nll", "accuracy"] = opt("nll", "a number or a rule")
    names: tuple[str, ...] = opt(("a", "b"), "names")
    steps: tuple[int, ...] = opt((), "steps")
    inner: Inner = opt(factory=Inner, help="nested")
    limit: int | None = opt(None, "optional")
    on: bool = opt(False, "switch")


def test_strings_become_the_declared_types() -> None:
    o = options.build(Outer, {"lr": "0.5", "weight": "0.25", "names": "x, y,z", "steps": "1,2",
                              "inner": "k=5:rule=1se", "limit": "7", "on": "yes"})
    assert o == Outer(lr=0.5, weight=0.25, names=("x", "y", "z"), steps=(1, 2), inner=Inner(5, "1se"), limit=7, on=True)
    assert options.build(Outer, {"weight": "accuracy", "limit": "none"}).weight == "accuracy"
    assert options.build(Outer, None) == Outer()
    same = Outer(lr=2.0)
    assert options.build(Outer, same) is same


@pytest.mark.parametrize("raw, needle", [
    ({"lr": "fast"}, "lr='fast'"),
    ({"weight": "median"}, "weight='median'"),
    ({"inner": "k=2:rule=worst"}, "rule='worst' is not one of best, 1se"),
    ({"inner": "k"}, "expected key=value"),
    ({"steps": "1,x"}, "steps='x'"),
    ({"on": "maybe"}, "not a boolean"),
    ({"nope": "1"}, "unknown thing option 'nope'"),
])
def test_bad_values_are_one_line_errors_naming_the_field(raw: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        options.build(Outer, raw, "thing")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_json_round_trip_keeps_types() -> None:
    o = Outer(weight=0.5, names=("q",), inner=Inner(1, "1se"), limit=4, on=True)
    d = options.to_dict(o)
    assert d["names"] == ["q"] and d["inner"] == {"k": 1, "rule": "1se"}
    assert options.from_dict(Outer, d) == o


@dataclasses.dataclass(kw_only=True)
class ToySpec(Spec):
    command = "toy"
    data: str = opt(help="the data")
    shots: int | None = opt(None, "labelled examples per class")
    split: SplitSpec = opt(factory=SplitSpec, help="split", flag=False)
    extra: dict[str, str] = opt(factory=dict, help="strategy option")
    overwrite: bool = opt(False, "replace")


def test_spec_flags_are_generated_and_typed() -> None:
    p = argparse.ArgumentParser()
    add_spec_args(p, ToySpec)
    args = p.parse_args(["--data", "digits8", "--shots", "5", "--extra", "a=1", "--extra", "b=x", "--overwrite"])
    s = spec_from_args(ToySpec, args)
    assert s == ToySpec(data="digits8", shots=5, extra={"a": "1", "b": "x"}, overwrite=True)
    assert "(default: " not in p.format_help().split("--data")[1].split("--")[0]  # required: no default shown
    with pytest.raises(ConfigError, match="toy option shots='many'"):
        spec_from_args(ToySpec, p.parse_args(["--data", "d", "--shots", "many"]))


def test_spec_round_trip_and_run_config_extras() -> None:
    s = ToySpec(data="d", shots=3, split=SplitSpec(val=0.2, seed=4))
    d = s.to_dict()
    assert d["split"] == {"val": 0.2, "test": 0.3, "seed": 4, "kind": "stratified"}
    assert ToySpec.from_dict(d) == s
    assert ToySpec.from_dict({**d, "command": "toy", "versions": {}}, ignore_unknown=True) == s
    with pytest.raises(ConfigError, match="unknown toy option 'versions'"):
        ToySpec.from_dict({**d, "versions": {}})


def test_split_spec_checks_its_fractions() -> None:
    assert SplitSpec().with_seed(7).seed == 7 and SplitSpec(seed=1).with_seed(7).seed == 1
    with pytest.raises(ConfigError, match="leaves no training data"):
        SplitSpec(val=0.5, test=0.5)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        SplitSpec(test=0)
