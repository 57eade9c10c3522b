"""What the HTML report shows of one run: its records plus the views that need the model and data.

Layer views (weight change, CKA) compare a transferred model with the source run it came from
(``config.json``'s ``source``); saliency and CKA use a small subsample of the run's own test split,
rebuilt from its config (data, split fractions and seed). A view whose inputs cannot be reached
is left out with a note rather than failing the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data import ArrayDataset, ReadOptions, align_classes, load_dataset
from transferkit.errors import TransferkitError
from transferkit.evaluation.cka import layer_cka, weight_change
from transferkit.evaluation.saliency import SaliencyExamples, TextSaliency, saliency_examples, text_saliency_examples
from transferkit.io import read_json
from transferkit.models.base import TransferModel
from transferkit.pipeline import heldout_split
from transferkit.runs import LoadedRun, load_run, load_source


@dataclass
class RunView:
    """One run as the report sees it."""

    path: Path
    label: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    class_names: list[str]
    modality: str
    cka: dict[str, float] | None = None
    change: dict[str, float] | None = None
    saliency: SaliencyExamples | TextSaliency | None = None  # maps over images, scores per token of texts
    layer_note: str | None = None  # why the layer views (change, CKA) are missing, if they are
    saliency_note: str | None = None  # why there is no saliency map, if there is none
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return str(self.config.get("command", self.config.get("kind", "run")))

    @property
    def strategy(self) -> str:
        return str(self.config.get("strategy") or self.kind)

    @property
    def accuracy(self) -> float | None:
        """Test accuracy on the run's own task (target for transfer, source for pretrain)."""
        for key in ("target", "source"):
            m = self.metrics.get(key)
            if isinstance(m, dict) and isinstance(m.get("accuracy"), (int, float)):
                return float(m["accuracy"])
        return None

    @property
    def confusion(self) -> np.ndarray | None:
        for key in ("target", "source"):
            m = self.metrics.get(key)
            if isinstance(m, dict) and m.get("confusion") is not None:
                return np.asarray(m["confusion"], dtype=np.int64)
        return None


#: why the report draws no saliency view for a modality
WHY_NOT = {
    "audio": "the gradient of a 16 kHz waveform is not a readable picture",
    "tabular": "a table row has no spatial layout to draw a map over",
}


def run_labels(paths: list[Path]) -> list[str]:
    """Short unique labels: the directory name, with parents added until the labels differ."""
    for depth in range(1, 6):
        labels = ["/".join(p.resolve().parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


def held_out_sample(loaded: LoadedRun, max_samples: int, seed: int = 0) -> ArrayDataset:
    """A seeded subsample (at most ``max_samples``) of the labelled examples the run held out, in the
    model's classes: the test part of its own data (an ``adapt`` run: the part of its labelled
    evaluation data it never adapted on), read as the run read it (columns, input range)."""
    cfg = loaded.config
    adapt = cfg.get("command") == "adapt"
    name = str((cfg.get("eval_data") or cfg.get("target_data") if adapt else cfg.get("data")) or "")
    if not name:
        raise KeyError("the run records no labelled evaluation data")
    columns = cfg.get("columns") or {}
    ds = load_dataset(name, model=loaded.spec, seed=int(cfg.get("seed", 0)), label_column=columns.get("label"),
                      text_column=columns.get("text"), read=ReadOptions.for_run(cfg))
    ds.require_labels()
    ds = heldout_split(cfg, name, ds)
    ds = align_classes(ds, loaded.spec.class_names)
    if len(ds) > max_samples:
        ds = ds.subset(np.sort(np.random.default_rng(seed).choice(len(ds), max_samples, replace=False)))
    return ds


def _source_run(loaded: LoadedRun) -> tuple[LoadedRun | None, str | None]:
    """The source run of a transferred model, or ``None`` and the reason it is not available."""
    command = loaded.config.get("command", "unknown")
    if command not in ("transfer", "adapt"):
        return None, f"layer change and CKA compare a transferred model with its source; this is a {command} run"
    src = loaded.config.get("source")
    if isinstance(src, str) and not Path(src).exists():
        from transferkit.models import MODELS, is_pretrained

        if src in MODELS and is_pretrained(src):  # a pretrained backbone named by the user
            try:
                model, _ = load_source(src, loaded.config.get("model_kwargs") or None)
            except TransferkitError as e:
                return None, f"layer change and CKA skipped: backbone {src} not loadable ({e})"
            return LoadedRun(Path(src), model, {}, {}), None
    if not isinstance(src, str) or not src or src in ("TransferModel", "LoadedRun"):
        return None, "layer change and CKA skipped: the source was an in-memory model, not a run directory"
    candidates = [Path(src)]
    if not Path(src).is_absolute():
        candidates.append(loaded.path.parent / src)
    for cand in candidates:
        if (cand / "run.json").exists():
            try:
                return load_run(cand), None
            except TransferkitError as e:
                return None, f"layer change and CKA skipped: source run not usable ({e})"
    return None, f"layer change and CKA skipped: source run {src} not found"


def analyse_run(path: str | Path, label: str | None = None, *, max_samples: int = 256,
                n_saliency: int = 4) -> RunView:
    """Load ``path`` and compute its report views (CKA, weight change, saliency) where possible."""
    loaded = load_run(path)
    hist_path = loaded.path / "history.json"
    history = read_json(hist_path) if hist_path.exists() else []
    view = RunView(loaded.path, label or loaded.path.name, loaded.config, loaded.metrics,
                   history if isinstance(history, list) else [], list(loaded.spec.class_names), loaded.spec.modality)
    view.notes += [str(n) for n in loaded.metrics.get("notes", [])]
    data: ArrayDataset | None = None
    try:
        data = held_out_sample(loaded, max_samples)
    except (TransferkitError, OSError, KeyError) as e:
        view.notes.append(f"test data {loaded.config.get('data')!r} not reachable ({e}): CKA and saliency skipped")
    source, view.layer_note = _source_run(loaded)
    if view.layer_note:
        view.notes.append(view.layer_note)
    model = loaded.model.cpu().float()
    if source is not None:
        view.change = weight_change(source.model.cpu().float(), model)
        if data is not None and len(data) >= 2:
            view.cka = layer_cka(source.model, model, data.x)
    view.saliency, view.saliency_note = _saliency(model, loaded.spec.modality, loaded.spec.input_shape, data,
                                                  n_saliency)
    if view.saliency_note:
        view.notes.append(view.saliency_note)
    return view


def _saliency(model: TransferModel, modality: str, input_shape: tuple[int, ...], data: ArrayDataset | None,
              n: int) -> tuple[SaliencyExamples | TextSaliency | None, str | None]:
    """Saliency maps of an image run, token scores of a text run, or ``None`` and the reason there are none."""
    if n <= 0:
        return None, None
    image = modality == "image" and len(input_shape) == 3
    if not image and modality != "text":
        return None, (f"no saliency view: input-gradient maps are drawn for images and token scores for texts; "
                      f"this run's inputs are {modality} ({WHY_NOT.get(modality, 'no per-input view applies')})")
    if data is None:
        return None, "no saliency view: the test data is not reachable"
    if image:
        return saliency_examples(model, data.x, data.require_labels(), n, n), None
    from transferkit.models.text import tokenizer

    return text_saliency_examples(model, data.x, data.require_labels(), tokenizer().convert_ids_to_tokens, n, n), None


def analyse_runs(paths: list[str | Path], *, max_samples: int = 256, n_saliency: int = 4) -> list[RunView]:
    ps = [Path(p) for p in paths]
    labels = run_labels(ps)
    return [analyse_run(p, label, max_samples=max_samples, n_saliency=n_saliency)
            for p, label in zip(ps, labels, strict=True)]
