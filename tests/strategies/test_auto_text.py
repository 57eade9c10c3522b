"""``auto`` on text encoders: when ``contrastive`` is a candidate (rule 4 of strategies/auto.py), and that the
CLI default ``transferkit transfer --source minilm --data labelled.jsonl --strategy auto`` considers it and
records its choice and candidates in metrics.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.cli import main
from transferkit.runs import load_run
from transferkit.strategies.auto import CONTRASTIVE_SHOTS, TEXT_FEW, Auto, AutoOptions, candidates_for


def test_contrastive_is_a_candidate_for_text_with_few_labels_only() -> None:
    low, high = CONTRASTIVE_SHOTS
    for k in range(low, 10):
        assert candidates_for(k, "text") == TEXT_FEW and TEXT_FEW[0] == "contrastive"
    for k in (10, 20, high - 1):  # not measured between 10 and 63: the search may try it, last
        assert candidates_for(k, "text")[-1] == "contrastive" and candidates_for(k, "text")[0] == "lp_ft"
    for k in (1, low - 1, high, 500):  # at most one positive pair per class / measured below lp_ft at 64
        assert "contrastive" not in candidates_for(k, "text"), k
    for modality in ("image", "audio", "tabular", ""):  # never measured for auto: unchanged
        for k in (1, 5, 8, 20, 100):
            assert "contrastive" not in candidates_for(k, modality), (modality, k)
    assert candidates_for(5) == candidates_for(5, "image") == ["l2sp", "full", "lp_ft"]


def _text_sig(k: int, pf: float = 0.75) -> dict[str, object]:
    n, chance = 4 * k, 0.5
    return {"shots_per_class": k, "classes": 2, "modality": "text", "probe_n": n, "probe_features": pf,
            "chance": chance, "chance_se": math.sqrt(chance * (1 - chance) / n)}


def test_rules_read_the_modality() -> None:
    auto = Auto(AutoOptions())
    cands, reason = auto.rules(_text_sig(8))
    assert cands == TEXT_FEW and "token ids" in reason
    assert auto.rules(_text_sig(64))[0] == candidates_for(64, "text")
    no_val = {"shots_per_class": 8, "classes": 2, "modality": "text"}
    assert auto.rules(no_val)[0] == TEXT_FEW
    old = {k: v for k, v in _text_sig(8).items() if k != "modality"}  # signals recorded before the field: image
    assert auto.rules(old)[0] == candidates_for(8, "image")


def test_an_image_source_records_its_modality_and_no_contrastive(source_run: Path) -> None:
    res = transferkit.transfer(load_run(source_run), "digits8", strategy="auto", shots=5, epochs=2)
    auto = res.metrics["strategy_info"]["auto"]
    assert auto["signals"]["modality"] == "image" and "contrastive" not in auto["candidates"]


def _labelled_jsonl(path: Path, per_class: int) -> Path:
    """``per_class`` real vader-movies snippets per class (label negative / positive), as a user's file."""
    from transferkit.data import load_dataset

    ds = load_dataset("vader-movies")
    y = ds.require_labels()
    rng = np.random.default_rng(0)
    rows = [i for c in range(2) for i in rng.choice(np.flatnonzero(y == c), per_class, replace=False)]
    with path.open("w") as f:
        for i in rows:
            f.write(json.dumps({"text": str(ds.x[i]), "label": ds.class_names[y[i]]}) + "\n")
    return path


def test_cli_default_auto_considers_contrastive_for_minilm_and_records_it(tmp_path: Path) -> None:
    """The issue's command on a real labelled file (MiniLM, 4 snippets per class after the split's draw): rules
    only (budget 0, the default) train the first candidate, contrastive; metrics.json names it and the
    candidates, and the contrastive run's own record is there (it trained, not just got listed)."""
    pytest.importorskip("transformers")
    data = _labelled_jsonl(tmp_path / "labelled.jsonl", 20)  # the test extra installs MiniLM and the VADER data
    out = tmp_path / "run"
    assert main(["transfer", "--source", "minilm", "--data", str(data), "--strategy", "auto", "--shots", "4",
                 "--epochs", "1", "--out", str(out), "--progress", "off"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    auto = metrics["strategy_info"]["auto"]
    assert auto["signals"]["modality"] == "text" and auto["signals"]["shots_per_class"] == 4
    assert auto["candidates"] == TEXT_FEW and auto["choice"] == "contrastive"
    assert metrics["strategy_info"]["contrastive"]["loss"] == "pairs"
    assert metrics["strategy_info"]["recipe"]["strategy"] == "contrastive"  # the pick trained with its recipe


def test_features_at_chance_do_not_send_a_text_encoder_to_scratch() -> None:
    """With 8 texts per class the chance test has little power (two SEs of chance at n=32 is 67.7%); MiniLM's
    untuned sentiment features often sit below that. A text encoder has no from-scratch alternative, so the
    prior by shots decides and the reason says why; an image source at chance still gets scratch."""
    auto = Auto(AutoOptions())
    cands, reason = auto.rules(_text_sig(8, pf=0.55))
    assert cands == TEXT_FEW and "no from-scratch alternative" in reason
    image = {**_text_sig(8, pf=0.55), "modality": "image"}
    assert auto.rules(image)[0] == ["scratch"]


def test_a_text_encoder_without_a_measured_contrastive_recipe_keeps_the_image_prior() -> None:
    """Rule 4 was measured on MiniLM only: a user's Hugging Face text checkpoint (no recipe for any strategy)
    gets the image prior, not contrastive at the library's default learning rate."""
    auto = Auto(AutoOptions())
    assert auto.rules({**_text_sig(8), "contrastive_recipe": False})[0] == candidates_for(8, "image")
    assert auto.rules({**_text_sig(8), "contrastive_recipe": True})[0] == TEXT_FEW
