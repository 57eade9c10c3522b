"""Partitioners: which examples each federated client owns. Pure, seeded functions on label arrays.

* ``iid`` -- a seeded random permutation cut into ``n`` near-equal parts.
* ``dirichlet:alpha`` -- label skew (Hsu, Qi & Brown, 2019, "Measuring the effects of non-identical
  data distribution for federated visual classification"; Yurochkin et al., ICML 2019): for every
  class ``c`` draw client proportions ``p_c ~ Dir(alpha * 1_n)`` and cut the class's shuffled
  examples at ``cumsum(p_c)``. Small ``alpha`` (0.1) gives each client a few dominant classes;
  large ``alpha`` (100) approaches IID. Draws are repeated until every client owns at least
  ``min_size`` examples.
* ``domain`` -- one data set per client (``--clients-from a,b,c``); nothing to cut.

Shape:
    - ``labels``: ``[N]`` integer class indices.
    - returns: ``n`` sorted, disjoint int64 index arrays whose union is ``range(N)``.
"""

from __future__ import annotations

import numpy as np

from transferkit.errors import ConfigError

KINDS = ("iid", "dirichlet", "domain")


def parse_partition(spec: str) -> tuple[str, float | None]:
    """``"iid"`` -> ``("iid", None)``; ``"dirichlet:0.3"`` -> ``("dirichlet", 0.3)``; ``"domain"``."""
    kind, _, arg = str(spec).partition(":")
    if kind not in KINDS:
        raise ConfigError(f"partition={spec!r}: expected iid, dirichlet:ALPHA or domain")
    if kind != "dirichlet":
        if arg:
            raise ConfigError(f"partition={spec!r}: {kind} takes no argument")
        return kind, None
    try:
        alpha = float(arg)
    except ValueError:
        raise ConfigError(f"partition={spec!r}: dirichlet needs a positive concentration, e.g. dirichlet:0.3") from None
    if not 0 < alpha < float("inf"):
        raise ConfigError(f"partition={spec!r}: the Dirichlet concentration must be positive, got {alpha}")
    return kind, alpha


def iid(n_examples: int, n_clients: int, seed: int = 0) -> list[np.ndarray]:
    """A seeded random permutation of ``range(n_examples)`` cut into ``n_clients`` near-equal parts."""
    _check(n_examples, n_clients)
    perm = np.random.default_rng(seed).permutation(n_examples)
    return [np.sort(p).astype(np.int64) for p in np.array_split(perm, n_clients)]


def dirichlet(labels: np.ndarray, n_clients: int, alpha: float, seed: int = 0, min_size: int = 10,
              max_tries: int = 1000) -> list[np.ndarray]:
    """Label-skewed parts: per class, client shares drawn from ``Dir(alpha)`` (see module docstring)."""
    labels = np.asarray(labels)
    _check(len(labels), n_clients)
    if n_clients * min_size > len(labels):
        raise ConfigError(f"dirichlet: {len(labels)} examples cannot give {n_clients} clients {min_size} each")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet(np.full(n_clients, alpha))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].append(chunk)
        out = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(len(p) for p in out) >= min_size:
            return out
    raise ConfigError(f"dirichlet:{alpha}: no draw in {max_tries} gave every one of {n_clients} clients "
                      f"{min_size} examples; raise alpha or lower --clients")


def partition(labels: np.ndarray, n_clients: int, spec: str, seed: int = 0) -> list[np.ndarray]:
    """Dispatch on a partition spec (``iid`` or ``dirichlet:alpha``) for one pooled data set."""
    kind, alpha = parse_partition(spec)
    if kind == "iid":
        return iid(len(labels), n_clients, seed)
    if kind == "dirichlet":
        return dirichlet(labels, n_clients, float(alpha), seed)  # type: ignore[arg-type]
    raise ConfigError("partition=domain needs one data set per client (--clients-from a,b,c), not --data")


def holdout(labels: np.ndarray, val: float = 0.15, test: float = 0.3,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded per-class train / val / test split of one client's examples (positions into ``labels``).

    Every class is split in the same proportions (rounded); a class with fewer than three
    examples stays in training, so heavily skewed clients keep what little they have.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    tr, va, te = [], [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < 3:
            tr.append(idx)
            continue
        n_te = max(1, round(test * len(idx)))
        n_va = max(1, round(val * len(idx)))
        te.append(idx[:n_te])
        va.append(idx[n_te : n_te + n_va])
        tr.append(idx[n_te + n_va :])
    return _sorted_indices(tr), _sorted_indices(va), _sorted_indices(te)


def label_counts(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """``[n_clients, num_classes]`` example counts: how skewed a partition is."""
    return np.stack([np.bincount(np.asarray(labels)[p], minlength=num_classes) for p in parts])


def _check(n_examples: int, n_clients: int) -> None:
    if n_clients < 1:
        raise ConfigError(f"clients must be at least 1, got {n_clients}")
    if n_examples < n_clients:
        raise ConfigError(f"{n_examples} examples cannot be split over {n_clients} clients")


def _sorted_indices(parts: list[np.ndarray]) -> np.ndarray:
    """The indices of ``parts`` joined and sorted (int64; empty when there are none)."""
    return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)
