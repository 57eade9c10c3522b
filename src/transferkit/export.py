"""Export a finished run's model to ONNX and check it with onnxruntime against PyTorch.

The graph takes the model's prepared inputs and returns ``logits`` ``[batch, classes]`` (apply a
softmax for probabilities); the batch axis is dynamic, and for text the sequence axis too:

- image / tabular: ``input`` float32 ``[batch, *input_shape]``: pixel values in 0..1 resized to the
  model's size (any normalisation the backbone does, e.g. EfficientNet's ``(255 x - 127) / 128``,
  is inside the graph); tabular rows after the run's preprocessing, when it has one (``model.json``).
- text: ``input_ids`` and ``attention_mask`` int64 ``[batch, sequence]`` from the run's tokenizer,
  which is saved beside the graph (``<out>.tokenizer/``).
- audio: ``waveform`` float32 ``[batch, samples]``: mono 16 kHz; the front end is inside the graph.

``<out>.json`` records this (class names, input and output names, shapes, dtypes, preprocessing)
and the check: onnxruntime's logits on real inputs of the run's data against PyTorch's (fp32),
whose largest absolute difference must stay within ``tolerance`` or nothing is written.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import torch
from torch import nn

from transferkit import __version__
from transferkit.errors import ConfigError, TransferkitError
from transferkit.runs import LoadedRun, load_run

if TYPE_CHECKING:
    from transferkit.models.audio import LogMel

#: the opset written, or the installed onnx's newest when that is older (17: native LayerNormalization)
OPSET = 17


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and how closely onnxruntime reproduced PyTorch."""

    path: Path
    info_path: Path
    opset: int
    checked: int
    max_abs_diff: float
    tolerance: float
    argmax_agree: float


class _TextEncoder(Protocol):
    """What a text model must offer to be exported (``_graph_io`` checks ``encode``)."""

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor: ...


class _TextLogits(nn.Module):
    """Logits of a text model from separate ids and mask, with no per-batch trimming (traceable)."""

    model: nn.Module

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        text = cast(_TextEncoder, self.model)
        return text.forward_head(text.encode(input_ids, attention_mask))


class _DftLogMel(nn.Module):
    """:class:`~transferkit.models.audio.LogMel` with its STFT as a strided convolution by the windowed
    DFT basis (the TorchScript ONNX exporter has no complex STFT); same output up to float rounding.

    Shape: ``[N, T]`` -> ``[N, n_mels, 1 + T // hop_length]``.
    """

    basis: torch.Tensor
    fbank: torch.Tensor

    def __init__(self, logmel: LogMel) -> None:
        super().__init__()
        n_fft, win = int(logmel.n_fft), int(logmel.win_length)
        left = (n_fft - win) // 2
        window = torch.zeros(n_fft)
        window[left : left + win] = logmel.window.detach().float().cpu()
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * torch.pi * k * torch.arange(n_fft, dtype=torch.float64)[None] / n_fft
        basis = torch.cat([torch.cos(angle), torch.sin(angle)]).float() * window  # [2F, n_fft]
        self.register_buffer("basis", basis[:, None, :])
        self.register_buffer("fbank", logmel.fbank.detach().float().cpu())
        self.n_fft, self.hop, self.eps = n_fft, int(logmel.hop_length), float(logmel.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.n_fft // 2
        frames = nn.functional.conv1d(nn.functional.pad(x.float()[:, None], (pad, pad)), self.basis, stride=self.hop)
        re, im = frames.chunk(2, dim=1)
        mel = torch.matmul((re.square() + im.square()).transpose(1, 2), self.fbank).transpose(1, 2)
        logmel = torch.log(mel + self.eps)
        return logmel - logmel.mean(dim=(1, 2), keepdim=True)


def exportable(model: nn.Module) -> nn.Module:
    """``model``, or a copy with its parts the ONNX exporter cannot translate replaced by equivalents."""
    from transferkit.models.audio import LogMel

    if not any(isinstance(m, LogMel) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, LogMel)]
    for name, logmel in found:
        parent, _, leaf = name.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, leaf, _DftLogMel(logmel))
    return model


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the exporter's C++ side prints whole graphs there when it fails)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ConfigError("export needs onnx and onnxruntime: pip install 'transferkit[export]'") from None
    return onnx, onnxruntime


def _targets(out: Path, text: bool, overwrite: bool) -> list[Path]:
    """The paths an export writes; one-line error when one exists and ``overwrite`` is off."""
    paths = [out, out.with_name(out.name + ".json")] + ([out.with_name(out.name + ".tokenizer")] if text else [])
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"{out}: the export file must end in .onnx")
    if not overwrite:
        for p in paths:
            if p.exists():
                raise ConfigError(f"{p}: already exists; pick another --out or pass --overwrite")
    for p in paths:
        if p.is_dir() and p.suffix != ".tokenizer":
            raise ConfigError(f"{p}: is a folder; --out names the .onnx file to write")
    return paths


def check_data_name(loaded: LoadedRun, data: str | None) -> str:
    """``data``, else the data the run trained on (``data``; ``target_data`` for ``adapt`` runs)."""
    name = data or loaded.config.get("data") or loaded.config.get("target_data")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{loaded.path}: the run names no data to check the export on; pass --check-data DATA")
    return name


def check_inputs(loaded: LoadedRun, data: str | None, n: int) -> np.ndarray:
    """``n`` real inputs of ``data`` (default: :func:`check_data_name`), prepared for the run's model."""
    from transferkit.data import load_dataset

    name = check_data_name(loaded, data)
    try:
        ds = load_dataset(name, model=loaded.spec, seed=int(loaded.config.get("seed", 0)), labels_required=False)
    except TransferkitError as e:
        raise ConfigError(f"cannot load the data to check the export on ({e}); pass --check-data DATA") from None
    idx = np.unique(np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int))
    return np.ascontiguousarray(ds.x[idx])


def _graph_io(loaded: LoadedRun) -> tuple[nn.Module, list[str], dict[str, dict[int, str]]]:
    spec = loaded.spec
    if spec.modality == "text":
        if not hasattr(loaded.model, "encode"):
            raise ConfigError(f"{spec.name}: a text model without an encode(ids, mask) method cannot be exported")
        names = ["input_ids", "attention_mask"]
        axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
        return _TextLogits(loaded.model).eval(), names, axes
    name = "waveform" if spec.modality == "audio" else "input"
    return exportable(loaded.model), [name], {name: {0: "batch"}, "logits": {0: "batch"}}


def _feeds(names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    if len(names) == 2:  # text: [N, 2, L] -> ids, mask
        return {names[0]: np.ascontiguousarray(x[:, 0]), names[1]: np.ascontiguousarray(x[:, 1])}
    return {names[0]: x.astype(np.float32, copy=False)}


def _write_graph(module: nn.Module, names: list[str], axes: dict[str, dict[int, str]], example: np.ndarray,
                 path: Path, opset: int) -> None:
    args = tuple(torch.from_numpy(v) for v in _feeds(names, example).values())
    with warnings.catch_warnings(), _quiet_stderr():  # the TorchScript exporter's deprecation and tracer notes
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=names, output_names=["logits"],
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True)


def _compare(loaded: LoadedRun, path: Path, names: list[str], x: np.ndarray) -> tuple[float, float]:
    """Largest |onnxruntime - PyTorch| over the logits of ``x`` (as one batch, and the first input alone,
    trimmed to its own length for text) and the fraction of equal argmaxes."""
    _, ort = _require_onnx()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batches = [x, x[:1]]
    if len(names) == 2:
        batches[1] = x[:1, :, : max(1, int(x[0, 1].sum()))]
    diff, agree, total = 0.0, 0, 0
    loaded.model.eval()  # the exporter puts a module back in the mode it found it in: never trust it
    for b in batches:
        got = session.run(["logits"], _feeds(names, b))[0]
        with torch.no_grad():
            want = loaded.model(torch.from_numpy(np.ascontiguousarray(b))).float().numpy()
        diff = max(diff, float(np.abs(got - want).max()))
        agree += int((got.argmax(1) == want.argmax(1)).sum())
        total += len(b)
    return diff, agree / total


_TABULAR = ("feature rows made from the raw table by model.preprocess in this file, column by column in its order "
            "(transferkit.data.tabular_prep): numeric (x - mean) / std, a missing cell -> fill plus a 0/1 missing "
            "feature when indicator; categorical one-hot over categories plus one 'other'")


def _info(loaded: LoadedRun, names: list[str], x: np.ndarray, opset: int, data: str | None) -> dict[str, Any]:
    spec = loaded.spec
    inputs: list[dict[str, Any]]
    if spec.modality == "text":
        inputs = [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in names]
        pre = (f"tokenise with the tokenizer saved beside this file (<onnx>.tokenizer/, transformers AutoTokenizer), "
               f"truncation to {spec.kwargs.get('max_length', spec.input_shape[-1])} tokens, padding; "
               "attention_mask 1 for tokens, 0 for padding")
    else:
        dtype = "float32"
        inputs = [{"name": names[0], "dtype": dtype, "shape": ["batch", *spec.input_shape]}]
        pre = {"image": "pixel values scaled to 0..1, channels-first, resized to the input shape (grey: 1 channel); "
                        "the backbone's own normalisation is inside the graph",
               "audio": "mono waveform at 16000 Hz, padded or cut to the input's samples; "
                        "the front end is inside the graph",
               "tabular": _TABULAR if spec.to_json().get("preprocess") else "numeric feature rows, as the run read them"
               }.get(spec.modality, "the run's prepared inputs")
    return {"format": "onnx", "opset": opset, "transferkit_version": __version__, "run": str(loaded.path),
            "model": spec.to_json(), "class_names": list(spec.class_names), "inputs": inputs,
            "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", spec.num_classes],
                         "note": "unnormalised scores; softmax gives the class probabilities"}],
            "preprocessing": pre, "check_data": check_data_name(loaded, data)}


def export_onnx(run: str | Path, out: str | Path, *, overwrite: bool = False, tolerance: float = 1e-3,
                check_data: str | None = None, samples: int = 8) -> ExportResult:
    """Export the complete run ``run`` to the ONNX file ``out`` and check it with onnxruntime.

    Writes ``out``, ``out.json`` (what the graph expects, and the check) and, for text models,
    ``out.tokenizer/``; writes nothing when the check fails.

    Raises:
        CheckpointError: ``run`` is not a complete run.
        ConfigError: ``out`` exists (without ``overwrite``), onnx/onnxruntime are missing, or
            onnxruntime's logits differ from PyTorch's by more than ``tolerance``.
    """
    if not 0 <= tolerance < float("inf"):
        raise ConfigError(f"--tolerance {tolerance}: must be a finite number >= 0")
    onnx, _ = _require_onnx()
    out = Path(out).expanduser()
    loaded = load_run(run)
    loaded.model.eval().float().cpu()
    paths = _targets(out, loaded.spec.modality == "text", overwrite)
    opset = min(OPSET, int(onnx.defs.onnx_opset_version()))
    x = check_inputs(loaded, check_data, samples)
    module, names, axes = _graph_io(loaded)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        graph = Path(tmp) / out.name
        try:
            _write_graph(module, names, axes, x, graph, opset)
        except (RuntimeError, TypeError, ValueError) as e:  # an operator the exporter cannot translate
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{loaded.path}: the {loaded.spec.name} model does not export to ONNX "
                              f"({first[:200]})") from None
        diff, agree = _compare(loaded, graph, names, x)
        if not diff <= tolerance:
            raise ConfigError(f"{out}: onnxruntime's logits differ from PyTorch's by up to {diff:.3g} (tolerance "
                              f"{tolerance:g}); nothing written")
        _install(loaded, graph, paths, _info(loaded, names, x, opset, check_data) | {
            "check": {"samples": len(x), "max_abs_diff": diff, "tolerance": tolerance, "argmax_agree": agree}})
    return ExportResult(out, paths[1], opset, len(x), diff, tolerance, agree)


def _install(loaded: LoadedRun, graph: Path, paths: list[Path], info: dict[str, Any]) -> None:
    """Move the checked graph into place and write its description (and tokenizer) beside it."""
    from transferkit.io import write_json

    if len(paths) == 3:
        from transferkit.models.text import tokenizer, tokenizer_path

        staged = graph.with_name("tokenizer")
        tokenizer(tokenizer_path(loaded.spec)).save_pretrained(str(staged))
        if paths[2].is_dir():
            shutil.rmtree(paths[2])
        elif paths[2].exists():
            paths[2].unlink()
        os.replace(staged, paths[2])
    os.replace(graph, paths[0])
    write_json(paths[1], info)


def result_line(res: ExportResult) -> str:
    """The one line ``transferkit export`` prints."""
    return (f"exported {res.path} (opset {res.opset}); onnxruntime vs PyTorch on {res.checked} inputs: max abs diff "
            f"{res.max_abs_diff:.2e} (tolerance {res.tolerance:g}), argmax agree {100 * res.argmax_agree:.0f}%; "
            f"inputs described in {res.info_path}")


__all__ = ["ExportResult", "check_inputs", "export_onnx", "result_line"]
