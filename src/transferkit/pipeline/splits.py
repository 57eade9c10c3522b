"""The splits runs record, and how a run's held-out part is rebuilt from its ``config.json``.

``pretrain`` and ``transfer`` split labelled data with :data:`SPLIT` (stratified,
:func:`transferkit.data.split`); ``adapt`` splits its unlabelled target inputs with
:data:`TARGET_SPLIT` (:func:`unlabelled_split`, no labels read). Each run writes the fractions and
the seed into ``config.json`` (``split`` / ``target_split``); :func:`heldout_split` reads them back,
so ``evaluate`` scores the same held-out examples the run reported on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transferkit.data import ArrayDataset, split
from transferkit.errors import ConfigError

#: Validation and test fractions of a labelled data set (``pretrain``, ``transfer``).
SPLIT = {"val": 0.15, "test": 0.3}
#: Label-free split of ``adapt``'s target inputs: validation (checkpoint/method selection) and held out.
TARGET_SPLIT = {"val": 0.15, "test": 0.3}


def unlabelled_split(n: int, *, val: float, test: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded (train, val, test) index arrays over ``n`` unlabelled examples (no stratification)."""
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ConfigError(f"target split fractions val={val}, test={test} must be in (0, 1) and sum below 1")
    perm = np.random.default_rng(seed + 104729).permutation(n)
    n_test, n_val = max(1, round(n * test)), max(2, round(n * val))
    if n - n_test - n_val < 2:
        raise ConfigError(f"target data has {n} examples: too few to split (need at least 5)")
    return np.sort(perm[n_test + n_val :]), np.sort(perm[n_test : n_test + n_val]), np.sort(perm[:n_test])


def heldout_target(config: dict[str, Any], data: str, ds: ArrayDataset) -> ArrayDataset | None:
    """For an ``adapt`` run scored on its own target data: the held-out part never adapted on.

    ``config`` is the run's ``config.json``; ``ds`` is ``data`` loaded with the run's seed. Returns
    ``None`` when the run is not an adapt run or ``data`` is other data (then score all of it), so
    ``evaluate RUN --data <target>`` matches the ``target`` accuracy that ``adapt`` reported.
    """
    if config.get("command") != "adapt" or data != config.get("target_data"):
        return None
    sp = config.get("target_split", {})
    _, _, test = unlabelled_split(len(ds), val=float(sp.get("val", TARGET_SPLIT["val"])),
                                  test=float(sp.get("test", TARGET_SPLIT["test"])),
                                  seed=int(sp.get("seed", config.get("seed", 0))))
    return ds.subset(test, ":heldout")


def heldout_split(config: dict[str, Any], data: str, ds: ArrayDataset) -> ArrayDataset:
    """The part of ``ds`` (``data`` loaded with the run's seed) a run held out, from its ``config.json``.

    An ``adapt`` run's own target data: the target inputs it never adapted on
    (:func:`heldout_target`). Any other run's own labelled data: the test part of its recorded
    ``split``. Other data, or data without labels: all of ``ds``.
    """
    if config.get("command") == "adapt":
        return heldout_target(config, data, ds) or ds
    if data == config.get("data") and ds.y is not None:
        s = config.get("split", {})
        val, test = s.get("val", SPLIT["val"]), s.get("test", SPLIT["test"])
        return split(ds, val=val, test=test, seed=int(s.get("seed", 0))).test
    return ds
