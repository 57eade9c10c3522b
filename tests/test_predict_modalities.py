"""``transferkit predict`` on text and audio runs: inputs read by the model's modality."""

from __future__ import annotations

import csv
import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.cli import main
from transferkit.data import load_dataset
from transferkit.errors import DataError
from transferkit.prediction import predict


def _rows(ds, per_class: int) -> tuple[list[str], list[int]]:  # type: ignore[no-untyped-def]
    y = ds.require_labels()
    idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(ds.num_classes)]))
    return [str(ds.x[i]) for i in idx], [int(y[i]) for i in idx]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[int]]:
    """A MiniLM linear probe trained on 40 real tweets (user CSV); 6 other tweets to predict."""
    tmp = tmp_path_factory.mktemp("predict_text")
    ds = load_dataset("vader-tweets")
    texts, labels = _rows(ds, 23)
    with (tmp / "train.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([t, ds.class_names[c]] for t, c in zip(texts[:40], labels[:40]))
    transferkit.transfer("minilm", str(tmp / "train.csv"), strategy="linear_probe", out=tmp / "run", seed=0,
                         epochs=5, progress="off")
    return tmp / "run", texts[40:], labels[40:]


def test_predict_text_from_txt_csv_and_jsonl_agree(text_run: tuple[Path, list[str], list[int]], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run, texts, _ = text_run
    (tmp_path / "in.txt").write_text("\n".join(texts[:3]) + "\n\n" + "\n".join(texts[3:]) + "\n", encoding="utf-8")
    with (tmp_path / "in.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        w.writerows([i, t] for i, t in enumerate(texts))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    by_file = {s: predict(run, tmp_path / f"in.{s}") for s in ("txt", "csv", "jsonl")}
    assert [r["input"] for r in by_file["txt"]] == ["in.txt:1", "in.txt:2", "in.txt:3", "in.txt:5", "in.txt:6", "in.txt:7"]
    classes = transferkit.load_run(run).spec.class_names
    for rows in by_file.values():
        assert len(rows) == len(texts)
        assert all(r["class"] in classes and 0.5 <= r["probability"] <= 1.0 for r in rows)
    picks = [[r["class"] for r in rows] for rows in by_file.values()]
    assert picks[0] == picks[1] == picks[2]
    # the run's own model on the same texts gives the same classes
    loaded = transferkit.load_run(run)
    ds = transferkit.data.prepare(transferkit.data.ArrayDataset(np.array(texts, dtype=object), None, [], "t",
                                                                modality="text"), loaded.spec)
    with torch.no_grad():
        direct = loaded.model.eval()(torch.from_numpy(ds.x)).argmax(1).tolist()
    assert picks[0] == [classes[i] for i in direct]
    assert main(["predict", str(run), str(tmp_path / "in.txt")]) == 0
    assert capsys.readouterr().out.startswith("input,class,probability\nin.txt:1,")


def test_predict_text_rejects_images_and_empty_files(text_run: tuple[Path, list[str], list[int]], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = str(text_run[0])
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    (tmp_path / "x.npz").write_bytes(b"")
    (tmp_path / "nums.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    for path, needle in ((tmp_path / "empty.txt", "no text"), (tmp_path / "x.npz", "a text model takes"),
                         (tmp_path / "nums.csv", "no 'text' column")):
        assert main(["predict", run, str(path)]) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err and str(path) in err


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def test_predict_audio_from_a_wav_file_and_a_folder(tmp_path: Path) -> None:
    """A run pretrained on synthesised spoken digits predicts WAV files; 8 kHz input is resampled."""
    out = tmp_path / "src"
    transferkit.pretrain("spoken-digits:voices=A,per_voice=2", "audio_cnn", out, seed=0, epochs=1,
                         model_kwargs={"width": 8}, precision="fp32", progress="off")
    ds = load_dataset("spoken-digits:voices=B,per_voice=1")
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(3):
        _write_wav(folder / f"clip{i}.wav", ds.x[i], 16_000)
    rows = predict(out, folder)
    assert [Path(r["input"]).name for r in rows] == ["clip0.wav", "clip1.wav", "clip2.wav"]
    one = predict(out, folder / "clip1.wav")
    assert one[0]["class"] == rows[1]["class"]
    assert one[0]["probability"] == pytest.approx(rows[1]["probability"], abs=2e-3)  # int16 round trip, same path
    _write_wav(tmp_path / "slow.wav", ds.x[1][::2], 8_000)
    assert predict(out, tmp_path / "slow.wav")[0]["class"] in transferkit.load_run(out).spec.class_names
    (tmp_path / "notes.txt").write_text("one", encoding="utf-8")
    with pytest.raises(DataError, match="notes.txt: an audio model takes a .wav file"):
        predict(out, tmp_path / "notes.txt")
