"""``io.load_tensors``: a valid safetensors file always loads, whatever its first bytes; pickles are refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from transferkit.errors import CheckpointError
from transferkit.io import load_tensors, save_tensors


def _with_header_low_byte(low: int) -> dict[str, torch.Tensor]:
    """Tensors whose safetensors header length (8 bytes, little-endian, first in the file) ends in ``low``."""
    from safetensors.torch import save

    for n in range(1, 400):
        tensors = {"w" * n: torch.zeros(2)}
        if save(tensors)[0] == low:
            return tensors
    raise AssertionError(f"no header length ending in {low:#x}")


def test_a_valid_file_starting_like_a_pickle_loads(tmp_path: Path) -> None:
    tensors = _with_header_low_byte(0x80)  # 0x80 is also a pickle's first byte
    save_tensors(tmp_path / "m.safetensors", tensors)
    assert (tmp_path / "m.safetensors").read_bytes()[:1] == b"\x80"
    assert load_tensors(tmp_path / "m.safetensors").keys() == tensors.keys()


def test_pickles_are_still_refused(tmp_path: Path) -> None:
    (tmp_path / "p.safetensors").write_bytes(pickle.dumps({"w": [1, 2]}))
    torch.save({"w": torch.zeros(2)}, tmp_path / "t.safetensors")
    for name in ("p.safetensors", "t.safetensors"):
        with pytest.raises(CheckpointError, match="refused: this is a pickle / torch.save file"):
            load_tensors(tmp_path / name)
