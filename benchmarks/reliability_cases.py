"""The cases of the hostile-input matrix (benchmarks/reliability.py): each builds its input under a
temporary folder and names the CLI arguments that meet it, and what must come of it.

Two kinds: ``error`` cases must end in exactly one line on stderr and a non-zero exit, with no run
left looking complete; ``result`` cases must succeed, and their ``check`` must find the result right
(a garbage input that the tool now reads correctly belongs here). In every case no file that existed
before it ran may change or vanish, except those the case names in ``writes``.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

#: (the matrix's temporary folder, the command's stdout) -> what is wrong, or None when the result is right
Check = Callable[[Path, str], "str | None"]


@dataclass(frozen=True)
class Case:
    argv: list[str]
    expect: Literal["error", "result"] = "error"
    check: Check | None = None
    writes: tuple[str, ...] = field(default=())  # paths under the temporary folder the case may change
    #: text of the warnings the command prints as it goes, before its outcome (a rollback while training):
    #: stderr lines holding it are counted apart from the one line an error case must end in
    live: str = ""


def png(path: Path, size: tuple[int, int] = (28, 28), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3 if mode == "RGB" else 1)
                                                     ).astype(np.uint8).squeeze(), mode).save(path)


def _wav_bytes(rate: int = 16000, seconds: float = 0.25) -> bytes:
    """A real PCM WAV (a 440 Hz tone) as bytes."""
    import wave

    buf = io.BytesIO()
    t = np.arange(int(rate * seconds)) / rate
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def _wav(path: Path) -> None:
    path.write_bytes(_wav_bytes())


def error_cases(tmp: Path, source: Path) -> dict[str, list[str]]:
    """Case name -> CLI arguments of inputs that must end in one line and a non-zero exit; every input the
    case needs is written under ``tmp``."""
    out = str(tmp / "out")
    # image folders: an empty class, a corrupt image, mixed sizes/channels
    (tmp / "empty_class" / "a").mkdir(parents=True)
    png(tmp / "empty_class" / "b" / "0.png")
    (tmp / "empty_class" / "a" / "notes.txt").write_text("no images here")
    png(tmp / "corrupt" / "a" / "0.png")
    png(tmp / "corrupt" / "b" / "0.png")
    (tmp / "corrupt" / "b" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    # files: CSV without label column, truncated IDX, NaN features, labels out of range, empty npz
    (tmp / "nolabel.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    header = (0x00000803).to_bytes(4, "big") + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(tmp / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + bytes(28 * 28 * 3))
    with gzip.open(tmp / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write((0x00000801).to_bytes(4, "big") + (10).to_bytes(4, "big") + bytes(10))
    x = np.zeros((20, 28, 28), np.float32)
    x[3, 4, 5] = np.nan
    np.savez(tmp / "nan.npz", x=x, y=np.arange(20) % 2)
    np.savez(tmp / "labels.npz", x=np.zeros((20, 28, 28), np.float32), y=np.arange(20) % 4,
             class_names=np.array(["0", "1"]))
    np.savez(tmp / "empty.npz", x=np.zeros((0, 28, 28), np.float32), y=np.zeros(0, np.int64))
    np.savez(tmp / "letters.npz", x=np.random.default_rng(0).random((30, 28, 28), dtype=np.float32),
             y=np.array(list("abc") * 10))
    # run directories: corrupt / truncated weights, a pickle posing as safetensors, an incomplete run
    for name, data in {"corrupt_weights": b"not a safetensors file at all",
                       "truncated_weights": (source / "model.safetensors").read_bytes()[:1000],
                       "pickled_weights": pickle.dumps({"weight": [1.0]})}.items():
        run = tmp / name
        run.mkdir()
        for f in ("run.json", "config.json", "model.json", "metrics.json"):
            (run / f).write_bytes((source / f).read_bytes())
        (run / "model.safetensors").write_bytes(data)
    inc = tmp / "incomplete"
    inc.mkdir()
    killed = {**json.loads((source / "run.json").read_text()), "status": "running", "pid": 2**22 + 1}  # no such pid
    killed.pop("finished", None)
    (inc / "run.json").write_text(json.dumps(killed))
    # a run whose model.json names another architecture than its weights
    arch = tmp / "wrong_architecture"
    arch.mkdir()
    for f in ("run.json", "config.json", "metrics.json", "model.safetensors"):
        (arch / f).write_bytes((source / f).read_bytes())
    spec = json.loads((source / "model.json").read_text())
    (arch / "model.json").write_text(json.dumps({**spec, "name": "mlp", "kwargs": {}}))
    # audio: a truncated WAV and a WAV that is not PCM at all; text: CSVs without text / ragged rows
    wavs = tmp / "wavs"
    for c in ("a", "b"):
        (wavs / c).mkdir(parents=True)
        _wav(wavs / c / "0.wav")
    (wavs / "b" / "1.wav").write_bytes(_wav_bytes()[:60])
    (tmp / "notwav" / "a").mkdir(parents=True)
    (tmp / "notwav" / "b").mkdir(parents=True)
    _wav(tmp / "notwav" / "a" / "0.wav")
    (tmp / "notwav" / "b" / "0.wav").write_bytes(b"RIFF0000WAVEjunkjunkjunk")
    (tmp / "notext.jsonl").write_text('{"body": "great film", "label": "pos"}\n')
    (tmp / "ragged.csv").write_text("text,label\ngood film,pos\nbad film,neg,extra\n")
    # config files: a path escaping the config's folder, an unknown key
    (tmp / "cfg").mkdir()
    (tmp / "cfg" / "escape.toml").write_text('data = "../nan.npz"\n')
    (tmp / "cfg" / "typo.toml").write_text('data = "digits8"\nepoch = 3\n')
    src = str(source)
    return {
        "missing data path": ["pretrain", "--data", str(tmp / "nope"), "--out", out],
        "unknown dataset name": ["pretrain", "--data", "mnist5", "--out", out],
        "empty class folder": ["pretrain", "--data", str(tmp / "empty_class"), "--out", out],
        "corrupt image": ["pretrain", "--data", str(tmp / "corrupt"), "--out", out],
        "truncated IDX file": ["pretrain", "--data", str(tmp / "train-images-idx3-ubyte.gz"), "--out", out],
        "CSV without a label column": ["pretrain", "--data", str(tmp / "nolabel.csv"), "--out", out],
        "NaN in the inputs": ["pretrain", "--data", str(tmp / "nan.npz"), "--out", out],
        "labels out of range": ["pretrain", "--data", str(tmp / "labels.npz"), "--out", out],
        "empty dataset": ["pretrain", "--data", str(tmp / "empty.npz"), "--out", out],
        "corrupt safetensors": ["transfer", "--source", str(tmp / "corrupt_weights"), "--data", "digits8", "--out", out],
        "truncated safetensors": ["transfer", "--source", str(tmp / "truncated_weights"), "--data", "digits8", "--out", out],
        "a pickle posing as weights": ["transfer", "--source", str(tmp / "pickled_weights"), "--data", "digits8", "--out", out],
        "incomplete (killed) source run": ["transfer", "--source", str(inc), "--data", "digits8", "--out", out],
        "source is not a run directory": ["transfer", "--source", str(tmp), "--data", "digits8", "--out", out],
        "class-count mismatch with --head keep": ["transfer", "--source", src, "--data", str(tmp / "letters.npz"),
                                                  "--head", "keep", "--out", out],
        "classes unseen by the model at evaluation": ["evaluate", src, "--data", str(tmp / "letters.npz")],
        "unknown strategy (did you mean)": ["transfer", "--source", src, "--data", "digits8", "--strategy", "lpft", "--out", out],
        "unknown strategy option": ["transfer", "--source", src, "--data", "digits8", "--strategy", "partial",
                                    "--option", "kk=2", "--out", out],
        "negative learning rate": ["transfer", "--source", src, "--data", "digits8", "--lr", "-0.1", "--out", out],
        "shots larger than a class": ["transfer", "--source", src, "--data", "digits8", "--shots", "500", "--out", out],
        "unknown model option": ["pretrain", "--data", "digits8", "--model-opt", "widht=8", "--out", out],
        "unknown adaptation method": ["adapt", "--source", src, "--source-data", "mnist5k", "--target-data", "digits8",
                                      "--method", "dan", "--out", out],
        "predict on a missing input": ["predict", src, str(tmp / "nothing.npz")],
        "truncated WAV file": ["pretrain", "--data", str(wavs), "--model", "audio_cnn", "--out", out],
        "corrupt (non-PCM) WAV file": ["pretrain", "--data", str(tmp / "notwav"), "--model", "audio_cnn", "--out", out],
        "text field missing (JSON Lines)": ["pretrain", "--data", str(tmp / "notext.jsonl"), "--out", out],
        "ragged CSV rows": ["pretrain", "--data", str(tmp / "ragged.csv"), "--out", out],
        "text data into an image model (modality)": ["transfer", "--source", src, "--data", "vader-tweets", "--out", out],
        "architecture does not match the weights": ["transfer", "--source", str(arch), "--data", "digits8", "--out", out],
        "unknown backbone (did you mean)": ["transfer", "--source", "efficientnet_lite", "--data", "digits8", "--out", out],
        "unknown transferability score": ["rank", "--data", "digits8", "--candidates", src, "--scores", "logm"],
        "unknown dataset option": ["pretrain", "--data", "spoken-digits:voice=B", "--out", out],
        "config path escapes its folder": ["transfer", "--config", str(tmp / "cfg" / "escape.toml"), "--source", src,
                                           "--out", out],
        "config with an unknown key": ["transfer", "--config", str(tmp / "cfg" / "typo.toml"), "--source", src,
                                       "--out", out],
    }


def tester_cases(tmp: Path, source: Path) -> dict[str, list[str]]:
    """What a careful tester tries next: nonsense numbers, files where folders go, empty and binary inputs."""
    out, src = str(tmp / "out"), str(source)
    t = tmp / "tester"
    (t / "noclasses").mkdir(parents=True)
    (t / "emptyfolder").mkdir()
    (t / "an_out_file").write_text("a user's file\n")
    (t / "header_only.csv").write_text("text,label\n")
    (t / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (t / "badline.jsonl").write_text('{"text": "fine", "label": "pos"}\n{"text": "broken", \n')
    (t / "plain.txt").write_text("a text with no label\nanother\n")
    (t / "bad.toml").write_text('data = "digits8\n')
    running = t / "running_run"
    running.mkdir()
    for f in ("config.json", "model.json", "model.safetensors"):
        (running / f).write_bytes((source / f).read_bytes())
    killed = {**json.loads((source / "run.json").read_text()), "status": "running", "pid": 2**22 + 1}
    (running / "run.json").write_text(json.dumps(killed))
    return {
        "zero shots": ["transfer", "--source", src, "--data", "digits8", "--shots", "0", "--out", out],
        "negative shots": ["transfer", "--source", src, "--data", "digits8", "--shots", "-3", "--out", out],
        "--out is an existing file": ["transfer", "--source", src, "--data", "digits8", "--shots", "2",
                                      "--out", str(t / "an_out_file")],
        "folder with no class sub-folders": ["pretrain", "--data", str(t / "noclasses"), "--out", out],
        "CSV with a header only": ["pretrain", "--data", str(t / "header_only.csv"), "--out", out],
        "binary file named .csv": ["pretrain", "--data", str(t / "binary.csv"), "--out", out],
        "invalid JSON line": ["pretrain", "--data", str(t / "badline.jsonl"), "--out", out],
        "unlabelled text file as training data": ["pretrain", "--data", str(t / "plain.txt"), "--out", out],
        "malformed TOML config": ["transfer", "--config", str(t / "bad.toml"), "--source", src, "--out", out],
        "missing config file": ["transfer", "--config", str(t / "nope.toml"), "--source", src, "--out", out],
        "auto budget is not a number": ["transfer", "--source", src, "--data", "digits8", "--strategy", "auto",
                                        "--budget", "soon", "--out", out],
        "predict with a killed run": ["predict", str(running), str(t / "emptyfolder")],
        "predict on an empty folder": ["predict", src, str(t / "emptyfolder")],
        "evaluate a folder that is not a run": ["evaluate", str(t / "noclasses"), "--data", "digits8"],
        "report on a folder that is not a run": ["report", str(t / "noclasses"), "--out", str(t / "r.html")],
        "zero-shot with an image model": ["zeroshot", "--source", src, "--data", "digits8", "--labels", "0,1"],
        "source is a file": ["transfer", "--source", str(t / "an_out_file"), "--data", "digits8", "--out", out],
    }
