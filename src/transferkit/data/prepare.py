"""Turn a loaded dataset into the inputs a given model takes, by the model's modality.

Images are converted to the model's ``(C, H, W)`` (:func:`~transferkit.data.transforms.conform`);
table rows go through the preprocessing saved with a tabular model (:mod:`transferkit.data.tabular_prep`);
other modalities register their own preparer here (text: tokenise; audio: fixed-length waveform
or features), so every command that loads data "for a model" goes through one function and a
modality mismatch fails with one clear line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from transferkit.data.base import ArrayDataset
from transferkit.data.transforms import conform
from transferkit.errors import DataError
from transferkit.registry import Registry, lazy

if TYPE_CHECKING:
    from transferkit.models.base import ModelSpec

#: Preparers by *model* modality: ``prepare(ds, spec) -> ArrayDataset`` in the model's input format.
PREPARERS: Registry[Callable[[ArrayDataset, ModelSpec], ArrayDataset]] = Registry("modality")


def prepare_image(ds: ArrayDataset, spec: ModelSpec) -> ArrayDataset:
    """Images or tabular rows, converted to the model's ``(C, H, W)`` input shape."""
    if ds.modality not in ("image", "tabular"):
        raise DataError(f"{ds.name}: {ds.modality} data cannot feed the image model {spec.name}")
    if ds.x.dtype == object:
        raise DataError(f"{ds.name}: a table with non-numeric or missing cells cannot feed the image model {spec.name}")
    return conform(ds, spec.input_shape)


PREPARERS.add("image", prepare_image, "images and tabular rows, resized / reshaped to the model's (C, H, W)")
PREPARERS.add("tabular", lazy("transferkit.data.tabular_prep", "prepare_tabular"),
              "table rows through the model's saved preprocessing (standardised numbers, one-hot categories, "
              "imputed gaps)")
PREPARERS.add("audio", lazy("transferkit.data.audio", "prepare_audio"),
              "waveforms resampled to 16 kHz and fitted to the model's (T,) samples (pad, or keep the loudest window)")
PREPARERS.add("text", lazy("transferkit.models.text", "prepare_text"),
              "raw text tokenised by the model's tokenizer to int64 [N, 2, L] (ids, attention mask)")


def prepare(ds: ArrayDataset, spec: ModelSpec) -> ArrayDataset:
    """``ds`` in the input format of the model described by ``spec`` (see :data:`PREPARERS`)."""
    if spec.modality not in PREPARERS:
        raise DataError(f"model {spec.name} takes {spec.modality} inputs, which no data preparer handles")
    return PREPARERS.get(spec.modality)(ds, spec)


__all__ = ["PREPARERS", "prepare", "prepare_image"]
