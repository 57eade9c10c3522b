"""``--source path/to/hf_model``: a local Hugging Face checkpoint folder as a transfer source, offline."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.cli import main
from transferkit.data import ArrayDataset, load_dataset, prepare
from transferkit.errors import ConfigError
from transferkit.models import from_pretrained
from transferkit.models.text import model_path, tokenize
from transferkit.runs import load_run, load_source

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


@pytest.fixture(scope="module")
def tweets_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 real tweets per class as a user CSV."""
    ds = load_dataset("vader-tweets")
    y = ds.require_labels()
    idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:12] for c in range(ds.num_classes)]))
    path = tmp_path_factory.mktemp("hf_data") / "tweets.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([str(ds.x[i]), ds.class_names[y[i]]] for i in idx)
    return path


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, make_tiny_bert: Callable[[Path], Path]) -> Path:
    """A randomly initialised 2-layer BertModel saved as safetensors, with MiniLM's tokenizer copied beside it."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert") / "model")


def _texts() -> list[str]:
    return ["what a great day", "this is the worst service ever, never again", "ok"]


def test_minilm_package_folder_matches_the_minilm_backbone() -> None:
    model, config = load_source(model_path())
    assert config == {} and model.spec.name == "hf" and model.spec.modality == "text"
    assert [n for n, _ in model.layer_groups()] == ["embeddings", *(f"layer{i}" for i in range(6)), "head"]
    ref = from_pretrained("minilm")
    x = torch.from_numpy(tokenize(_texts()))
    with torch.no_grad():
        torch.testing.assert_close(model.eval().forward_features(x), ref.eval().forward_features(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("strategy", ["linear_probe", "lp_ft", "lora"])
def test_tiny_bert_folder_transfers_and_reloads(tiny_bert: Path, tweets_csv: Path, tmp_path: Path,
                                                strategy: str) -> None:
    res = transferkit.transfer(str(tiny_bert), str(tweets_csv), strategy=strategy, out=tmp_path / "run", seed=0,
                               epochs=2, progress="off", precision="fp32")
    assert 0.0 <= res.metrics["target"]["accuracy"] <= 1.0
    loaded = load_run(tmp_path / "run")
    assert loaded.spec.kwargs["path"] == str(tiny_bert.resolve())
    ds = prepare(ArrayDataset(np.array(_texts(), dtype=object), None, [], "t", modality="text"), loaded.spec)
    x = torch.from_numpy(ds.x)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(x), res.model.eval()(x), rtol=0, atol=0)
    rows = transferkit.predict(tmp_path / "run", _write_txt(tmp_path))
    assert [r["class"] in loaded.spec.class_names for r in rows] == [True] * 3


def test_the_folders_own_tokenizer_feeds_it_everywhere(tweets_csv: Path, tmp_path: Path) -> None:
    """A BERT with a 60-token WordPiece vocabulary: MiniLM's tokenizer (ids up to 30k) would index out of
    its embeddings, so data, zero-shot prompts (zs_init) and predict all use the folder's own tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path / "small_vocab"
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz",
             *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"), "positive", "negative", "!", "."]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder, safe_serialization=True)
    transferkit.transfer(str(folder), str(tweets_csv), strategy="zs_init", out=tmp_path / "run", epochs=1,
                         progress="off", precision="fp32", model_kwargs={"max_length": 64})
    loaded = load_run(tmp_path / "run")
    ds = prepare(ArrayDataset(np.array(_texts(), dtype=object), None, [], "t", modality="text"), loaded.spec)
    assert int(ds.x[:, 0].max()) < len(vocab)
    assert len(transferkit.predict(tmp_path / "run", _write_txt(tmp_path))) == 3


def _write_txt(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("\n".join(_texts()) + "\n", encoding="utf-8")
    return path


def test_a_run_reloads_after_its_folder_is_deleted(tiny_bert: Path, tweets_csv: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(tiny_bert, folder)
    run = tmp_path / "run"
    code = main(["transfer", "--source", str(folder), "--data", str(tweets_csv), "--strategy", "linear_probe",
                 "--model-opt", "max_length=64", "--epochs", "1", "--progress", "off", "--out", str(run)])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert load_run(run).spec.kwargs == {"max_length": 64, "path": str(folder.resolve())}
    assert sorted(p.name for p in (run / "hf_source").iterdir()) == ["config.json", *sorted(TOKENIZER_FILES)]
    assert "hf_source" in json.loads((run / "run.json").read_text())["files"]  # --overwrite removes it
    texts = _write_txt(tmp_path)
    assert main(["predict", str(run), str(texts)]) == 0
    before = capsys.readouterr().out
    shutil.rmtree(folder)
    assert load_run(run).spec.kwargs["path"] == str((run / "hf_source").resolve())
    assert main(["predict", str(run), str(texts)]) == 0
    assert capsys.readouterr().out == before
    shutil.rmtree(run / "hf_source")
    assert main(["predict", str(run), str(texts)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(folder.resolve()) in err and "gone" in err


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("transferkit: error: "), err
    return err


def test_pickled_weights_and_a_missing_tokenizer_are_refused(tiny_bert: Path, tweets_csv: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_bert / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    base = ["transfer", "--data", str(tweets_csv), "--strategy", "linear_probe", "--out", str(tmp_path / "run")]
    err = _one_line_error(capsys, [*base[:1], "--source", str(pickled), *base[1:]])
    assert "pytorch_model.bin: a pickle, and transferkit reads weights only from safetensors" in err
    no_tok = tmp_path / "no_tokenizer"
    no_tok.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert / name, no_tok / name)
    err = _one_line_error(capsys, [*base[:1], "--source", str(no_tok), *base[1:]])
    assert str(no_tok.resolve()) in err and "tokenizer" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="backbone hf needs the folder"):
        from_pretrained("hf")


def test_corrupt_or_mismatched_safetensors_are_refused(tiny_bert: Path, tmp_path: Path) -> None:
    """Garbage weights fail in one line; a file with other tensors never yields a silently random encoder."""
    from safetensors.torch import save_file

    for name, write in (("corrupt", lambda f: f.write_bytes(b"garbage")),
                        ("other_keys", lambda f: save_file({"x": torch.zeros(3)}, str(f)))):
        folder = tmp_path / name
        shutil.copytree(tiny_bert, folder)
        write(folder / "model.safetensors")
        with pytest.raises(ConfigError) as info:
            load_source(folder)
        assert len(str(info.value).splitlines()) == 1 and str(folder) in str(info.value)
        if name == "other_keys":
            assert "are not in its safetensors file" in str(info.value) and "random weights" in str(info.value)


def test_tiny_vit_folder_is_an_image_source(tmp_path: Path, digits_ds: ArrayDataset) -> None:
    from transformers import ViTConfig, ViTModel

    folder = tmp_path / "vit"
    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)).save_pretrained(folder, safe_serialization=True)
    model, _ = load_source(folder)
    assert model.spec.modality == "image" and tuple(model.spec.input_shape) == (3, 32, 32)
    names = [n for n, _ in model.layer_groups()]
    assert names == ["embeddings", "layer0", "layer1", "layernorm", "head"]
    y = digits_ds.require_labels()
    idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:6] for c in range(10)]))
    np.savez(tmp_path / "d.npz", x=digits_ds.x[idx], y=y[idx])
    res = transferkit.transfer(str(folder), str(tmp_path / "d.npz"), strategy="lp_ft", out=tmp_path / "run",
                               epochs=1, progress="off", precision="fp32")
    x = torch.from_numpy(prepare(load_dataset(str(tmp_path / "d.npz")), res.model.spec).x[:4])
    with torch.no_grad():
        torch.testing.assert_close(load_run(tmp_path / "run").model.eval()(x), res.model.eval()(x), rtol=0, atol=0)
