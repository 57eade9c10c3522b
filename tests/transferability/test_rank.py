"""rank(): one forward pass per candidate, the shared target sample, tables, JSON and Kendall's tau."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import transferkit.engine.features as features_module
from transferkit.data import load_dataset, split
from transferkit.errors import ConfigError, DataError
from transferkit.models import ModelSpec, TransferModel, build_model
from transferkit.runs import LoadedRun
from transferkit.transferability import DEFAULT_SCORES, SCORES, RankResult, kendall_tau, rank


@pytest.fixture(scope="module")
def random_model(source_loaded: LoadedRun) -> TransferModel:
    return build_model(copy.deepcopy(source_loaded.spec), seed=1)


@pytest.fixture(scope="module")
def ranked(source_run: Path, random_model: TransferModel) -> tuple[RankResult, list[int]]:
    """Both candidates ranked on digits8 with every registered score; counts the forward passes."""
    calls: list[int] = []
    real = features_module.extract_features

    def counting(model: TransferModel, x: torch.Tensor, place: Any) -> torch.Tensor:
        calls.append(len(x))
        return real(model, x, place)

    mp = pytest.MonkeyPatch()
    mp.setattr(features_module, "extract_features", counting)
    try:
        result = rank([source_run, random_model], "digits8", scores=list(SCORES), max_samples=400)
    finally:
        mp.undo()
    return result, calls


def test_one_forward_pass_per_candidate_on_a_stratified_sample(ranked: tuple[RankResult, list[int]]) -> None:
    result, calls = ranked
    assert calls == [400, 400]
    assert result.n_samples == 400 and result.num_classes == 10
    assert all(c.feature_dim == 64 and c.source_classes == 10 for c in result.candidates)


def test_scores_times_and_ranking(ranked: tuple[RankResult, list[int]], source_run: Path) -> None:
    result, _ = ranked
    assert result.score_names == list(SCORES)
    for c in result.candidates:
        assert set(c.scores) == set(SCORES) and all(np.isfinite(v) for v in c.scores.values())
        assert c.seconds >= c.forward_seconds + sum(c.score_seconds.values()) * 0.99 > 0
    assert result.ranking()[0] == str(source_run)
    assert result.ranking("leep")[0] == str(source_run)
    assert result.mean_ranks()[str(source_run)] < 1.5


def test_table_and_json(ranked: tuple[RankResult, list[int]], source_run: Path) -> None:
    result, _ = ranked
    table = result.to_table()
    lines = table.splitlines()
    assert lines[0].startswith("target digits8: 400 samples, 10 classes")
    assert all(name in lines[2] for name in result.score_names)
    assert lines[4].startswith(f"| 1 | {source_run} |")
    assert "small_cnn[1]" in lines[5]
    data = json.loads(json.dumps(result.to_json()))
    assert data["ranking"] == result.ranking()
    assert data["candidates"][0]["scores"].keys() == set(SCORES)


def test_target_sample_is_the_training_split(source_run: Path) -> None:
    """shots -> k per class of the seeded training split, the split transfer() trains on."""
    result = rank(source_run, "digits8", shots=3, scores=("knn",), seed=2)
    assert (result.n_samples, result.shots) == (30, 3)
    module = importlib.import_module("transferkit.transferability.rank")
    ds = load_dataset("digits8", shape=(1, 28, 28))
    x, y, _ = module._target(ds, ModelSpec("small_cnn", (1, 28, 28), []), seed=2, shots=None, max_samples=10**6)
    train = split(ds, seed=2, val=0.15, test=0.3).train
    assert torch.equal(x, torch.from_numpy(train.x)) and np.array_equal(y, train.y)


def test_subsample_keeps_class_proportions() -> None:
    module = importlib.import_module("transferkit.transferability.rank")
    y = np.repeat(np.arange(4), [400, 200, 100, 100])
    idx = module._subsample(y, 80, seed=0)
    assert len(idx) == 80 and len(np.unique(idx)) == 80
    assert np.bincount(y[idx]).tolist() == [40, 20, 10, 10]


def test_in_memory_candidate_keeps_its_mode_and_device(random_model: TransferModel) -> None:
    random_model.train()
    rank(random_model, "digits8", scores=("leep",), max_samples=50)
    assert random_model.training
    assert next(random_model.parameters()).device.type == "cpu"


def test_rank_input_errors(source_run: Path) -> None:
    with pytest.raises(ConfigError, match="unknown score 'logmee' \\(did you mean 'logme'\\?\\)"):
        rank(source_run, "digits8", scores=("logmee",))
    with pytest.raises(ConfigError, match="at least one candidate"):
        rank([], "digits8")
    with pytest.raises(ConfigError, match="candidate 0 is a int"):
        rank([3], "digits8")  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="max_samples must be an integer of at least 2, got 1"):
        rank(source_run, "digits8", max_samples=1)
    with pytest.raises(DataError, match="unknown dataset 'digits9'"):
        rank(source_run, "digits9")
    assert set(DEFAULT_SCORES) <= set(SCORES)


def test_kendall_tau() -> None:
    assert kendall_tau([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)
    assert kendall_tau([4, 3, 2, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(-1.0)
    # one discordant pair of 6 (tau-b without ties): (5 - 1) / 6
    assert kendall_tau({"a": 1, "b": 2, "c": 3, "d": 4}, {"d": 4, "c": 2, "b": 3, "a": 1}) == pytest.approx(4 / 6)
    with pytest.raises(ConfigError, match="'e' is in only one"):
        kendall_tau({"a": 1, "b": 2}, {"a": 1, "b": 2, "e": 3})
    with pytest.raises(DataError, match="at least 2 candidates"):
        kendall_tau([1], [1])
    with pytest.raises(DataError, match=r"\(3,\) scores but \(2,\) accuracies"):
        kendall_tau([1, 2, 3], [1, 2])


def test_rank_result_kendall_taus(ranked: tuple[RankResult, list[int]], source_run: Path) -> None:
    result, _ = ranked
    taus = result.kendall_taus({str(source_run): 0.9, "small_cnn[1]": 0.5})
    assert set(taus) == set(SCORES) and all(t == pytest.approx(1.0) for t in taus.values())
    with pytest.raises(ConfigError, match="no accuracy given for candidate 'small_cnn\\[1\\]'"):
        result.kendall_taus({str(source_run): 0.9})


def test_kendall_taus_rank_a_nan_score_last_instead_of_failing() -> None:
    from transferkit.transferability.rank import CandidateScores, RankResult

    cands = [CandidateScores(n, "m", {"parc": v}, 0.0, 0.0) for n, v in (("a", 1.0), ("b", float("nan")), ("c", 3.0))]
    result = RankResult("d", 10, 2, None, 0, ["parc"], {"parc": True}, cands)
    assert result.kendall_taus({"a": 0.5, "b": 0.1, "c": 0.9})["parc"] == pytest.approx(1.0)
    assert result.kendall_taus({"a": 0.5, "b": 0.95, "c": 0.9})["parc"] == pytest.approx(-1 / 3)


def test_an_encoder_without_source_classes_is_ranked_without_leep_and_nce() -> None:
    """MiniLM has no classification head (0 source classes): the default scores used to crash on its
    probabilities ("source probabilities must be 2-D [N, C_s], got shape (16, 0)"); now the scores that
    need them are NaN, with a note, and the mean rank leaves them out."""
    res = rank(["minilm"], "vader-tweets", shots=8)
    c = res.candidates[0]
    needs_probs = [s for s in DEFAULT_SCORES if SCORES.get(s).needs == "probs"]
    assert needs_probs and res.left_out == needs_probs and c.source_classes == 0
    assert all(np.isnan(c.scores[s]) for s in needs_probs)
    assert all(np.isfinite(c.scores[s]) for s in DEFAULT_SCORES if s not in needs_probs)
    assert "note: minilm has no source classes" in res.to_table() and "leep, nce" in res.to_table()
    assert res.to_json()["candidates"][0]["scores"]["leep"] is None


def test_mean_rank_leaves_out_scores_a_headless_candidate_cannot_have() -> None:
    from transferkit.transferability.rank import CandidateScores

    cands = [CandidateScores("encoder", "minilm", {"logme": 2.0, "leep": float("nan")}, 1.0, 1.0),
             CandidateScores("run", "small_cnn", {"logme": 1.0, "leep": -0.5}, 1.0, 1.0)]
    res = RankResult("t", 10, 2, None, 0, ["logme", "leep"], {"logme": True, "leep": True}, cands,
                     left_out=["leep"])
    assert res.ranking() == ["encoder", "run"] and res.mean_ranks() == {"encoder": 1.0, "run": 2.0}
    assert res.ranking("leep") == ["run", "encoder"]  # by that score alone, NaN is still the worst


def test_rank_reads_a_table_with_the_candidates_label_column_and_the_read_flags(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--skip-bad-files`` (or a column flag) used to make the CLI load the data itself, without the
    candidate's label column: "no label column 'label'" on a table whose label is ``cultivar``."""
    import csv

    from sklearn.datasets import load_wine

    from transferkit.cli import main

    d = load_wine()
    data = tmp_path / "w.csv"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*map(str, d.feature_names), "cultivar"])
        w.writerows([*map(repr, map(float, r)), str(t)] for r, t in zip(d.data, d.target))
    src = str(tmp_path / "src")
    fast = ["--epochs", "2", "--precision", "fp32", "--progress", "off"]
    argv = ["pretrain", "--data", str(data), "--label-column", "cultivar", "--model", "mlp", "--out", src, *fast]
    assert main(argv) == 0
    capsys.readouterr()
    for extra in ([], ["--skip-bad-files"], ["--label-column", "cultivar"]):
        code = main(["rank", "--data", str(data), "--candidates", src, "--scores", "hscore", *extra])
        out, err = capsys.readouterr()
        assert code == 0 and "| 1 |" in out, (extra, err)
    result = rank(src, data, scores=["hscore"], skip_bad_files=True, label_column="cultivar")
    assert result.num_classes == 3
    code = main(["rank", "--data", str(data), "--candidates", src, "--label-column", "kind", "--skip-bad-files"])
    err = capsys.readouterr().err
    assert code != 0 and "no label column 'kind'" in err and err.count("\n") == 1, err
