"""The one Registry class, and the registries built on it."""

from __future__ import annotations

import pytest

from transferkit.data import DATASETS
from transferkit.errors import ConfigError, did_you_mean
from transferkit.models import MODELS
from transferkit.registry import Registry
from transferkit.strategies import STRATEGIES


def _reg() -> Registry[int]:
    reg: Registry[int] = Registry("widget")
    reg.add("lp_ft", 1, "linear probe then fine-tune")
    reg.add("linear_probe", 2, "frozen backbone")
    reg.add("full", 3, "everything")
    return reg


def test_duplicate_name_raises_and_keeps_the_first() -> None:
    reg = _reg()
    with pytest.raises(ValueError, match="widget 'full' is already registered"):
        reg.add("full", 99)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("lp_ft")(42)
    assert reg.get("full") == 3


@pytest.mark.parametrize("bad", ["", "has space", "dot.name", "star*"])
def test_invalid_names_raise(bad: str) -> None:
    with pytest.raises(ValueError, match="must be alphanumeric"):
        _reg().add(bad, 0)


def test_unknown_name_is_a_config_error_with_did_you_mean() -> None:
    with pytest.raises(ConfigError) as e:
        _reg().get("lpft")
    msg = str(e.value)
    assert "unknown widget 'lpft'" in msg
    assert "(did you mean 'lp_ft'?)" in msg
    assert "known: full, linear_probe, lp_ft" in msg
    assert "\n" not in msg


def test_unknown_name_far_from_everything_has_no_suggestion() -> None:
    with pytest.raises(ConfigError) as e:
        _reg().get("zzzzzz")
    assert "did you mean" not in str(e.value)


def test_did_you_mean() -> None:
    assert did_you_mean("lpft", ["lp_ft", "full"]) == " (did you mean 'lp_ft'?)"
    assert did_you_mean("qqqq", ["lp_ft", "full"]) == ""


def test_list_glob_filter_sorted() -> None:
    reg = _reg()
    assert [e.name for e in reg.list()] == ["full", "linear_probe", "lp_ft"]
    assert [e.name for e in reg.list("l*")] == ["linear_probe", "lp_ft"]
    assert [e.name for e in reg.list("*_p*")] == ["linear_probe"]
    assert reg.list("nothing*") == []
    assert list(reg) == ["full", "linear_probe", "lp_ft"]
    assert len(reg) == 3 and "full" in reg and "nope" not in reg


def test_decorator_registers_and_summary_defaults_to_first_doc_line() -> None:
    reg: Registry[object] = Registry("thing")

    @reg.register("documented")
    def documented() -> None:
        """First line.

        More text.
        """

    assert reg.get("documented") is documented
    assert reg.list("documented")[0].summary == "First line."


@pytest.mark.parametrize("registry", [STRATEGIES, MODELS, DATASETS], ids=lambda r: r.kind)
def test_builtin_registries_have_summaries(registry: Registry[object]) -> None:
    assert len(registry) > 0
    for entry in registry.list():
        assert entry.summary, f"{registry.kind} {entry.name} has no summary"


def test_builtin_names() -> None:
    assert {"scratch", "linear_probe", "full", "partial", "lp_ft", "layerwise_lr", "gradual_unfreeze", "l2sp",
            "wise_ft"} <= set(STRATEGIES)
    assert {"small_cnn", "mlp"} <= set(MODELS)
    assert {"mnist5k", "digits8", "fontdigits"} <= set(DATASETS)
