"""The splits runs record, and how a run's held-out part is rebuilt from its ``config.json``.

``pretrain`` and ``transfer`` split labelled data with :data:`SPLIT` (stratified,
:func:`transferkit.data.split`); ``adapt`` splits its unlabelled target inputs with
:data:`TARGET_SPLIT` (:func:`unlabelled_split`, no labels read). Each run writes the fractions and
the seed into ``config.json`` (``split`` / ``target_split``); :func:`heldout_split` reads them back,
so ``evaluate`` scores the same held-out examples the run reported on. Each run also records what
identifies its data (:func:`data_identity`: ``data_identity`` / ``target_data_identity``), so the
same data written another way (``./wine.csv``, an absolute path, a copy) is still recognised as
the run's own (:func:`own_data`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data import DATASETS, ArrayDataset, split
from transferkit.errors import ConfigError
from transferkit.spec import SplitSpec

#: Validation and test fractions of a labelled data set (``pretrain``, ``transfer``): :class:`SplitSpec`'s defaults.
SPLIT = SplitSpec().fractions()
#: Label-free split of ``adapt``'s target inputs: validation (checkpoint/method selection) and held out.
TARGET_SPLIT = {"val": 0.15, "test": 0.3}


def fingerprint(path: Path) -> str:
    """``sha1:`` of a file's bytes, or of a folder's sorted (relative path, size) pairs (contents unread)."""
    h = hashlib.sha1()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path).as_posix()}\0{f.stat().st_size}\n".encode())
    else:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return f"sha1:{h.hexdigest()}"


def data_identity(data: str) -> dict[str, str]:
    """What identifies ``data`` later: a built-in name as given; an existing path its resolved absolute
    path and :func:`fingerprint` (so ``./x.csv``, ``/abs/x.csv`` and a copy are one data set)."""
    path = Path(data)
    if data.partition(":")[0] in DATASETS or not path.exists():  # built-ins first, as load_dataset reads them
        return {"name": data}
    return {"path": str(path.resolve()), "fingerprint": fingerprint(path)}


def same_data(a: str, b: str) -> bool:
    """Whether two ``--data`` values name one data set: the same string, resolved path or fingerprint."""
    if a == b:
        return True
    ia, ib = data_identity(a), data_identity(b)
    return ia == ib or ("fingerprint" in ia and ia.get("fingerprint") == ib.get("fingerprint"))


def own_data(config: dict[str, Any], key: str, data: str) -> tuple[bool, str | None]:
    """Whether ``data`` is the run's ``config[key]`` (``data`` / ``target_data``), and a note when it is
    the same path whose contents changed since the run. Same resolved path or same fingerprint is the
    same data; a run without ``<key>_identity`` (older versions) compares the strings."""
    recorded = config.get(f"{key}_identity")
    if not isinstance(recorded, dict):
        return data == config.get(key), None
    now = data_identity(data)
    if now == recorded or ("fingerprint" in now and now["fingerprint"] == recorded.get("fingerprint")):
        return True, None
    if "path" in now and now["path"] == recorded.get("path"):
        return True, (f"{data} changed since the run (its fingerprint differs from the one recorded): "
                      "scored the held-out part of the current contents")
    return False, None


def _noted(note: str | None, notes: list[str] | None) -> None:
    if note is not None:
        logging.getLogger("transferkit").warning(note)
        if notes is not None:
            notes.append(note)


def unlabelled_split(n: int, *, val: float, test: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded (train, val, test) index arrays over ``n`` unlabelled examples (no stratification)."""
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ConfigError(f"target split fractions val={val}, test={test} must be in (0, 1) and sum below 1")
    perm = np.random.default_rng(seed + 104729).permutation(n)
    n_test, n_val = max(1, round(n * test)), max(2, round(n * val))
    if n - n_test - n_val < 2:
        raise ConfigError(f"target data has {n} examples: too few to split (need at least 5)")
    return np.sort(perm[n_test + n_val :]), np.sort(perm[n_test : n_test + n_val]), np.sort(perm[:n_test])


def heldout_target(config: dict[str, Any], data: str, ds: ArrayDataset,
                   notes: list[str] | None = None) -> ArrayDataset | None:
    """For an ``adapt`` run scored on its own target data: the held-out part never adapted on.

    ``config`` is the run's ``config.json``; ``ds`` is ``data`` loaded with the run's seed. Returns
    ``None`` when the run is not an adapt run or ``data`` is other data (then score all of it), so
    ``evaluate RUN --data <target>`` matches the ``target`` accuracy that ``adapt`` reported.
    A note that the data changed since the run goes to ``notes`` (and the log).
    """
    if config.get("command") != "adapt":
        return None
    own, note = own_data(config, "target_data", data)
    if not own:
        return None
    _noted(note, notes)
    sp = config.get("target_split", {})
    _, _, test = unlabelled_split(len(ds), val=float(sp.get("val", TARGET_SPLIT["val"])),
                                  test=float(sp.get("test", TARGET_SPLIT["test"])),
                                  seed=int(sp.get("seed", config.get("seed", 0))))
    return ds.subset(test, ":heldout")


def heldout_split(config: dict[str, Any], data: str, ds: ArrayDataset, notes: list[str] | None = None) -> ArrayDataset:
    """The part of ``ds`` (``data`` loaded with the run's seed) a run held out, from its ``config.json``.

    An ``adapt`` run's own target data: the target inputs it never adapted on
    (:func:`heldout_target`). Any other run's own labelled data: the test part of its recorded
    ``split``. Other data, or data without labels: all of ``ds``. "Own" is decided by :func:`own_data`;
    a note that the data changed since the run goes to ``notes`` (and the log).
    """
    if config.get("command") == "adapt":
        return heldout_target(config, data, ds, notes) or ds
    own, note = own_data(config, "data", data) if ds.y is not None else (False, None)
    if own:
        _noted(note, notes)
        recorded = {k: v for k, v in (config.get("split") or {}).items() if k in ("val", "test", "seed")}
        sp = SplitSpec(**recorded)  # the split the run recorded (older runs: the fractions were the defaults)
        return split(ds, **sp.split_args(0)).test
    return ds
