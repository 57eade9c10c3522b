"""Class labels of user data: raw label values (ints, integral floats or strings) to indices and names.

Shared by every loader (:mod:`~transferkit.data.files`, :mod:`~transferkit.data.tabular`,
:mod:`~transferkit.data.text`), so it sits below them all.
"""

from __future__ import annotations

import numpy as np

from transferkit.errors import DataError


def labels_to_classes(raw: np.ndarray, where: str, names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Turn raw labels (ints, integral floats or strings) into int64 indices and class names.

    With ``names`` given, integer labels index into it and string labels are looked up in it.
    """
    raw = np.asarray(raw).ravel()
    if raw.dtype.kind in "fc":
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
            raise DataError(f"{where}: labels must be integers or strings, found non-integer numbers")
        raw = raw.astype(np.int64)
    if raw.dtype.kind in "iub":
        raw = raw.astype(np.int64)
        if names is not None:
            if raw.min() < 0 or raw.max() >= len(names):
                bad = int(raw.min()) if raw.min() < 0 else int(raw.max())
                raise DataError(f"{where}: label {bad} out of range for {len(names)} class names")
            return raw, list(names)
        values, y = np.unique(raw, return_inverse=True)
        return y.astype(np.int64), [str(int(v)) for v in values]
    if raw.dtype.kind not in "USO":
        raise DataError(f"{where}: labels must be integers or strings, got dtype {raw.dtype}")
    text = np.array([str(v) for v in raw])
    classes = list(names) if names is not None else sorted(set(text.tolist()))
    index = {n: i for i, n in enumerate(classes)}
    unknown = [t for t in text.tolist() if t not in index]
    if unknown:
        raise DataError(f"{where}: label '{unknown[0]}' is not in class_names")
    return np.array([index[t] for t in text.tolist()], dtype=np.int64), classes
