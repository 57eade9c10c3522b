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

#: Generic prompt templates (no domain word such as "review"): averaged per class by default.
DEFAULT_TEMPLATES: tuple[str, ...] = ("{}", "this is {}", "it is {}", "something {}")
SPLIT = {"val": 0.15, "test": 0.3}


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


def parse_labels(labels: str | Sequence[str] | None, class_names: list[str], data: str) -> list[str]:
    """Label names for prompting, one per class of the data (in its class order)."""
    if labels is None:
        return list(class_names)
    names = [s.strip() for s in labels.split(",")] if isinstance(labels, str) else [str(s) for s in labels]
    if len(names) != len(class_names) or not all(names):
        raise ConfigError(f"--labels: {len(names)} names given for the {len(class_names)} classes of {data} "
                          f"({', '.join(class_names[:10])})")
    return names


def class_embeddings(model: TransferModel, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> torch.Tensor:
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
        labels: one name per class of ``data`` (comma-separated or a list), used in the prompts;
            default: the data's class names.
        templates: prompt templates with ``{}`` for the label, e.g. ``("a {} review",)``.
        split_part: ``test`` scores the held-out split :func:`transferkit.transfer` uses
            (same seed), ``all`` every example.
    """
    model, test, _ = _load(source, data, seed, split_part, model_kwargs)
    names = parse_labels(labels, test.class_names, data)
    classes = class_embeddings(model, names, templates)
    pred = cosine_predict(_features(model, test), classes)
    out = report(test.require_labels(), pred, test.num_classes, test.name)
    out.update(method="zero_shot", labels=names, templates=list(templates))
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
