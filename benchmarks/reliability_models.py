"""More cases of the hostile-input matrix (benchmarks/reliability.py): config files and devices,
export and Hugging Face folders, augmentation, zero-shot labels and a learning rate that diverges.
Each function builds its inputs under the matrix's temporary folder and returns case name -> :class:`Case`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from reliability_cases import Case, Check
from reliability_inputs import as_cases, copy_run, digits_npz


def config_device_cases(tmp: Path, source: Path) -> dict[str, Case]:
    """Config paths that are absolute or climb out of the config's folder; devices this build lacks."""
    c, out, src = tmp / "cfg2", str(tmp / "out"), str(source)
    c.mkdir()
    outside = tmp / "outside.jsonl"
    outside.write_text('{"text": "unlabelled", "label": "x"}\n')
    (c / "abs.toml").write_text(f'data = "digits8"\nunlabelled = "{outside}"\n')
    (c / "climb.toml").write_text('data = "digits8"\nunlabelled = "rest+../outside.jsonl"\n')
    (c / "clients.toml").write_text(f'clients_from = "digits8,{tmp / "x.npz"}"\n')
    (c / "rank.toml").write_text(f'data = "digits8"\ncandidates = ["mnist_cnn", "{source}"]\n')
    (c / "hfpath.toml").write_text('source = "hf"\nmodel_opt = ["path=/etc"]\ndata = "digits8"\n')
    cases: dict[str, list[str] | Case] = {
        "config: unlabelled is an absolute path": ["transfer", "--config", str(c / "abs.toml"), "--source", src,
                                                   "--out", out],
        "config: unlabelled climbs out (rest+../)": ["transfer", "--config", str(c / "climb.toml"), "--source", src,
                                                     "--out", out],
        "config: clients_from holds an absolute path": ["federate", "--config", str(c / "clients.toml"),
                                                        "--source", src, "--out", out],
        "config: rank candidates hold an absolute path": ["rank", "--config", str(c / "rank.toml")],
        "config: a model option path outside the folder": ["transfer", "--config", str(c / "hfpath.toml"),
                                                           "--out", out],
        "--device tpu": ["pretrain", "--data", "digits8", "--device", "tpu", "--out", out],
    }
    if not torch.cuda.is_available():  # on a CUDA build the run would simply train
        cases |= {f"{cmd} --device cuda on a CPU build": argv for cmd, argv in {
            "pretrain": ["pretrain", "--data", "digits8", "--device", "cuda", "--out", out],
            "transfer": ["transfer", "--source", src, "--data", "digits8", "--device", "cuda", "--out", out],
            "adapt": ["adapt", "--source", src, "--source-data", "mnist5k", "--target-data", "digits8",
                      "--device", "cuda", "--out", out],
        }.items()}
    return as_cases(cases)


def tiny_bert(folder: Path) -> None:
    """A randomly initialised 2-layer BERT saved as safetensors (no tokenizer files beside it)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(folder, safe_serialization=True)


def onnx_checked(path: Path) -> Check:
    """A check: the export wrote ``path`` and its record says onnxruntime's logits matched PyTorch's on
    real inputs (within the tolerance, every argmax the same)."""
    def check(tmp: Path, stdout: str) -> str | None:
        record = path.with_name(path.name + ".json")
        if not path.exists() or not record.exists():
            return f"{path.name} or its record not written"
        c = json.loads(record.read_text())["check"]
        ok = c["samples"] > 0 and c["max_abs_diff"] <= c["tolerance"] and c["argmax_agree"] == 1.0
        return None if ok else f"onnxruntime vs PyTorch: {c}"
    return check


def export_hf_cases(tmp: Path, source: Path) -> dict[str, Case]:
    """export: a run that is not finished, an existing file, a wrong suffix, a negative tolerance;
    a Hugging Face folder with pickled weights or no tokenizer; predict --top-k out of range."""
    e, src = tmp / "export", str(source)
    running = e / "running"
    copy_run(source, running)
    (running / "run.json").write_text(json.dumps({**json.loads((source / "run.json").read_text()),
                                                  "status": "running", "pid": 2**22 + 1}))
    (e / "existing.onnx").write_bytes(b"a user's model\n")
    bert = e / "no_tokenizer"
    tiny_bert(bert)
    pickled = e / "pickled"
    pickled.mkdir()
    shutil.copy(bert / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    tweets = str(tmp / "export" / "tweets.csv")
    (e / "tweets.csv").write_text("text,label\n" + "".join(f"tweet number {k} is {w},{w}\n" for k in range(6)
                                                               for w in ("good", "bad")))
    m = e / "m.onnx"
    out = str(tmp / "out")
    return as_cases({
        "export a run that is not complete": ["export", str(running), "--out", str(e / "a.onnx")],
        "export onto an existing file": ["export", src, "--out", str(e / "existing.onnx")],
        "export to a file not ending in .onnx": ["export", src, "--out", str(e / "m.txt")],
        "export --tolerance -1": ["export", src, "--out", str(e / "b.onnx"), "--tolerance", "-1"],
        "HF folder with only pytorch_model.bin": ["transfer", "--source", str(pickled), "--data", tweets,
                                                 "--strategy", "linear_probe", "--out", out],
        "HF folder without tokenizer files": ["transfer", "--source", str(bert), "--data", tweets,
                                              "--strategy", "linear_probe", "--out", out],
        "export a run to ONNX, checked (result)": Case(["export", src, "--out", str(m)], "result", onnx_checked(m)),
    })


def augment_cases(tmp: Path, source: Path) -> dict[str, Case]:
    """--augment: a value that is not one, and augmentation asked of a text model."""
    out, src = str(tmp / "out"), str(source)
    return as_cases({
        "--augment sideways": ["transfer", "--source", src, "--data", "digits8", "--shots", "2", "--augment",
                               "sideways", "--out", out],
        "--augment on with a text model": ["transfer", "--source", "minilm", "--data", "vader-tweets", "--shots", "4",
                                           "--augment", "on", "--out", out],
    })


def headless_ranked(tmp: Path, stdout: str) -> str | None:
    """A check: rank scored minilm (no source classes) with the feature scores and said LEEP/NCE were left out."""
    row = next((line for line in stdout.splitlines() if line.startswith("| 1 | minilm |")), "")
    cells = [c.strip() for c in row.strip("|").split("|")]
    if len(cells) < 5:
        return "no table row for minilm"
    if "note: minilm has no source classes" not in stdout:
        return "no note on the scores left out"
    return None if cells[2] not in ("nan", "") and "nan" in cells else f"unexpected row: {row}"


def engine_cases(tmp: Path, source: Path) -> dict[str, Case]:
    """zero-shot labels that name no class; a learning rate of 1e6; ranking an encoder with no head."""
    digits_npz(tmp / "engine" / "d8.npz", n=300)
    return as_cases({
        "zeroshot --labels names no class": ["zeroshot", "--data", "vader-tweets", "--labels", "positive,weather"],
        "--lr 1e6 (divergence)": Case(["transfer", "--source", str(source), "--data", str(tmp / "engine" / "d8.npz"),
                                       "--strategy", "full", "--lr", "1e6", "--epochs", "2", "--out", str(tmp / "out")],
                                      live="restoring the phase's starting weights and retrying"),
        "rank an encoder without a head (result)": Case(["rank", "--data", "vader-tweets", "--candidates", "minilm",
                                                         "--shots", "8"], "result", headless_ranked),
    })


def flag_cases(tmp: Path, source: Path) -> dict[str, Case]:
    """What a careful tester types next: flags argparse rejects, numbers out of range, names given twice."""
    out, src = str(tmp / "out"), str(source)
    d8 = str(tmp / "inputs" / "d8.npz")  # written by image_input_cases
    transfer = ["transfer", "--source", src, "--data", "digits8", "--out", out]
    return as_cases({
        "--seed is not a number": [*transfer, "--seed", "abc"],
        "a required flag missing": ["transfer", "--source", src, "--out", out],
        "an unknown flag": [*transfer, "--learning-rate", "0.1"],
        "an unknown command": ["frobnicate"],
        "--epochs 0": [*transfer, "--epochs", "0"],
        "--batch-size 0": [*transfer, "--batch-size", "0"],
        "--lr nan": [*transfer, "--lr", "nan"],
        "--weight-decay -1": [*transfer, "--weight-decay", "-1"],
        "predict --top-k above the class count": ["predict", src, d8, "--top-k", "11"],
        "rank a candidate that does not exist": ["rank", "--data", "digits8", "--candidates", str(tmp / "nowhere")],
        "zeroshot --labels names a class twice": ["zeroshot", "--data", "vader-tweets", "--labels",
                                                  "positive,positive"],
        "image data into a text model": ["transfer", "--source", "minilm", "--data", "digits8", "--shots", "2",
                                         "--out", out],
        "a strategy option the strategy lacks": [*transfer, "--strategy", "full", "--option", "k=2"],
        "--label-column on a built-in data set": ["pretrain", "--data", "digits8", "--label-column", "foo",
                                                  "--out", out],
        "adapt --augment on (adapt re-styles with --restyle-source)": [
            "adapt", "--source", src, "--source-data", "mnist5k", "--target-data", "digits8", "--augment", "on",
            "--out", out],
    })
