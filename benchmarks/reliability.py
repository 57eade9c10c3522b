"""The bad-input matrix: every case through the CLI, its exit code and its one-line message.

    python benchmarks/reliability.py            # writes docs/RELIABILITY.md and docs/reliability.json

Each case builds its bad input in a temporary folder, runs ``transferkit.cli.main`` on it and
records the exit code, the stderr lines, whether a traceback escaped, and whether a run
directory was left looking complete. ``tests/test_reliability_matrix.py`` runs the same cases.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import io
import json
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    case: str
    command: str
    exit_code: int
    message: str
    lines: int
    traceback: bool
    complete_run_left: bool

    @property
    def ok(self) -> bool:
        return self.exit_code != 0 and self.lines == 1 and not self.traceback and not self.complete_run_left


def _png(path: Path, size: tuple[int, int] = (28, 28), mode: str = "L") -> None:
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


def build_cases(tmp: Path, source: Path) -> dict[str, list[str]]:
    """Case name -> CLI arguments; every input the case needs is written under ``tmp``."""
    out = str(tmp / "out")
    # image folders: an empty class, a corrupt image, mixed sizes/channels
    (tmp / "empty_class" / "a").mkdir(parents=True)
    _png(tmp / "empty_class" / "b" / "0.png")
    (tmp / "empty_class" / "a" / "notes.txt").write_text("no images here")
    _png(tmp / "corrupt" / "a" / "0.png")
    _png(tmp / "corrupt" / "b" / "0.png")
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
    (inc / "run.json").write_text(json.dumps({"status": "running"}))
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


def run_case(name: str, argv: list[str], out: Path) -> Outcome:
    from transferkit.cli import main

    err = io.StringIO()
    traceback = False
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except BaseException as e:  # noqa: BLE001 - an escaped exception is exactly what we record
            code, traceback = 1, True
            print(f"{type(e).__name__}: {e}", file=err)
    msg = [line for line in err.getvalue().splitlines() if line.strip() and not line.startswith("transferkit: resuming")]
    complete = (out / "run.json").exists() and json.loads((out / "run.json").read_text()).get("status") == "complete"
    return Outcome(name, "transferkit " + " ".join(argv), code, msg[-1] if msg else "", len(msg), traceback, complete)


def tiny_source(where: Path) -> Path:
    from transferkit import pretrain

    run = where / "source"
    pretrain("digits8", "small_cnn", run, epochs=1, model_kwargs={"width": 8, "hidden": 32}, progress="off")
    return run


def run_matrix(tmp: Path, log: Callable[[str], None] = lambda s: None) -> list[Outcome]:
    source = tiny_source(tmp)
    outcomes = []
    for name, argv in build_cases(tmp, source).items():
        o = run_case(name, argv, tmp / "out")
        log(f"{'ok ' if o.ok else 'BAD'} {name}: exit {o.exit_code}: {o.message}")
        outcomes.append(o)
    return outcomes


def render(outcomes: list[Outcome], command: str) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    good = sum(o.ok for o in outcomes)
    lines = ["# Reliability: the bad-input matrix", "",
             f"> Generated by `{command}` on {date}. Do not edit by hand. Each case runs the CLI on a bad "
             "input built in a temporary folder (paths below are shortened to `<tmp>`).", "",
             f"**{good} of {len(outcomes)} cases** end with exactly one line on stderr, a non-zero exit, no traceback "
             "and no run directory marked complete.", "",
             "| case | exit | one line | traceback | message |", "|---|---|---|---|---|"]
    for o in outcomes:
        msg = o.message.replace("|", "\\|")
        lines.append(f"| {o.case} | {o.exit_code} | {'yes' if o.lines == 1 else f'no ({o.lines})'} | "
                     f"{'YES' if o.traceback else 'no'} | `{msg}` |")
    lines += ["", "Kill and resume, divergence, determinism and safe loading are covered by tests: "
              "`tests/test_kill_resume.py` (SIGKILL mid-training, then byte-identical weights after resuming), "
              "`tests/strategies/test_reliability.py` (NaN loss -> rollback and lower learning rate; bit-identical "
              "metrics per strategy family), `tests/test_runs.py` (torn checkpoints, corrupt weights). "
              "The same errors reach Python callers as typed one-line exceptions "
              "(`tests/test_reliability_matrix.py::test_the_api_raises_the_same_typed_one_line_errors`). "
              "Resource limits: an image folder past `$TRANSFERKIT_DATA_MEMORY` loads one file at a time into a "
              "memory-mapped array and a feature cache past `$TRANSFERKIT_CACHE_MEMORY` spills to disk "
              "(`tests/data/test_storage.py`, `tests/engine/test_features.py`). Config files cannot import "
              "modules or reach outside their folder (`tests/test_configfile.py`)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with tempfile.TemporaryDirectory(prefix="tk-reliability-") as d:
        tmp = Path(d)
        outcomes = run_matrix(tmp, lambda s: print(s, file=sys.stderr))
        text = render(outcomes, "python benchmarks/reliability.py").replace(str(tmp), "<tmp>")
    docs = ROOT / "docs"
    (docs / "RELIABILITY.md").write_text(text)
    (docs / "reliability.json").write_text(json.dumps([{**asdict(o), "ok": o.ok} for o in outcomes], indent=1)
                                           .replace(str(tmp), "<tmp>") + "\n")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
