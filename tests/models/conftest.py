"""Shared by the Hugging Face folder tests (``hf`` and ``mpnet`` sources)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def save_tiny_bert(folder: Path) -> Path:
    """A randomly initialised 2-layer BertModel saved as safetensors in ``folder``, MiniLM's tokenizer beside it."""
    from transformers import BertConfig, BertModel

    from transferkit.models.text import model_path

    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(folder, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(model_path() / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def make_tiny_bert() -> Callable[[Path], Path]:
    return save_tiny_bert
