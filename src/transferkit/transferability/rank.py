"""Rank candidate source models for a target data set with transferability scores.

Each candidate costs one forward pass over the (sub-sampled) target training split: the
backbone features feed the feature scores, and the source head applied to those same features
gives the source-class probabilities for LEEP/NCE. Torch and the data layer load on first call,
so importing this module (and the score registry) stays cheap.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from transferkit.errors import ConfigError, DataError
from transferkit.transferability.base import Score, check_positive_int

if TYPE_CHECKING:
    import torch

    from transferkit.data import ArrayDataset, ReadOptions
    from transferkit.models import ModelSpec, TransferModel
    from transferkit.runs import LoadedRun

    Candidate = str | Path | TransferModel | LoadedRun

#: The scores :func:`rank` computes by default (``linear_probe_cv`` and ``gbc`` are opt-in).
DEFAULT_SCORES: tuple[str, ...] = ("logme", "leep", "nce", "hscore", "knn", "sfda", "parc")


@dataclass
class CandidateScores:
    """One candidate's scores and costs.

    Attributes:
        name: the run directory, or a name for an in-memory model.
        model: the architecture name (``model.spec.name``).
        scores: score name -> value.
        seconds: wall time for this candidate: loading, forward pass and all scores.
        forward_seconds: loading the run plus the single forward pass (features and probabilities).
        score_seconds: score name -> seconds spent computing it.
        feature_dim: ``D`` of the features.
        source_classes: ``C_s`` of the source head.
    """

    name: str
    model: str
    scores: dict[str, float]
    seconds: float
    forward_seconds: float
    score_seconds: dict[str, float] = field(default_factory=dict)
    feature_dim: int = 0
    source_classes: int = 0


@dataclass
class RankResult:
    """What :func:`rank` returns: every candidate's scores on one target sample."""

    data: str
    n_samples: int
    num_classes: int
    shots: int | None
    seed: int
    score_names: list[str]
    higher_is_better: dict[str, bool]
    candidates: list[CandidateScores]
    data_seconds: float = 0.0
    #: what was left out and why, one line each (e.g. LEEP for an encoder with no source classes)
    notes: list[str] = field(default_factory=list)
    #: scores left out (NaN) for some candidate because it has no source classes: not in the mean rank
    left_out: list[str] = field(default_factory=list)

    def _oriented(self, score: str) -> np.ndarray:
        """Values of ``score`` per candidate with larger = better and NaN as the worst."""
        if score not in self.score_names:
            raise ConfigError(f"score '{score}' was not computed; computed: {', '.join(self.score_names)}")
        v = np.array([c.scores[score] for c in self.candidates], dtype=np.float64)
        v = v if self.higher_is_better[score] else -v
        return np.where(np.isnan(v), -np.inf, v)

    def mean_ranks(self) -> dict[str, float]:
        """Candidate name -> its rank (1 = best, ties averaged) averaged over the computed scores, except
        those left out for some candidate (:attr:`left_out`), which would rank it last for lack of a head."""
        from scipy.stats import rankdata

        used = [s for s in self.score_names if s not in self.left_out] or self.score_names
        ranks = np.mean([rankdata(-self._oriented(s)) for s in used], axis=0)
        return {c.name: float(r) for c, r in zip(self.candidates, ranks, strict=True)}

    def ranking(self, score: str | None = None) -> list[str]:
        """Candidate names best first, by one ``score`` or (``None``) by mean rank over all scores."""
        if score is None:
            mean = self.mean_ranks()
            order = sorted(range(len(self.candidates)), key=lambda i: (mean[self.candidates[i].name], i))
        else:
            v = self._oriented(score)
            order = sorted(range(len(self.candidates)), key=lambda i: (-v[i], i))
        return [self.candidates[i].name for i in order]

    def kendall_taus(self, accuracies: Mapping[str, float]) -> dict[str, float]:
        """Score name -> Kendall's tau between its (oriented) values and measured ``accuracies``.

        ``accuracies`` maps every candidate name to the accuracy it reached after transfer. A score
        that is not finite for some candidates (e.g. PARC on constant features) is ranked last for
        them, as :meth:`ranking` does.
        """
        missing = [c.name for c in self.candidates if c.name not in accuracies]
        if missing:
            raise ConfigError(f"no accuracy given for candidate '{missing[0]}'")
        acc = [float(accuracies[c.name]) for c in self.candidates]
        out = {}
        for s in self.score_names:
            v = self._oriented(s)
            finite = np.isfinite(v)
            worst = v[finite].min() - 1.0 if finite.any() else 0.0
            out[s] = kendall_tau(list(np.where(finite, v, worst)), acc)
        return out

    def to_table(self) -> str:
        """A Markdown table, best candidate (by mean rank) first."""
        mean = self.mean_ranks()
        by_name = {c.name: c for c in self.candidates}
        shots = f", {self.shots} shots/class" if self.shots is not None else ""
        head = [f"target {self.data}: {self.n_samples} samples, {self.num_classes} classes{shots}, seed {self.seed}",
                "",
                "| rank | candidate | " + " | ".join(self.score_names) + " | mean rank | seconds |",
                "|---:|---|" + "---:|" * len(self.score_names) + "---:|---:|"]
        rows = []
        for i, name in enumerate(self.ranking(), start=1):
            c = by_name[name]
            vals = " | ".join(_fmt(c.scores[s]) for s in self.score_names)
            rows.append(f"| {i} | {name} | {vals} | {mean[name]:.2f} | {c.seconds:.2f} |")
        arrows = ", ".join(f"{s} {'higher' if self.higher_is_better[s] else 'lower'}" for s in self.score_names)
        return "\n".join([*head, *rows, "", f"better: {arrows}", *(f"note: {n}" for n in self.notes)])

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN scores become ``null``)."""
        d = asdict(self)
        for c in d["candidates"]:
            c["scores"] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in c["scores"].items()}
        d["ranking"] = self.ranking()
        return d


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.4g}"


def kendall_tau(scores: Sequence[float] | Mapping[str, float],
                accuracies: Sequence[float] | Mapping[str, float]) -> float:
    """Kendall's tau-b between transferability scores and measured accuracies (NaN if either is constant).

    Both may be sequences of equal length or mappings with the same keys (e.g. candidate names).
    """
    from scipy.stats import kendalltau

    if isinstance(scores, Mapping) or isinstance(accuracies, Mapping):
        if not (isinstance(scores, Mapping) and isinstance(accuracies, Mapping)):
            raise ConfigError("kendall_tau: pass two mappings or two sequences, not one of each")
        extra = sorted(set(scores) ^ set(accuracies))
        if extra:
            raise ConfigError(f"kendall_tau: '{extra[0]}' is in only one of scores and accuracies")
        keys = list(scores)
        a, b = [scores[k] for k in keys], [accuracies[k] for k in keys]
    else:
        a, b = list(scores), list(accuracies)
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise DataError(f"kendall_tau: {x.shape} scores but {y.shape} accuracies")
    if len(x) < 2:
        raise DataError(f"kendall_tau needs at least 2 candidates, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DataError("kendall_tau: scores and accuracies must be finite")
    return float(kendalltau(x, y).statistic)


def _subsample(y: np.ndarray, max_samples: int, seed: int) -> np.ndarray:
    """At most ``max_samples`` indices, stratified: every class keeps about the same fraction."""
    if len(y) <= max_samples:
        return np.arange(len(y))
    rng = np.random.default_rng(seed + 104729)
    key = np.empty(len(y))
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        key[idx] = (np.arange(len(idx)) + rng.random()) / len(idx)  # position within the class
    return np.sort(np.argsort(key, kind="stable")[:max_samples])


def _input_key(spec: ModelSpec) -> str:
    """Candidates whose inputs are prepared the same way share one loaded target set."""
    if spec.modality == "image":
        return f"image{tuple(spec.input_shape)}"
    return json.dumps({k: v for k, v in spec.to_json().items() if k != "class_names"}, sort_keys=True)


def _target(data: str | Path | ArrayDataset, spec: ModelSpec, *, seed: int, shots: int | None,
            max_samples: int, label_column: str | None = None, text_column: str | None = None,
            read: ReadOptions | None = None) -> tuple[torch.Tensor, np.ndarray, str]:
    """The (sub-sampled) training split of ``data`` prepared for ``spec``: inputs, labels, name.
    ``label_column`` / ``text_column`` and ``read`` apply when ``data`` is a path."""
    import torch

    from transferkit.data import ArrayDataset, ReadOptions, kshot, load_dataset, prepare, split

    if isinstance(data, ArrayDataset):
        ds = prepare(data, spec)
    else:  # label column None: the one the candidate was trained with (load_dataset reads it from spec)
        ds = load_dataset(str(data), model=spec, seed=seed, read=read or ReadOptions(), label_column=label_column,
                          text_column=text_column)
    train = split(ds, seed=seed, val=0.15, test=0.3).train
    if shots is not None:
        train = kshot(train, shots, seed=seed)
    y = train.require_labels()
    idx = _subsample(y, max_samples, seed)
    x = torch.from_numpy(np.ascontiguousarray(train.x[idx]))
    return x, y[idx].astype(np.int64), ds.name


def _load(cand: Candidate, i: int) -> tuple[TransferModel, str]:
    from transferkit.models import TransferModel
    from transferkit.runs import LoadedRun, load_source

    if isinstance(cand, TransferModel):
        return cand, f"{cand.spec.name}[{i}]"
    if isinstance(cand, LoadedRun):
        return cand.model, str(cand.path)
    if isinstance(cand, (str, Path)):
        return load_source(cand)[0], str(cand)
    raise ConfigError(f"candidate {i} is a {type(cand).__name__}; "
                      "pass run directories, backbone names or TransferModel objects")


def _probs(model: TransferModel, feats: torch.Tensor, device: torch.device) -> np.ndarray:
    """Softmax of the source head over ``feats``, in float32 on ``device``, as float64 NumPy."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(feats), 4096):
            out.append(model.forward_head(feats[i : i + 4096].to(device)).float().cpu())
    logits = torch.cat(out).double()
    return torch.softmax(logits, dim=1).numpy()


def _score_all(entries: Sequence[tuple[str, Score]], feats: np.ndarray, probs: np.ndarray | None,
               y: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """Every score of ``entries`` on one candidate: values and seconds. A score that needs source-class
    probabilities is NaN when ``probs`` is None (a candidate with no source classes)."""
    from threadpoolctl import threadpool_limits

    values, secs = {}, {}
    # small dense algebra: one BLAS thread is as fast, and a busy shared machine makes
    # spinning multi-threaded BLAS collapse (measured 45x slower on a loaded 2-core box)
    with threadpool_limits(1, user_api="blas"):
        for sname, score in entries:
            t = time.perf_counter()
            inputs = feats if score.needs == "features" else probs
            values[sname] = math.nan if inputs is None else score(inputs, y)
            secs[sname] = time.perf_counter() - t
    return values, secs


def _headless_note(name: str, entries: Sequence[tuple[str, Score]]) -> str | None:
    """The note for a candidate with no source classes, when some score of ``entries`` needs them."""
    left = [s for s, score in entries if score.needs == "probs"]
    if not left:
        return None
    return (f"{name} has no source classes (an encoder without a classification head): "
            f"{', '.join(left)} need{'s' if len(left) == 1 else ''} source-class probabilities, left out (nan; "
            "not in the mean rank)")


def rank(candidates: Candidate | Sequence[Candidate], data: str | Path | ArrayDataset, *, shots: int | None = None,
         seed: int = 0, scores: Sequence[str] = DEFAULT_SCORES, max_samples: int = 2000,
         device: str = "auto", names: Sequence[str] | None = None, label_column: str | None = None,
         text_column: str | None = None, skip_bad_files: bool = False) -> RankResult:
    """Score every candidate source model on ``data`` without training anything.

    Args:
        candidates: run directories (from ``pretrain``/``transfer``), loaded runs or
            :class:`TransferModel` objects.
        data: target data, a built-in name, a path or an :class:`ArrayDataset`; converted to each
            candidate's input shape. Its seeded training split is used (the same split
            ``transfer`` trains on), ``shots`` examples per class of it when given, then a
            stratified sub-sample of at most ``max_samples``.
        scores: names in :data:`SCORES`.
        device: where the forward passes run (``auto``: a GPU when there is one).
        names: display names for the candidates (default: the path, or ``<arch>[i]``).
        label_column, text_column: the columns of a CSV / JSONL ``data`` (default: the label column
            each candidate was trained with, else ``label``; the column named ``text``).
        skip_bad_files: skip (and list) unreadable files of an image-folder ``data``.

    Each candidate costs one forward pass; its training mode and device are restored afterwards.
    """
    import scipy.linalg  # noqa: F401  (load scipy's BLAS before limiting its threads)

    from transferkit.data import ReadOptions

    cands, entries = _check_candidates(candidates, scores, names)
    max_samples = check_positive_int("max_samples", max_samples, minimum=2)
    if shots is not None:
        shots = check_positive_int("shots", shots)
    targets: dict[str, tuple[Any, np.ndarray, str]] = {}
    data_seconds = 0.0
    results: list[CandidateScores] = []
    notes: list[str] = []
    for i, cand in enumerate(cands):
        t0 = time.perf_counter()
        model, name = _load(cand, i)
        if names is not None:
            name = str(names[i])
        shape = _input_key(model.spec)
        if shape not in targets:
            t_data = time.perf_counter()
            targets[shape] = _target(data, model.spec, seed=seed, shots=shots, max_samples=max_samples,
                                     label_column=label_column, text_column=text_column,
                                     read=ReadOptions(skip_bad_files))
            data_seconds += time.perf_counter() - t_data
            t0 += time.perf_counter() - t_data  # data loading is shared, not this candidate's cost
        x, y, data_name = targets[shape]
        if model.spec.num_classes == 0 and (note := _headless_note(name, entries)):
            notes.append(note)
        results.append(_score_candidate(model, name, x, y, entries, device, t0))
    _unique_names(results)
    return RankResult(data_name, len(y), len(np.unique(y)), shots, seed, [s for s, _ in entries],
                      {s: sc.higher_is_better for s, sc in entries}, results, data_seconds, notes,
                      [s for s, sc in entries if sc.needs == "probs" and notes])


def _check_candidates(candidates: Candidate | Sequence[Candidate], scores: Sequence[str],
                      names: Sequence[str] | None) -> tuple[list[Candidate], list[tuple[str, Score]]]:
    """The candidates as a list and the ``(name, Score)`` entries; a ConfigError on a bad argument."""
    from transferkit.models import TransferModel
    from transferkit.runs import LoadedRun
    from transferkit.transferability.scores import SCORES

    if isinstance(candidates, (str, Path, TransferModel, LoadedRun)):
        candidates = [candidates]
    cands = list(candidates)
    if not cands:
        raise ConfigError("rank needs at least one candidate")
    if isinstance(scores, str):
        scores = [scores]
    if not scores:
        raise ConfigError("rank needs at least one score")
    if len(set(scores)) != len(scores):
        raise ConfigError(f"score listed twice in {list(scores)}")
    entries: list[tuple[str, Score]] = [(s, SCORES.get(s)) for s in scores]
    if names is not None and len(names) != len(cands):
        raise ConfigError(f"{len(names)} names for {len(cands)} candidates")
    return cands, entries


def _score_candidate(model: TransferModel, name: str, x: Any, y: np.ndarray, entries: Sequence[tuple[str, Score]],
                     device: str, t0: float) -> CandidateScores:
    """One forward pass of ``model`` over ``x`` and every score of ``entries``; ``t0``: when its cost began.
    The model's training mode and device are restored afterwards."""
    from transferkit.engine.features import extract_features
    from transferkit.engine.precision import eval_mode, resolve_placement

    was_training, home = model.training, next(model.parameters()).device
    place = resolve_placement(model, "auto", "auto", device)
    headless = model.spec.num_classes == 0
    try:
        feats = extract_features(model, x, place)
        with eval_mode(model):
            wants = any(s.needs == "probs" for _, s in entries) and not headless
            probs = _probs(model, feats, place.device) if wants else None
    finally:
        model.train(was_training)
        model.to(home)
    f = feats.reshape(len(feats), -1).double().numpy()
    forward = time.perf_counter() - t0
    values, secs = _score_all(entries, f, probs, y)
    source_classes = int(probs.shape[1]) if probs is not None else model.spec.num_classes
    return CandidateScores(name, model.spec.name, values, time.perf_counter() - t0, forward, secs,
                           f.shape[1], source_classes)


def _unique_names(results: list[CandidateScores]) -> None:
    """Rename repeated display names in place: the second ``a`` becomes ``a#2``."""
    seen: dict[str, int] = {}
    for c in results:
        seen[c.name] = seen.get(c.name, 0) + 1
        if seen[c.name] > 1:
            c.name = f"{c.name}#{seen[c.name]}"
