"""Zero-shot and prototype (nearest-class-mean) baselines on frozen features.

- **Zero-shot text classification** (as CLIP does with prompts, Radford et al., ICML 2021): each
  class ``c`` is embedded through prompt templates, ``t_c = normalize(mean_j normalize(f(T_j(c))))``
  (prompt ensembling), and a text ``x`` goes to ``argmax_c cos(f(x), t_c)``. No label is used.
- **Nearest class mean / prototypes** (Mensink et al., TPAMI 2013; Snell et al., NeurIPS 2017):
  ``p_c = mean of the normalised features of the k labelled examples of class c`` and
  ``argmax_c cos(f(x), p_c)``.

Both are scored on the same held-out test split as :func:`transferkit.transfer` (same fractions
and seed), with balanced accuracy and the majority-class rate beside the accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.data import ArrayDataset, kshot, load_dataset, split
from transferkit.engine.features import extract_features
from transferkit.engine.precision import resolve_placement
from transferkit.errors import ConfigError
from transferkit.evaluation.metrics import classification_report
from transferkit.models.base import TransferModel
from transferkit.pipeline.splits import SPLIT

#: Generic prompt templates (no domain word such as "review"): averaged per class by default.
DEFAULT_TEMPLATES: tuple[str, ...] = ("{}", "this is {}", "it is {}", "something {}")


def balanced_accuracy(confusion: np.ndarray | list[list[int]]) -> float:
    """Mean per-class recall ``1/K sum_k C[k,k] / sum_j C[k,j]`` over the classes present
    (scikit-learn's ``balanced_accuracy_score``)."""
    c = np.asarray(confusion, dtype=float)
    support = c.sum(1)
    present = support > 0
    return float((np.diag(c)[present] / support[present]).mean()) if present.any() else float("nan")


def majority_rate(y: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class of ``y``."""
    y = np.asarray(y)
    return float(np.bincount(y).max() / len(y)) if len(y) else float("nan")


def report(y: np.ndarray, pred: np.ndarray, num_classes: int, name: str = "") -> dict[str, Any]:
    """Accuracy, macro-F1, balanced accuracy, majority rate, n and the confusion matrix."""
    out = classification_report(y, pred, num_classes)
    out.update(balanced_accuracy=balanced_accuracy(out["confusion"]), majority_rate=majority_rate(y))  # type: ignore[arg-type]
    return {"data": name, **out}


def _class_of(name: str, class_names: list[str], data: str) -> str:
    """The class ``name`` refers to: an exact class name, else the one that matches ignoring case."""
    if name in class_names:
        return name
    folded = [c for c in class_names if c.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    import difflib

    close = difflib.get_close_matches(name, class_names, n=1)
    hint = f"; did you mean '{close[0]}'? Write" if close else "; write"
    raise ConfigError(f"--labels: '{name}' is not a class of {data} (classes: {', '.join(class_names[:20])}){hint} "
                      "CLASS=WORD to prompt a class by another word")


def parse_labels(labels: str | Sequence[str] | None, class_names: list[str], data: str) -> list[str]:
    """The word prompted for each class of the data, in the data's class order.

    ``labels`` names classes, never positions: ``"weather,sports"`` and ``"sports,weather"`` are
    the same. An item ``CLASS=WORD`` prompts ``CLASS`` with ``WORD`` (``"0=negative,1=positive"``
    for classes named ``0``/``1``; ``"negative=bad"``); a bare ``CLASS`` prompts its own name. A
    class name matches exactly or, failing that, ignoring case. A list of bare names names every
    class once; with ``CLASS=WORD`` items, classes left out keep their own names.

    Raises:
        ConfigError: a name that is not a class (naming it and the classes), a class given
            twice, an empty item, or bare names that are not one per class.
    """
    if labels is None:
        return list(class_names)
    items = [s.strip() for s in labels.split(",")] if isinstance(labels, str) else [str(s).strip() for s in labels]
    mapped = any("=" in i for i in items)
    if len(items) > len(class_names) or (not mapped and len(items) != len(class_names)):
        raise ConfigError(f"--labels: {len(items)} names given for the {len(class_names)} classes of {data} "
                          f"({', '.join(class_names[:20])})")
    words: dict[str, str] = {}
    for item in items:
        cls, sep, word = (part.strip() for part in item.partition("="))
        if not cls or (sep and not word):
            raise ConfigError(f"--labels: empty name in {labels!r}; give class names or CLASS=WORD items, "
                              f"comma-separated (classes of {data}: {', '.join(class_names[:20])})")
        key = _class_of(cls, class_names, data)
        if key in words:
            raise ConfigError(f"--labels: class '{key}' of {data} is given twice in {labels!r}")
        words[key] = word if sep else key
    return [words.get(c, c) for c in class_names]


def class_embeddings(model: TransferModel, labels: Sequence[str],
                     templates: Sequence[str] = DEFAULT_TEMPLATES) -> torch.Tensor:
    """Prompt-ensembled, L2-normalised embeddings of the class names. Shape ``[K, D]``.

    Raises:
        ConfigError: a template without ``{}``, or a model that does not embed text.
    """
    if model.spec.modality != "text":
        raise ConfigError(f"zero-shot needs a text encoder; {model.spec.name} takes {model.spec.modality} inputs")
    bad = [t for t in templates if "{}" not in t]
    if bad or not templates:
        raise ConfigError(f"prompt template {bad[0] if bad else ''!r} must contain '{{}}' for the label name")
    from transferkit.models.text import embed_texts

    prompts = [t.format(name) for name in labels for t in templates]
    e = torch.nn.functional.normalize(embed_texts(model, prompts).float().cpu(), dim=-1)
    e = e.view(len(labels), len(templates), -1).mean(1)
    return torch.nn.functional.normalize(e, dim=-1)


def cosine_predict(feats: torch.Tensor, classes: torch.Tensor) -> np.ndarray:
    """``argmax_c cos(feats, classes[c])``. Shapes ``[N, D]``, ``[K, D]`` -> ``[N]``."""
    f = torch.nn.functional.normalize(feats.float(), dim=-1)
    return (f @ classes.T).argmax(1).numpy()


def prototypes(feats: torch.Tensor, y: np.ndarray | torch.Tensor, num_classes: int) -> torch.Tensor:
    """Normalised class means of normalised features. Shapes ``[N, D]``, ``[N]`` -> ``[K, D]``."""
    f = torch.nn.functional.normalize(feats.float(), dim=-1)
    y_t = torch.as_tensor(np.asarray(y), dtype=torch.long)
    means = torch.stack([f[y_t == c].mean(0) for c in range(num_classes)])
    return torch.nn.functional.normalize(means, dim=-1)


def _features(model: TransferModel, ds: ArrayDataset) -> torch.Tensor:
    place = resolve_placement(model, "fp32", "off")
    return extract_features(model, torch.from_numpy(np.ascontiguousarray(ds.x)), place)


def _load(source: str | Path | TransferModel, data: str, seed: int, part: str,
          model_kwargs: dict[str, Any] | None) -> tuple[TransferModel, ArrayDataset, ArrayDataset | None]:
    from transferkit.runs import load_source

    if part not in ("test", "all"):
        raise ConfigError(f"split={part!r} is not one of test, all")
    model, _ = load_source(source, model_kwargs)
    ds = load_dataset(data, model=model.spec, seed=seed)
    ds.require_labels()
    if part == "all":
        return model, ds, None
    sp = split(ds, seed=seed, **SPLIT)
    return model, sp.test, sp.train


def zero_shot(source: str | Path | TransferModel, data: str, labels: str | Sequence[str] | None = None, *,
              templates: Sequence[str] = DEFAULT_TEMPLATES, seed: int = 0, split_part: str = "test",
              model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Classify ``data`` by cosine similarity to prompted label-name embeddings; no training.

    Args:
        source: a text backbone name (``minilm``), a run directory or a model.
        labels: which word to prompt for each class, matched to the data's class names by name
            (comma-separated or a list; ``CLASS=WORD`` items to prompt a class by another word,
            see :func:`parse_labels`); default: the data's class names.
        templates: prompt templates with ``{}`` for the label, e.g. ``("a {} review",)``.
        split_part: ``test`` scores the held-out split :func:`transferkit.transfer` uses
            (same seed), ``all`` every example.
    """
    model, test, _ = _load(source, data, seed, split_part, model_kwargs)
    names = parse_labels(labels, test.class_names, data)
    classes = class_embeddings(model, names, templates)
    pred = cosine_predict(_features(model, test), classes)
    out = report(test.require_labels(), pred, test.num_classes, test.name)
    out.update(method="zero_shot", labels=names, label_map=dict(zip(test.class_names, names, strict=True)),
               templates=list(templates))
    return out


def nearest_class_mean(source: str | Path | TransferModel, data: str, shots: int, *, seed: int = 0,
                       model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Few-shot prototype classifier: ``shots`` labelled examples per class from the training
    split, scored on the test split (the data and split :func:`transferkit.transfer` uses)."""
    model, test, train = _load(source, data, seed, "test", model_kwargs)
    assert train is not None
    support = kshot(train, shots, seed=seed)
    protos = prototypes(_features(model, support), support.require_labels(), support.num_classes)
    pred = cosine_predict(_features(model, test), protos)
    out = report(test.require_labels(), pred, test.num_classes, test.name)
    out.update(method="nearest_class_mean", shots=shots)
    return out


# ------------------------------------------------------------------ post-hoc calibration and label shift


#: candidate temperatures of :func:`fit_temperature`: 121 log-spaced values in [0.05, 20]
TEMPERATURES: tuple[float, ...] = tuple(float(v) for v in np.exp(np.linspace(np.log(0.05), np.log(20.0), 121)))


def fit_temperature(logits: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
                    grid: Sequence[float] = TEMPERATURES) -> float:
    """Temperature scaling (Guo et al., ICML 2017): ``T = argmin_T NLL(softmax(z / T), y)`` over a
    log-spaced ``grid`` (a 1-d convex-ish search; no optimiser state). Shapes ``[N, K]``, ``[N]``."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    t = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if z.ndim != 2 or len(z) != len(t) or len(t) == 0:
        raise ConfigError(f"fit_temperature: logits {tuple(z.shape)} and labels {tuple(t.shape)} do not match")
    nll = [float(torch.nn.functional.cross_entropy(z / temp, t)) for temp in grid]
    return float(grid[int(np.argmin(nll))])


def em_label_shift(probs: np.ndarray, source_prior: np.ndarray | None = None, iters: int = 200,
                   tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """EM re-estimation of the class prior of *unlabelled* data (Saerens, Latinne & Decaestecker,
    Neural Computation 2002). With calibrated source posteriors ``p_s(c|x)`` and source prior ``pi_s``:

        p(c|x) ∝ p_s(c|x) * pi(c) / pi_s(c)         (E step)
        pi(c)  = mean_x p(c|x)                       (M step)

    iterated from ``pi = pi_s`` to a fixed point. Returns ``(pi, adjusted posteriors)``, shapes
    ``[K]`` and ``[N, K]``. Transductive: it reads the (unlabelled) inputs it is applied to.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ConfigError(f"em_label_shift: probabilities must be [N, K] with N > 0, got {p.shape}")
    k = p.shape[1]
    ps = np.full(k, 1.0 / k) if source_prior is None else np.asarray(source_prior, dtype=np.float64)
    if ps.shape != (k,) or (ps <= 0).any():
        raise ConfigError(f"em_label_shift: source prior {ps} must be {k} positive numbers")
    ps = ps / ps.sum()
    pi, post = ps.copy(), p
    for _ in range(iters):
        w = p * (pi / ps)
        post = w / w.sum(1, keepdims=True)
        new = post.mean(0)
        done = np.abs(new - pi).max() < tol
        pi = new
        if done:
            break
    return pi, post


def log_softmax_np(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``log softmax(z / T)`` along the last axis, in NumPy (float64)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def output_ensemble(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """Output-space WiSE (Wortsman et al., CVPR 2022, sec. 5): ``(1 - alpha) a + alpha b`` of two
    calibrated log-probability arrays ``[N, K]`` (0 = the first model, 1 = the second)."""
    if not 0 <= alpha <= 1:
        raise ConfigError(f"output_ensemble: alpha must be in [0, 1], got {alpha}")
    return (1 - alpha) * np.asarray(a, dtype=np.float64) + alpha * np.asarray(b, dtype=np.float64)
