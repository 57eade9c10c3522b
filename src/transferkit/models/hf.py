"""Any local Hugging Face checkpoint folder as a backbone (``--source path/to/hf_model``).

A folder saved by ``transformers`` (``config.json`` + ``model.safetensors``, or a sharded
``model.safetensors.index.json``) is loaded with ``AutoModel`` from local files only; nothing
touches the network. Weights are read from safetensors only, as everywhere in transferkit: a
folder holding only ``pytorch_model.bin`` (a pickle) is refused with a one-line error.

- Text encoders (``main_input_name == "input_ids"``, an output with ``last_hidden_state``): the
  sentence embedding is the attention-masked mean of the last hidden states, L2-normalised by
  default, as :mod:`transferkit.models.text` does for MiniLM; the folder's own tokenizer
  tokenises. Inputs: int64 ``[N, 2, L]`` (ids, attention mask).
- Image models (``main_input_name == "pixel_values"``): inputs ``[N, 3, H, W]`` in 0..1 are
  normalised inside the model with the folder's ``preprocessor_config.json`` mean and std; the
  feature is the first token of a ViT-like ``last_hidden_state`` ``[N, T, D]`` (what
  ``ViTForImageClassification`` classifies) or the spatial mean of a CNN's ``[N, D, h, w]``.

Layer groups (input -> output): the model's top-level parts before its stack of blocks (e.g.
``embeddings``), each block (``layer0`` ..), the parts after it (e.g. a final ``layernorm``),
then the head; a pooler (never used for the features) is dropped. A run stores the folder's
absolute path in ``model.json`` (``kwargs.path``) and a copy of its config and tokenizer files in
``hf_source/`` (:data:`BUNDLE`); reloading the run reads that copy when the folder is gone or was
re-saved with other files since, and always the run's own weights.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.errors import ConfigError, DataError
from transferkit.models.base import ModelSpec, TransferModel
from transferkit.models.packaged import RECORD
from transferkit.models.text import TOKENIZER_FILES, TextTransferModel, mean_pool, tokenizer

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
#: the folder in a run directory with its hf model's config and tokenizer (no weights: the run has its own), and
#: the record of where the folder's weights came from when transferkit assembled it (``mpnet``)
BUNDLE = "hf_source"
BUNDLE_FILES = ("config.json", "preprocessor_config.json", "tokenizer_config.json", "special_tokens_map.json",
                "added_tokens.json", "merges.txt", *TOKENIZER_FILES, RECORD)
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def is_hf_folder(path: str | Path) -> bool:
    """Whether ``path`` looks like a Hugging Face checkpoint folder (a ``config.json``, no ``run.json``)."""
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file() and not (p / "run.json").exists()


def is_folder_model(model: TransferModel) -> bool:
    """Whether ``model`` was loaded from a Hugging Face folder (``hf``, or a backbone built on it such as
    ``mpnet``): its run keeps a copy of the folder's config and tokenizer (:func:`write_bundle`)."""
    return isinstance(model, (HFTextModel, HFImageModel))


def write_bundle(spec: ModelSpec, directory: Path) -> None:
    """Copy the config and tokenizer files of the hf model ``spec`` into ``directory`` (a run's :data:`BUNDLE`)."""
    from transferkit.io import atomic_write_bytes

    src = Path(str(spec.kwargs["path"]))
    directory.mkdir(exist_ok=True)
    for name in BUNDLE_FILES:
        if (src / name).is_file():
            atomic_write_bytes(directory / name, (src / name).read_bytes())


def use_bundle(spec: ModelSpec, run_path: Path) -> ModelSpec:
    """``spec`` reading the run's own copy of its config and tokenizer when the folder it names is gone or
    now holds other files (re-saved since); unchanged otherwise, and for models not loaded from a folder."""
    bundle = run_path / BUNDLE
    if "path" not in spec.kwargs or not bundle.is_dir():
        return spec
    src = Path(str(spec.kwargs.get("path", "")))
    copies = [f for f in bundle.iterdir() if f.is_file()]
    if not (src.is_dir() and all((src / f.name).is_file() and (src / f.name).read_bytes() == f.read_bytes()
                                 for f in copies)):
        spec.kwargs = {**spec.kwargs, "path": str(bundle.resolve())}
    return spec


def check_folder(path: Path, weights: bool) -> None:
    """One-line errors for a folder that is gone, has no ``config.json`` or (``weights``) no safetensors."""
    if not path.is_dir():
        raise ConfigError(f"{path}: the Hugging Face model folder is gone or not a folder (the run has no copy of "
                          f"its config.json and tokenizer in {BUNDLE}/ either)")
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path}: no config.json, so not a Hugging Face checkpoint folder")
    if weights and not any((path / f).is_file() for f in SAFE_WEIGHTS):
        pickled = [f for f in PICKLED_WEIGHTS if (path / f).is_file()]
        if pickled:
            raise ConfigError(f"{path / pickled[0]}: a pickle, and transferkit reads weights only from safetensors; "
                              "re-save the model with save_pretrained(folder, safe_serialization=True)")
        raise ConfigError(f"{path}: no model.safetensors "
                          "(transferkit reads Hugging Face weights only from safetensors)")


def _auto_model(path: Path, pretrained: bool) -> nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModel

    transformers.logging.set_verbosity_error()  # "pooler weights newly initialised": the pooler is dropped
    transformers.logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        if not pretrained:
            return AutoModel.from_config(config)
        model, info = AutoModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                                output_loading_info=True)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: transformers cannot load this folder with AutoModel ({first[:200]})") from None
    missing = [k for k in info.get("missing_keys", []) if not k.startswith("pooler.")]
    if missing:  # transformers would start them from random weights, with a warning at most
        raise ConfigError(f"{path}: {len(missing)} weights of the {type(model).__name__} are not in its safetensors "
                          f"file (e.g. {sorted(missing)[0]}); it would start from random weights")
    return model


def split_groups(hf: nn.Module) -> OrderedDict[str, nn.Module]:
    """The parts of ``hf`` in input -> output order, its largest ``ModuleList`` (the blocks) one group per block.

    Falls back to one group (the whole model) when the parts would miss a parameter or buffer.
    """
    lists = [(n, m) for n, m in hf.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        return OrderedDict(model=hf)
    blocks_name, blocks = max(lists, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))
    groups: OrderedDict[str, nn.Module] = OrderedDict()

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            full = prefix + name
            if child is blocks:
                groups.update((f"layer{i}", block) for i, block in enumerate(child))
            elif blocks_name.startswith(full + "."):
                visit(child, full + ".")
            elif any(True for _ in child.parameters()) or any(True for _ in child.buffers()):
                groups[full.replace(".", "_")] = child

    visit(hf, "")
    grouped = {id(t) for g in groups.values() for t in (*g.parameters(), *g.buffers())}
    if any(id(t) not in grouped for t in (*hf.parameters(), *hf.buffers())):
        return OrderedDict(model=hf)
    return groups


class _Unregistered:
    """Holds the whole HF model without registering it: its parameters live in the layer groups."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module


class HFTextModel(TextTransferModel):
    """A Hugging Face text encoder: masked mean of ``last_hidden_state`` (L2-normalised when ``normalize``).

    Shape:
        - input: int64 ``[N, 2, L]``: ``x[:, 0]`` token ids, ``x[:, 1]`` attention mask (1 = token)
        - ``forward_features``: ``[N, hidden_size]``
    """

    def __init__(self, hf: nn.Module, feature_dim: int, spec: ModelSpec, normalize: bool) -> None:
        super().__init__(split_groups(hf), feature_dim, spec, normalize)
        self._hf = _Unregistered(hf)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self._hf.module(input_ids=ids, attention_mask=mask).last_hidden_state
        e = mean_pool(h, mask)
        return nn.functional.normalize(e, dim=-1) if self.normalize else e

    def train(self, mode: bool = True) -> HFTextModel:
        self._hf.module.train(mode)
        return super().train(mode)


class HFImageModel(TransferModel):
    """A Hugging Face image model: first token (ViT-like) or spatial mean (CNN) of ``last_hidden_state``.

    Shape:
        - input: ``[N, 3, H, W]`` in 0..1 (normalised inside with the checkpoint's mean and std)
        - ``forward_features``: ``[N, D]``
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, hf: nn.Module, feature_dim: int, spec: ModelSpec, mean: list[float], std: list[float]) -> None:
        super().__init__(split_groups(hf), feature_dim, spec)
        self._hf = _Unregistered(hf)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise DataError(f"{self.spec.name} takes images [N, C, H, W], got shape {tuple(x.shape)}")
        h = self._hf.module(pixel_values=(x - self.mean) / self.std).last_hidden_state
        return h[:, 0] if h.ndim == 3 else h.flatten(2).mean(2)

    def train(self, mode: bool = True) -> HFImageModel:
        self._hf.module.train(mode)
        return super().train(mode)


def _image_settings(path: Path, config: Any) -> tuple[tuple[int, int, int], list[float], list[float]]:
    """Input shape, mean and std from ``preprocessor_config.json`` (ImageNet's mean/std and 224 if absent)."""
    pre: dict[str, Any] = {}
    if (path / "preprocessor_config.json").is_file():
        pre = json.loads((path / "preprocessor_config.json").read_text(encoding="utf-8"))
    size: Any = pre.get("crop_size") or pre.get("size") or getattr(config, "image_size", 224)
    if isinstance(size, dict):
        side = int(size.get("height") or size.get("shortest_edge") or 224)
        size = (side, int(size.get("width", side)))
    hw = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
    channels = int(getattr(config, "num_channels", 3))
    mean = [float(v) for v in pre.get("image_mean", [0.485, 0.456, 0.406])][:channels]
    std = [float(v) for v in pre.get("image_std", [0.229, 0.224, 0.225])][:channels]
    return (channels, *hw), mean, std


def hf(spec: ModelSpec, path: str = "", pretrained: bool = True, max_length: int = 128,
       normalize: bool = True) -> TransferModel:
    """A local Hugging Face checkpoint folder (``path``) as a backbone; see the module docstring.

    Args:
        path: the folder (``config.json``, ``model.safetensors``, and a tokenizer for text models).
        pretrained: load the folder's weights; ``False`` builds the architecture with random
            weights (``scratch``, or before loading a saved run's weights).
        max_length: tokens kept per text (at most the model's own limit).
        normalize: L2-normalise a text model's pooled embedding.
    """
    if not path:
        raise ConfigError("backbone hf needs the folder of a Hugging Face checkpoint: --source path/to/folder "
                          "(or --model-opt path=FOLDER)")
    folder = Path(path).expanduser().resolve()
    check_folder(folder, weights=pretrained)
    model = _auto_model(folder, pretrained)
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # type: ignore[assignment]  # features come from last_hidden_state
    spec.kwargs = {**spec.kwargs, "path": str(folder)}
    kind = getattr(model, "main_input_name", "")
    if kind == "input_ids":
        return _text_model(model, folder, spec, max_length, normalize)
    if kind == "pixel_values":
        return _image_model(model, folder, spec)
    raise ConfigError(f"{folder}: a {type(model).__name__} takes '{kind}' inputs; transferkit reads text "
                      "(input_ids) and image (pixel_values) checkpoints")


def _text_model(model: nn.Module, folder: Path, spec: ModelSpec, max_length: int, normalize: bool) -> TransferModel:
    tok = tokenizer(str(folder))
    limit = min(int(getattr(model.config, "max_position_embeddings", 512) or 512), 512)
    if not 8 <= max_length <= limit:
        raise ConfigError(f"{spec.name}: max_length must be in 8..{limit} for {folder.name}, got {max_length}")
    ids = torch.tensor([tok("a test sentence")["input_ids"]])
    dim = _probe_dim(model, folder, input_ids=ids, attention_mask=torch.ones_like(ids))
    if not spec.modality:
        spec.input_shape, spec.modality = (2, max_length), "text"
    with warnings.catch_warnings():  # a source encoder has a 0-class head: "zero-element tensor" noise
        warnings.simplefilter("ignore", UserWarning)
        return HFTextModel(model, dim, spec, normalize)


def _image_model(model: nn.Module, folder: Path, spec: ModelSpec) -> TransferModel:
    shape, mean, std = _image_settings(folder, model.config)
    dim = _probe_dim(model, folder, pixel_values=torch.zeros(1, *shape))
    if not spec.modality:
        spec.input_shape, spec.modality = shape, "image"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return HFImageModel(model, dim, spec, mean, std)


def _probe_dim(model: nn.Module, folder: Path, **inputs: torch.Tensor) -> int:
    """The feature width, from one tiny forward pass (which also proves the model runs on these inputs)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            h = model(**inputs).last_hidden_state
    except (TypeError, ValueError, RuntimeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{folder}: {type(model).__name__} does not run as an encoder on "
                          f"{', '.join(inputs)} alone ({first[:160]})") from None
    finally:
        model.train(was)
    return int(h.shape[2] if h.ndim == 3 else h.shape[1])
