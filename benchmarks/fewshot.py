"""Few-shot text: transferkit's ``contrastive`` strategy and SetFit side by side, in one run (issue 19).

    python benchmarks/fewshot.py --quick                 # CI: movies 8/class, seed 0, 200 test texts (< 3 min)
    python benchmarks/fewshot.py --select                # the design choices, scored on validation texts only
    python benchmarks/fewshot.py --select --variants "pairs, lr 2e-5, prompt head;supcon, lr 2e-5, prompt head"
    python benchmarks/fewshot.py --select --select-task spam-8 --variants "pairs, lr 2e-5, mean head"
    python benchmarks/fewshot.py --tasks movies-8 --seeds 0,1,2,3,4   # cells; finished ones are kept (resume)
    python benchmarks/fewshot.py --methods contrastive --work runs/fewshot-c &   # two processes, then
    python benchmarks/fewshot.py --merge runs/fewshot-c  # one store, rendered
    python benchmarks/fewshot.py --render-only           # docs/FEWSHOT.md from docs/fewshot.json

Protocol (benchmarks/text.py's): the seeded split of the task's data (validation 15%, test 30%), ``k`` labelled
texts per class drawn from the training split, 500 test texts drawn from the held-out split (and, for the movies
tasks, 500 ``vader-tweets``: the cross-domain score, with balanced accuracy and the majority rate beside it).
Both sides train on exactly these ``k`` texts per class and nothing else: no validation set (so no early
stopping: the contrastive recipe's fixed schedule), no unlabelled text. SetFit (``setfit==1.2.0``, the
``bench-setfit`` extra) runs in a child process of the interpreter given by ``--setfit-python`` (default
``$SETFIT_PYTHON``, else this one when it imports setfit): the parent writes the exact texts and labels to a
temporary file, the child trains SetFit on them (same all-MiniLM-L6-v2 files, same ``torch.set_num_threads``)
and returns its predictions. CPU seconds are ``time.process_time`` (all threads) around training on each side.

``--methods self_train`` adds transferkit's semi-supervised row on the same labelled draw: ``self_train`` with
its defaults (no validation split, so its teacher is calibrated out-of-fold on the labelled texts) reading the
training split's other texts without their labels (``--unlabelled rest``): more movie text than either side
above, no extra label; the page reports it apart from the labels-only comparison.

    python benchmarks/fewshot.py --tasks movies-64 --methods self_train --seeds 0,1,2,3,4

``--methods STRATEGY@SOURCE`` adds the labels-only row of another registered text source, as
``transferkit transfer --source SOURCE --data ... --shots k [--strategy STRATEGY]`` trains it (the backbone's recipe
for the strategy, where there is one): same labelled draw, same test draws, no validation set. E.g. the opt-in
``mpnet`` (all-mpnet-base-v2; ``make text-large``) with the CLI's default strategy and with the linear probe:

    python benchmarks/fewshot.py --tasks movies-64 --methods lp_ft@mpnet,linear_probe@mpnet --seeds 0,1,2,3,4

``--methods setfit@SOURCE`` runs SetFit (its defaults) on that source's sentence-transformers folder, same draws
and threads: the same-encoder reference of the ``STRATEGY@SOURCE`` rows (FEWSHOT.md Appendix D; its CPU
column says what a seed costs: on mpnet, tens of minutes on 2 cores at 64/class).

Quick mode fails (exit 1) when ``contrastive`` scores below SetFit on the quick cell. Without setfit installed
it says so and compares with the SetFit cell recorded for the same split in docs/fewshot.json (a recorded
reference, not a re-run; exit 2 when there is none).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import copy
import dataclasses
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import log, machine_info
from fewshot_report import paired, render

from transferkit.data import ArrayDataset, kshot, kshot_rest, load_dataset, split
from transferkit.engine.config import TrainConfig
from transferkit.models import MODELS, TransferModel, from_pretrained
from transferkit.models.text import model_path, tokenize_for
from transferkit.strategies import TransferContext, make_strategy, run_strategy
from transferkit.zeroshot import report

ROOT = Path(__file__).resolve().parent.parent
#: task -> (dataset, labelled texts per class, cross-domain test sets)
TASKS: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "movies-8": ("vader-movies", 8, ("vader-tweets",)),
    "movies-64": ("vader-movies", 64, ("vader-tweets",)),
    "spam-8": ("sms-spam", 8, ()),
    "news-8": ("20newsgroups-top", 8, ()),
}
#: the strategy's options in the benchmark rows (empty: its defaults and the minilm recipe, as the CLI runs it)
CONTRASTIVE: dict[str, str] = {}
#: design choices scored by --select on validation texts (never a test text): name -> strategy options
VARIANTS: dict[str, dict[str, str]] = {
    "supcon, lr 2e-5, prompt head": {"loss": "supcon", "head": "prompts"},
    "pairs, lr 2e-5, prompt head": {"loss": "pairs", "head": "prompts"},
    "supcon, lr 5e-5, prompt head": {"loss": "supcon", "head": "prompts", "body_lr_scale": "2.5"},
    "pairs, lr 5e-5, prompt head": {"loss": "pairs", "head": "prompts", "body_lr_scale": "2.5"},
    "supcon, lr 2e-5, mean head": {"loss": "supcon", "head": "means"},
    "pairs, lr 2e-5, mean head": {"loss": "pairs", "head": "means"},
    "pairs, lr 2e-5, prompt head, 4 passes": {"loss": "pairs", "head": "prompts", "passes": "4"},
    # the recipe's training settings (a TrainConfig field in a variant overrides the recipe's)
    "pairs, lr 2e-5, prompt head, bf16": {"loss": "pairs", "head": "prompts", "precision": "bf16"},
    # 64/class (issue 19's 64-label criteria): training that grows with the labels, an end-to-end stage, the rate
    # (the passes each ran with, named: MIN_PASSES came after them)
    "pairs, lr 2e-5, prompt head, bf16, 1 pass, end-to-end 2 epochs": {
        "loss": "pairs", "head": "prompts", "precision": "bf16", "passes": "1", "finetune_epochs": "2"},
    "pairs, lr 2e-5, prompt head, bf16, batch 32, 2 passes": {"loss": "pairs", "head": "prompts", "precision": "bf16",
                                                              "batch_size": "32", "passes": "2"},
    "pairs, lr 5e-5, prompt head, bf16, 1 pass": {"loss": "pairs", "head": "prompts", "precision": "bf16",
                                                  "body_lr_scale": "2.5", "passes": "1"},
    "pairs, lr 2e-5, prompt head, bf16, 4 passes": {"loss": "pairs", "head": "prompts", "precision": "bf16",
                                                    "passes": "4"},
    "pairs, lr 2e-5, prompt head, bf16, 8 passes": {"loss": "pairs", "head": "prompts", "precision": "bf16",
                                                    "passes": "8"},
    # the recipe before MIN_PASSES (8 steps an epoch: 1 pass at 64/class), named so that it stays that
    "pairs, lr 2e-5, prompt head, bf16, 1 pass": {"loss": "pairs", "head": "prompts", "precision": "bf16",
                                                  "passes": "1"},
    # the rate with the recipe's 4 passes (lr 5e-5 scored above 2e-5 at 1 pass)
    "pairs, lr 5e-5, prompt head, bf16, 4 passes": {"loss": "pairs", "head": "prompts", "precision": "bf16",
                                                    "body_lr_scale": "2.5", "passes": "4"},
    # batch-hard pairs (the hardest positive and negative of each anchor) at 64/class, the recipe otherwise
    "hard pairs, lr 2e-5, prompt head, bf16": {"loss": "hard", "head": "prompts", "precision": "bf16"},
    "pairs, lr 2e-5, prompt head, bf16, batch 64": {"loss": "pairs", "head": "prompts", "precision": "bf16",
                                                    "batch_size": "64"},
    "pairs, lr 2e-5, prompt head, bf16, batch 32, end-to-end 2 epochs": {
        "loss": "pairs", "head": "prompts", "precision": "bf16", "batch_size": "32", "finetune_epochs": "2"},
    "pairs, lr 2e-5, prompt head, bf16, batch 32, prompt prior 0.01": {
        "loss": "pairs", "head": "prompts", "precision": "bf16", "batch_size": "32", "prior": "0.01"},
    # another source and strategy ("source", "strategy"; every recipe setting given, so none comes from a recipe):
    # the (mpnet, lp_ft) recipe, what `--source mpnet` with the CLI's default strategy trains with
    "mpnet lp_ft, probe 3e-3, body 3e-5, batch 16, 5 epochs, bf16": {
        "source": "mpnet", "strategy": "lp_ft", "lr": "6e-5", "head_lr_scale": "50", "batch_size": "16",
        "epochs": "5", "patience": "2", "precision": "bf16"},
    "mpnet lp_ft, probe 3e-3, body 1.5e-5, batch 16, 5 epochs, bf16": {
        "source": "mpnet", "strategy": "lp_ft", "lr": "3e-5", "head_lr_scale": "100", "batch_size": "16",
        "epochs": "5", "patience": "2", "precision": "bf16"},
    # the frozen encoder beside them: `--strategy linear_probe` as the CLI runs it (no recipe: the library's defaults)
    "mpnet linear_probe, library defaults": {"source": "mpnet", "strategy": "linear_probe"},
}
SETFIT = {"num_iterations": 20, "batch_size": 16}
#: TrainConfig fields a variant may set (strings, as on the command line; the recipe fills the others)
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"seed", "progress"}
#: the source of the rows that do not name one (``STRATEGY@SOURCE`` methods and variants with ``source`` do)
DEFAULT_SOURCE = "minilm"


class Bench:
    def __init__(self, test_n: int, threads: int) -> None:
        self.test_n, self.threads = test_n, threads
        self.source = from_pretrained(DEFAULT_SOURCE)
        #: tokens kept per text on both sides (transferkit's minilm default; SetFit's model folder says 256)
        self.max_length = int(self.source.spec.input_shape[-1])
        self.raw: dict[str, ArrayDataset] = {}
        self.sources: dict[str, TransferModel] = {DEFAULT_SOURCE: self.source}

    def model(self, name: str) -> TransferModel:
        """The registered pretrained backbone ``name``, loaded once."""
        if name not in self.sources:
            self.sources[name] = from_pretrained(name)
        return self.sources[name]

    def data(self, name: str) -> ArrayDataset:
        if name not in self.raw:
            self.raw[name] = load_dataset(name)
        return self.raw[name]

    def draw(self, n: int, seed: int) -> np.ndarray:
        return np.sort(np.random.default_rng(seed).choice(n, min(self.test_n, n), replace=False))

    def task(self, task: str, seed: int, selecting: bool = False,
             cross: bool = True) -> tuple[ArrayDataset, dict[str, ArrayDataset]]:
        """(the labelled draw, test sets by name); ``selecting``: the validation split's texts stand in for
        the test sets (one draw of the same size, cross-domain sets left out); ``cross``: with them."""
        name, k, others = TASKS[task]
        sp = split(self.data(name), seed=seed, val=0.15, test=0.3)
        train = kshot(sp.train, k, seed=seed)
        if selecting:
            return train, {"val": sp.val.subset(self.draw(len(sp.val), seed), ":val")}
        tests = {name: sp.test.subset(self.draw(len(sp.test), seed), ":test")}
        for c in others if cross else ():
            tests[c] = self.data(c).subset(self.draw(len(self.data(c)), seed), ":test")
        return train, tests

    def contrastive(self, task: str, seed: int, options: dict[str, str], selecting: bool = False,
                    cross: bool = True) -> dict[str, Any]:
        train, tests = self.task(task, seed, selecting, cross)
        return self.transfer("contrastive", train, tests, seed, options)

    def variant(self, task: str, seed: int, options: dict[str, str], selecting: bool = False,
                cross: bool = True) -> dict[str, Any]:
        """A :data:`VARIANTS` entry or a ``STRATEGY@SOURCE`` row: ``options`` may name the ``strategy`` (default
        contrastive) and the ``source`` (default :data:`DEFAULT_SOURCE`); the rest as :meth:`transfer` takes them."""
        rest = {k: v for k, v in options.items() if k not in ("strategy", "source")}
        train, tests = self.task(task, seed, selecting, cross)
        return self.transfer(options.get("strategy", "contrastive"), train, tests, seed, rest,
                             source=options.get("source", DEFAULT_SOURCE))

    def self_train(self, task: str, seed: int, cross: bool = True) -> dict[str, Any]:
        """``self_train`` with its defaults (the minilm ``lp_ft`` recipe for its student) on the same labelled draw
        and no validation split, reading the training split's other texts unlabelled (``--unlabelled rest``)."""
        train, tests = self.task(task, seed, cross=cross)
        name, k, _ = TASKS[task]
        rest = kshot_rest(split(self.data(name), seed=seed, val=0.15, test=0.3).train, k, seed=seed)
        return self.transfer("self_train", train, tests, seed, {}, unlabelled=rest)

    def transfer(self, strategy: str, train: ArrayDataset, tests: dict[str, ArrayDataset], seed: int,
                 options: dict[str, str], unlabelled: ArrayDataset | None = None,
                 source: str = DEFAULT_SOURCE) -> dict[str, Any]:
        """``strategy`` (with ``source``'s recipe, as the CLI runs it) trained on ``train`` alone (no validation
        set), scored on ``tests``; ``options``: TrainConfig fields and ``head_lr_scale`` (over the recipe's) and
        strategy options; ``unlabelled``: inputs it may read without their labels (``ctx.unlabelled``)."""
        torch.set_num_threads(self.threads)
        model = copy.deepcopy(self.model(source))
        torch.manual_seed(seed)
        model.reset_head(train.class_names)

        def tok(ds: ArrayDataset) -> torch.Tensor:
            return torch.from_numpy(tokenize_for(model.spec, ds.x))

        settings = {k: type(TrainConfig.default(k))(v) for k, v in options.items() if k in TRAIN_FIELDS}
        cfg = TrainConfig(seed=seed, progress="off", **settings)
        scale = {"head_lr_scale": float(options["head_lr_scale"])} if "head_lr_scale" in options else {}
        ctx = TransferContext(model, {}, (tok(train), torch.from_numpy(train.require_labels())), None, cfg,
                              lambda: model, user_set=frozenset({"seed", "progress", *settings, *scale}),
                              unlabelled=None if unlabelled is None else tok(unlabelled), **scale)
        strategy_options = {k: v for k, v in options.items() if k not in settings and k not in scale}
        c0, w0 = time.process_time(), time.perf_counter()
        run_strategy(make_strategy(strategy, strategy_options), ctx)
        c1, w1 = time.process_time(), time.perf_counter()
        from transferkit.engine.precision import predict_logits, resolve_placement

        place = resolve_placement(ctx.model, "fp32", "off")
        preds = {d: predict_logits(ctx.model, tok(ds), place).argmax(1).numpy() for d, ds in tests.items()}
        return {**scores(tests, preds), "train_cpu_seconds": c1 - c0, "train_wall_seconds": w1 - w0,
                "max_length": int(model.spec.input_shape[-1]), "options": options, "source": source,
                "info": json.loads(json.dumps(ctx.info, default=str))}

    def encoder(self, name: str) -> dict[str, Any]:
        """What the cells of source ``name`` ran on: its folder's name and its encoder's parameters (all, and
        without the token embeddings, whose cost per token does not grow with their number)."""
        model = self.model(name)
        groups = dict(model.layer_groups())
        body = sum(p.numel() for n, g in groups.items() if n != "head" for p in g.parameters())
        emb = sum(p.numel() for n, g in groups.items() if n.startswith("embeddings") for p in g.parameters())
        return {"encoder": MODELS.list(name)[0].summary.split()[0], "params": body,
                "params_without_embeddings": body - emb}

    def setfit(self, task: str, seed: int, python: str, cross: bool = True,
               source: str = DEFAULT_SOURCE) -> dict[str, Any]:
        """SetFit (its defaults, :data:`SETFIT`) on the same labelled draw and test draws as transferkit's cells,
        on ``source``'s sentence-transformers folder (``setfit@mpnet``: all-mpnet-base-v2; default MiniLM)."""
        train, tests = self.task(task, seed, cross=cross)
        folder = model_path() if source == DEFAULT_SOURCE else Path(self.model(source).spec.kwargs["path"])
        job = {"model": str(folder), "train_texts": [str(t) for t in train.x],
               "train_labels": [int(v) for v in train.require_labels()], "seed": seed, "threads": self.threads,
               "max_length": int(self.model(source).spec.input_shape[-1]),
               "tests": {d: [str(t) for t in ds.x] for d, ds in tests.items()}, **SETFIT}
        with tempfile.TemporaryDirectory(prefix="fewshot-setfit-") as tmp:
            src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
            src.write_text(json.dumps(job), encoding="utf-8")
            env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "HF_HUB_OFFLINE": "1"}
            subprocess.run([python, str(Path(__file__).with_name("setfit_worker.py")), str(src), str(dst)],
                           check=True, env=env)
            out = json.loads(dst.read_text(encoding="utf-8"))
        preds = {d: np.asarray(p) for d, p in out.pop("predictions").items()}
        return {**scores(tests, preds), **out, "settings": SETFIT}


def scores(tests: dict[str, ArrayDataset], preds: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d, ds in tests.items():
        m = report(ds.require_labels(), preds[d], len(ds.class_names), d)
        out[d] = {k: m[k] for k in ("accuracy", "balanced_accuracy", "majority_rate", "n")}
    return out


def setfit_python(given: str | None) -> str | None:
    """The interpreter that imports setfit: ``given``, ``$SETFIT_PYTHON``, or this one; None when none does."""
    for cand in (given, os.environ.get("SETFIT_PYTHON")):
        if cand:
            return cand
    return sys.executable if importlib.util.find_spec("setfit") is not None else None


def key(task: str, method: str, seed: int) -> str:
    return f"{task}|{method}|{seed}"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def save(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def strategy_of(method: str) -> str:
    """``lp_ft@mpnet`` -> ``lp_ft``; ``setfit`` -> ``setfit``."""
    return method.partition("@")[0]


def check_methods(methods: list[str]) -> None:
    """Every ``--methods`` name is ``setfit``, ``self_train``, ``contrastive`` or ``STRATEGY@SOURCE`` with a
    registered strategy and source: a typo stops here, in one line, before any model loads or cell runs."""
    from transferkit.strategies import STRATEGIES

    for m in methods:
        strategy, at, source = m.partition("@")
        if not at and m in ("setfit", "self_train", "contrastive"):
            continue
        if not at:
            raise SystemExit(f"--methods: unknown method {m!r} (setfit, self_train, contrastive, STRATEGY@SOURCE "
                             "or setfit@SOURCE)")
        if strategy == "setfit" and source == DEFAULT_SOURCE:
            raise SystemExit(f"--methods {m}: SetFit on {DEFAULT_SOURCE} is the method 'setfit'")
        if strategy not in STRATEGIES and strategy != "setfit":  # setfit@SOURCE: SetFit on that source's folder
            raise SystemExit(f"--methods {m}: unknown strategy {strategy!r} (strategies: {', '.join(STRATEGIES)})")
        if source not in MODELS:
            raise SystemExit(f"--methods {m}: unknown source {source!r} (sources: {', '.join(MODELS)})")


def run_cells(bench: Bench, store: Path, tasks: list[str], seeds: list[int], python: str | None,
              methods: list[str]) -> dict[str, Any]:
    cells = load(store)
    for task in tasks:
        for seed in seeds:
            for method in methods:
                k = key(task, method, seed)
                if k in cells:
                    continue
                if strategy_of(method) == "setfit" and python is None:
                    log(f"{k}: skipped (setfit is not installed)")
                    continue
                log(f"{k}: running")
                strategy, _, source = method.partition("@")
                res = (bench.setfit(task, seed, python, source=source or DEFAULT_SOURCE) if strategy == "setfit"
                       and python
                       else bench.self_train(task, seed) if method == "self_train"
                       else bench.variant(task, seed, {"strategy": strategy, "source": source}) if source
                       else bench.contrastive(task, seed, CONTRASTIVE))
                res["load_average"] = os.getloadavg()
                cells = {**load(store), k: res}  # read again: another process may share the store
                save(store, cells)
                accs = {d: round(v["accuracy"], 3) for d, v in res.items() if isinstance(v, dict) and "accuracy" in v}
                log(f"{k}: {accs} cpu {res['train_cpu_seconds']:.0f}s")
    return cells


def select(bench: Bench, store: Path, seeds: list[int], variants: str | None, task: str = "movies-8") -> dict[str, Any]:
    """Each variant on ``task``, scored on a draw of its validation split (no test text read)."""
    cells = load(store)
    for name, options in VARIANTS.items():
        if variants is not None and name not in variants.split(";"):
            continue
        for seed in seeds:
            k = key(f"{task}:val", name, seed)
            if k not in cells:
                cell = bench.variant(task, seed, options, selecting=True)
                cells = {**load(store), k: {**cell, "threads": bench.threads, "load_average": os.getloadavg()}}
                save(store, cells)  # read again: another process may share the store
                log(f"{k}: val {cells[k]['val']['accuracy']:.3f} cpu {cells[k]['train_cpu_seconds']:.0f}s")
    return cells


#: the full fine-tune ceiling's settings (over the minilm ``full`` recipe: lr 3e-5, batch 16): a fixed schedule of
#: cross-entropy epochs over every training label, bf16 autocast (CPU), no validation set (no early stopping)
FINETUNE = {"epochs": "2", "precision": "bf16"}
FINETUNE_NAME = f"full fine-tune, {FINETUNE['epochs']} epochs"


def finetune_ceiling(bench: Bench, store: Path, seeds: list[int]) -> dict[str, Any]:
    """What the encoder itself reaches when every layer trains on every label: ``full`` (body + head,
    cross-entropy; :data:`FINETUNE` over the minilm recipe) on the whole training split of each seed's split of
    vader-movies, scored on the same 500-text test draw as the cells."""
    cells = load(store)
    for seed in seeds:
        ck = key("ceiling", FINETUNE_NAME, seed)
        if ck in cells:
            continue
        _, tests = bench.task("movies-64", seed, cross=False)  # the cells' test draw
        sp = split(bench.data("vader-movies"), seed=seed, val=0.15, test=0.3)
        res = bench.transfer("full", sp.train, tests, seed, FINETUNE)
        cells = {**load(store), ck: {**res, "train_n": len(sp.train), "load_average": os.getloadavg()}}
        save(store, cells)
        log(f"{ck}: {res['vader-movies']['accuracy']:.3f} ({len(sp.train)} labelled texts, "
            f"cpu {res['train_cpu_seconds']:.0f}s)")
    return cells


def ceiling(bench: Bench, store: Path, seeds: list[int], encoder: Path | None = None) -> dict[str, Any]:
    """What the frozen encoder reaches with every training label of vader-movies: a logistic regression on
    frozen all-MiniLM-L6-v2 features (mean-pooled, normalised; fp32) of the whole training split of each seed's
    split, its C picked on the validation split, scored on the same 500-text test draw as the cells; beside it
    the same probe on the 64/class draw of movies-64. The labels-only 64/class criterion's reference point.
    ``encoder``: a local Hugging Face sentence-encoder folder instead (transferkit's ``hf`` backbone, as
    ``--source FOLDER`` loads it); its rows are named ``<row> @ <folder name>``."""
    from sklearn.linear_model import LogisticRegression

    from transferkit.engine.features import extract_features
    from transferkit.engine.precision import resolve_placement

    cells = load(store)
    ds = bench.data("vader-movies")
    at = "" if encoder is None else f" @ {encoder.name}"
    feats_file = store.with_name(f"ceiling_features{at.replace(' @ ', '-')}.npy")
    if feats_file.exists():
        feats = np.load(feats_file)
    else:  # every text once (a frozen encoder: the split only picks rows)
        model = bench.source if encoder is None else from_pretrained("hf", {"path": str(encoder)})
        torch.set_num_threads(bench.threads)
        x = torch.from_numpy(tokenize_for(model.spec, ds.x))
        feats = extract_features(model, x, resolve_placement(model, "fp32", "off")).float().numpy()
        feats_file.parent.mkdir(parents=True, exist_ok=True)
        np.save(feats_file, feats)
    rows = dataclasses.replace(ds, x=np.arange(len(ds)))  # split and draw row numbers, not texts
    for seed in seeds:
        for name, k in ((f"all labels{at}", None), (f"64/class{at}", 64)):
            ck = key("ceiling", name, seed)
            if ck in cells:
                continue
            sp = split(rows, seed=seed, val=0.15, test=0.3)
            train = sp.train if k is None else kshot(sp.train, k, seed=seed)
            test = sp.test.subset(bench.draw(len(sp.test), seed))
            fit = {c: LogisticRegression(C=c, max_iter=2000).fit(feats[train.x], train.require_labels())
                   for c in (0.1, 1.0, 10.0, 100.0)}
            best = max(fit, key=lambda c: fit[c].score(feats[sp.val.x], sp.val.require_labels()))
            acc = float(fit[best].score(feats[test.x], test.require_labels()))
            cells[ck] = {"vader-movies": {"accuracy": acc, "n": len(test)}, "C": best, "train_n": len(train)}
            save(store, cells)
            log(f"{ck}: {acc:.3f} (C {best}, {len(train)} labelled texts)")
    return cells


def quick(args: argparse.Namespace, python: str | None) -> int:
    """movies-8, seed 0, the in-domain test draw of the full run (no tweets): both sides trained afresh; without
    setfit, the SetFit side is the full run's recorded cell for the same split (docs/fewshot.json)."""
    bench = Bench(500, args.threads)
    ours = bench.contrastive("movies-8", 0, CONTRASTIVE, cross=False)
    log(f"contrastive: {ours['vader-movies']['accuracy']:.3f}, cpu {ours['train_cpu_seconds']:.0f}s")
    recorded = load(ROOT / "docs" / "fewshot.json").get("cells", {}).get(key("movies-8", "setfit", 0))
    if python:
        theirs, what = bench.setfit("movies-8", 0, python, cross=False), "SetFit, run now"
    else:
        print("setfit is not installed here (pip install -e .[bench-setfit], or --setfit-python / $SETFIT_PYTHON): "
              "comparing with the SetFit cell recorded for this split in docs/fewshot.json, not a re-run")
        if recorded is None:
            print("no recorded SetFit cell for movies-8 seed 0: nothing to compare with")
            return 2
        theirs, what = recorded, "SetFit, recorded"
    a, b = ours["vader-movies"]["accuracy"], theirs["vader-movies"]["accuracy"]
    print(f"quick: movies 8/class, seed 0, {ours['vader-movies']['n']} test texts: contrastive {a:.3f} "
          f"({ours['train_cpu_seconds']:.0f} CPU s), {what} {b:.3f} ({theirs['train_cpu_seconds']:.0f} CPU s)")
    if a < b:
        print("FAIL: contrastive scores below SetFit on the quick task")
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--select", action="store_true")
    ap.add_argument("--ceiling", action="store_true", help="the frozen-encoder probe on every movies training label")
    ap.add_argument("--ceiling-parts", default="probe",
                    help="with --ceiling: ','-separated parts: probe (frozen features + logistic regression), "
                         "finetune (every layer on every label; minutes of CPU per seed)")
    ap.add_argument("--encoder", type=Path, default=None,
                    help="with --ceiling (probe): a local Hugging Face sentence-encoder folder instead of MiniLM")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--tasks", default="movies-8")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--methods", default="contrastive,setfit")
    ap.add_argument("--merge", type=Path, action="append", default=[],
                    help="add the cells of another --work folder (a run in a second process) to this one's")
    ap.add_argument("--variants", default=None, help="with --select: ';'-separated names of VARIANTS (default all)")
    ap.add_argument("--select-task", default="movies-8", help="with --select: the task whose validation split scores")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--setfit-python", default=None)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "fewshot")
    args = ap.parse_args()
    python = setfit_python(args.setfit_python)
    if args.quick:
        return quick(args, python)
    doc_json = ROOT / "docs" / "fewshot.json"
    if not args.render_only and not args.select and not args.ceiling:
        check_methods(args.methods.split(","))
        for t in args.tasks.split(","):
            if t not in TASKS:
                raise SystemExit(f"--tasks: unknown task {t!r} (tasks: {', '.join(TASKS)})")
    if not args.render_only:
        bench = Bench(500 if not args.select else 300, args.threads)
        seeds = [int(s) for s in args.seeds.split(",")]
        if args.select:
            sel = select(bench, args.work / "select.json", seeds, args.variants, args.select_task)
            # the doc's selection cells from other --work folders are kept: this folder's are added or replaced
            update: dict[str, Any] = {"select": {**load(doc_json).get("select", {}), **sel}}
        elif args.ceiling:
            parts = args.ceiling_parts.split(",")
            for part in parts:
                if part not in ("probe", "finetune"):
                    raise SystemExit(f"--ceiling-parts: unknown part {part!r} (parts: probe, finetune)")
            store = args.work / "ceiling.json"
            if "probe" in parts:
                ceiling(bench, store, seeds, args.encoder)
            if "finetune" in parts:
                finetune_ceiling(bench, store, seeds)
            # another --work folder's ceiling cells (the doc's) are kept: only this folder's are added or replaced
            update = {"ceiling": {**load(doc_json).get("ceiling", {}), **load(store)}}
        else:
            # the doc's cells count as run (a fresh --work folder adds to them, never replaces them), then any
            # --merge folder's, then this folder's own
            save(args.work / "results.json", {**load(doc_json).get("cells", {}),
                                              **{k: v for o in args.merge for k, v in load(o / "results.json").items()},
                                              **load(args.work / "results.json")})
            methods = args.methods.split(",")
            run_cells(bench, args.work / "results.json", args.tasks.split(","), seeds, python, methods)
            update = {"cells": load(args.work / "results.json")}
            sources = {DEFAULT_SOURCE, *(m.partition("@")[2] for m in methods if "@" in m)}
            update["encoders"] = {**load(doc_json).get("encoders", {}), **{n: bench.encoder(n) for n in sources}}
        doc = load(doc_json)  # read again now: another process of this script may have written it meanwhile
        doc.update(update)
        doc.setdefault("machine", {}).update(machine_info())
        doc.setdefault("commands", []).append(" ".join(["python benchmarks/fewshot.py", *sys.argv[1:]]))
        save(doc_json, doc)
    doc = load(doc_json)
    if (args.work / "select.json").exists():  # the selection cells finished so far (an interrupted --select too)
        doc["select"] = {**doc.get("select", {}), **load(args.work / "select.json")}
        save(doc_json, doc)
    (ROOT / "docs" / "FEWSHOT.md").write_text(render(doc, TASKS, paired), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
