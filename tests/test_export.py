"""``transferkit export``: ONNX graphs that onnxruntime runs to PyTorch's logits, described beside them."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit import export
from transferkit.cli import main
from transferkit.data import ArrayDataset, conform, load_dataset, prepare
from transferkit.errors import ConfigError
from transferkit.runs import load_run

ort = pytest.importorskip("onnxruntime")


def _session(path: Path) -> object:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("transferkit: error: "), err
    return err


def test_image_run_exports_and_runs_in_onnxruntime(source_run: Path, tmp_path: Path, digits_ds: ArrayDataset,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.onnx"
    assert main(["export", str(source_run), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"exported {out} (opset ") and "max abs diff" in line
    info = json.loads(out.with_name("model.onnx.json").read_text())
    loaded = load_run(source_run)
    assert info["class_names"] == loaded.spec.class_names and info["check"]["max_abs_diff"] <= 1e-3
    assert info["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 1, 28, 28]}]
    assert info["outputs"][0]["name"] == "logits" and info["check_data"] == "mnist5k"
    x = conform(digits_ds.subset(np.arange(5)), (1, 28, 28)).x  # other data, another batch size
    got = _session(out).run(["logits"], {"input": x})[0]  # type: ignore[attr-defined]
    with torch.no_grad():
        want = loaded.model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_export_never_overwrites_without_the_flag(source_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the user's file")
    err = _one_line_error(capsys, ["export", str(source_run), "--out", str(out)])
    assert err == f"transferkit: error: {out}: already exists; pick another --out or pass --overwrite"
    assert out.read_bytes() == b"the user's file" and not out.with_name("model.onnx.json").exists()
    assert main(["export", str(source_run), "--out", str(out), "--overwrite"]) == 0
    assert out.stat().st_size > 1000
    err = _one_line_error(capsys, ["export", str(source_run), "--out", str(tmp_path / "model.txt")])
    assert "must end in .onnx" in err
    for bad in ("-1", "nan"):
        err = _one_line_error(capsys, ["export", str(source_run), "--out", str(tmp_path / "t.onnx"), "--tolerance", bad])
        assert f"--tolerance {float(bad)}: must be a finite number >= 0" in err


def test_incomplete_run_and_a_failed_check_write_nothing(source_run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    shutil.copytree(source_run, run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "failed"}))
    err = _one_line_error(capsys, ["export", str(run), "--out", str(tmp_path / "a.onnx")])
    assert "not a complete run (status: failed)" in err
    monkeypatch.setattr(export, "_compare", lambda *a: (0.5, 1.0))
    with pytest.raises(ConfigError, match=r"differ from PyTorch's by up to 0.5 \(tolerance 0.001\); nothing written"):
        export.export_onnx(source_run, tmp_path / "b.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MiniLM linear probe on 24 real tweets (user CSV), one epoch."""
    tmp = tmp_path_factory.mktemp("export_text")
    ds = load_dataset("vader-tweets")
    y = ds.require_labels()
    idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:12] for c in range(ds.num_classes)]))
    with (tmp / "train.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([str(ds.x[i]), ds.class_names[y[i]]] for i in idx)
    transferkit.transfer("minilm", str(tmp / "train.csv"), strategy="linear_probe", out=tmp / "run", seed=0,
                         epochs=1, progress="off", precision="fp32")
    return tmp / "run"


def test_text_run_exports_with_its_tokenizer(text_run: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    out = tmp_path / "text.onnx"
    res = export.export_onnx(text_run, out)
    assert res.max_abs_diff <= 1e-3 and res.argmax_agree == 1.0
    info = json.loads(res.info_path.read_text())
    assert [i["name"] for i in info["inputs"]] == ["input_ids", "attention_mask"]
    texts = ["I love this!", "worst day of my life, everything went wrong", "meh"]
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "text.onnx.tokenizer"), local_files_only=True)
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
    feeds = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
    got = _session(out).run(["logits"], feeds)[0]  # type: ignore[attr-defined]
    loaded = load_run(text_run)
    x = prepare(ArrayDataset(np.array(texts, dtype=object), None, [], "t", modality="text"), loaded.spec).x
    np.testing.assert_array_equal(x[:, 0], feeds["input_ids"])  # the saved tokenizer is the run's
    with torch.no_grad():
        want = loaded.model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_audio_run_exports_its_front_end(tmp_path: Path) -> None:
    """The log-mel front end (a complex STFT in PyTorch) goes into the graph as a DFT convolution."""
    run = tmp_path / "audio"
    transferkit.pretrain("spoken-digits:voices=A,per_voice=2", "audio_cnn", run, seed=0, epochs=1,
                         model_kwargs={"width": 8}, precision="fp32", progress="off")
    res = export.export_onnx(run, tmp_path / "audio.onnx")
    assert res.max_abs_diff <= 1e-3
    loaded = load_run(run)
    x = torch.randn(3, *loaded.spec.input_shape) * 0.1
    with torch.no_grad():
        want = loaded.model.eval()(x).numpy()
        swapped = export.exportable(loaded.model).eval()(x).numpy()
    got = _session(tmp_path / "audio.onnx").run(["logits"], {"waveform": x.numpy()})[0]  # type: ignore[attr-defined]
    np.testing.assert_allclose(swapped, want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_tabular_run_exports_with_its_preprocessing_described(tmp_path: Path) -> None:
    from sklearn.datasets import load_wine

    wine = load_wine()
    with (tmp_path / "wine.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*wine.feature_names, "label"])
        w.writerows([*row, int(c)] for row, c in zip(wine.data, wine.target))
    transferkit.pretrain(str(tmp_path / "wine.csv"), "mlp", tmp_path / "run", seed=0, epochs=2, progress="off")
    res = export.export_onnx(tmp_path / "run", tmp_path / "wine.onnx")
    info = json.loads(res.info_path.read_text())
    assert info["inputs"][0]["shape"] == ["batch", 13] and "model.preprocess" in info["preprocessing"]
    assert [c["name"] for c in info["model"]["preprocess"]["columns"]] == list(wine.feature_names)
    loaded = load_run(tmp_path / "run")
    x = load_dataset(str(tmp_path / "wine.csv"), model=loaded.spec).x[:20].astype(np.float32)
    got = _session(tmp_path / "wine.onnx").run(["logits"], {"input": x})[0]  # type: ignore[attr-defined]
    with torch.no_grad():
        want = loaded.model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_efficientnet_lite0_run_exports(tmp_path: Path) -> None:
    run = tmp_path / "eff"
    transferkit.transfer("efficientnet_lite0", "digits8", strategy="linear_probe", shots=2, out=run, epochs=1,
                         progress="off")
    res = export.export_onnx(run, tmp_path / "eff.onnx")
    assert res.max_abs_diff <= 1e-3 and res.argmax_agree == 1.0
