"""``auto``'s default candidates: the seven single methods and docs/UDA.md's headline self-training recipe."""

from __future__ import annotations

import json
from pathlib import Path

from transferkit.adaptation.candidates import candidates, method_candidates
from transferkit.adaptation.regularization import SelfTrainingOptions
from transferkit.adaptation.spec import SELF_TRAINING_RECIPE

ROOT = Path(__file__).resolve().parents[2]


def test_the_defaults_hold_uda_md_s_measured_recipe() -> None:
    uda = json.loads((ROOT / "docs" / "uda.json").read_text())
    assert SELF_TRAINING_RECIPE in uda["settings"]["methods"]  # the recipe behind UDA.md's headline numbers


def test_the_recipe_is_typed_against_self_training_s_options() -> None:
    (st,) = [c for c in candidates("auto", {}) if c.name == "self_training"]
    o = st.method.options
    assert isinstance(o, SelfTrainingOptions)
    assert (o.base, o.mcc, o.base_fraction, o.consistency, o.domain_bn, o.ema, o.class_balance, o.trade_off) == (
        "mcc", 1.0, 0.5, True, True, 0.99, 1.0, 1.0)
    labels = [label for label, _, _ in method_candidates("auto", {})]
    assert len(labels) == len(set(labels)) == 8 and labels[0].startswith("self_training(base=mcc, mcc=1, ")


def test_source_free_auto_keeps_to_the_methods_that_read_no_source() -> None:
    names = {name for _, name, _ in method_candidates("auto", {}, source_free=True)}
    assert names and "self_training" not in names and names <= {"shot", "aad"}
