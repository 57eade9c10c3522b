"""Text transfer with MiniLM on the VADER domains and SMS spam: the issue's targets, measured.

    python benchmarks/text.py            # writes docs/TEXT.md and docs/text.json (3 seeds)
    python benchmarks/text.py --quick    # 1 seed, smaller test sets, fewer epochs: docs/TEXT-quick.*
    python benchmarks/text.py --seeds 3 --methods zero_shot,linear_probe,zs_init --no-pairs
                                         # a subset of the table (same protocol), when time is short
    python benchmarks/text.py --no-main --pair-sources tweets,amazon,sms-spam --work runs/text-pairs &
    python benchmarks/text.py --merge runs/text-pairs
                                         # two processes (one thread each), then one run that renders both
    python benchmarks/text.py --import docs/text.json --methods zero_shot,zs_init@ft --no-pairs
                                         # after runs/ was lost: earlier cells from the doc's JSON, new ones computed
    python benchmarks/text.py --pick-templates   # zero-shot accuracy of the candidate prompt sets, validation only

Protocol (the issue's): ``vader-movies`` (|score| >= 0.5), 64 labelled snippets per class drawn
from the training split (and at most 64 per class from the validation split for early stopping,
as ``transferkit transfer --shots 64`` does), 500 test snippets from the held-out split, seeds
0, 1, 2. Cross-domain: the same movie-trained models scored on 500 random ``vader-tweets`` (no
tweet is used for training or selection, except as unlabelled text by the adaptation rows below, which
never read a test text), with balanced accuracy and the majority-class
rate beside every accuracy. Then a domain-pair table: train on one VADER domain, test on each, and
``sms-spam`` in-domain. Two blocks run on seeds fixed before they ran: the fresh-seed confirmation
(seeds 3-5) of the row chosen on seeds 0-2, and unsupervised adaptation (seeds 0-5: ``self_train@uda``'s
unlabelled pool also holds the tweets outside each seed's test draw, ``self_train@uda-amazon``'s the
Amazon snippets; neither holds a text whose tokens repeat a test text).

The rows and recipes live in ``text_rows.py``; ``text_report.py`` renders docs/TEXT.md from the cells;
``text_posthoc.py`` computes the rows derived from a cell's saved logits (no training).

Cost: at most 5 epochs per phase with early stopping (patience 2); frozen features (the probe and the
zero-shot model) come from one :class:`FeatureCache`; each trained cell's validation and test logits
are kept in ``runs/text/logits/`` so the post-hoc methods (output-space ensembles with the zero-shot
model, EM prior correction, other points of a ``zs_init`` cell's WiSE-FT path) cost no training, and their
rows are stored as cells too (a render without the logits keeps them); the movies row of the pair table reuses the main
table's cells.

Every method runs through the library's own code: zero-shot via :mod:`transferkit.zeroshot`,
strategies from the registry through ``run_strategy`` (the path ``transferkit transfer`` uses),
the frozen-feature probe on the shared :class:`FeatureCache`. Only the test set is ours (500
snippets instead of the whole 30% split, to fit the time budget). Finished cells are kept in
``runs/text*/results.json`` so an interrupted run resumes.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import log, machine_info
from text_posthoc import derived_cells
from text_report import render
from text_rows import (
    CONFIRM_METHODS,
    CONFIRM_SEEDS,
    DOMAINS,
    RECIPES,
    SPAM,
    TEMPLATE_CANDIDATES,
    TRAIN_FIXED,
    UDA_DOMAINS,
    UDA_SEEDS,
    ZS_ENSEMBLE,
    ZS_TEMPLATES,
    head_lr_scale,
)

from transferkit.data import ArrayDataset, Splits, kshot, load_dataset, split
from transferkit.data.base import kshot_indices
from transferkit.engine.config import TrainConfig
from transferkit.engine.features import FeatureCache
from transferkit.engine.precision import predict_logits, resolve_placement
from transferkit.models import TransferModel, from_pretrained
from transferkit.pipeline import SPLIT
from transferkit.strategies import TransferContext, make_strategy, run_strategy
from transferkit.strategies.semi import pool_inputs
from transferkit.strategies.text_prior import ALPHAS
from transferkit.zeroshot import (
    class_embeddings,
    cosine_predict,
    report,
)

ROOT = Path(__file__).resolve().parent.parent
def settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {"seeds": [0], "shots": 64, "test": 200, "epochs": 3, "patience": 2,
                "pair_sources": ["movies", "tweets"],
                "pair_strategies": ["scratch", "linear_probe", "lp_ft"], "suffix": "-quick"}
    # 5 epochs (early stopping with patience 2 on the 64-per-class validation draw) keeps the whole table
    # within ~40 min on one shared core; the probe's phase trains on cached features regardless
    return {"seeds": [0, 1, 2], "shots": 64, "test": 500, "epochs": 5, "patience": 2,
            "pair_sources": [*DOMAINS, SPAM], "pair_strategies": ["scratch", "linear_probe", "lp_ft", "lora"],
            "suffix": ""}


def main_strategies() -> list[str]:
    return ["linear_probe", "zs_init", "lora", "full", "lp_ft", "full@5e-5", "lora@3e-3", "zs_init@lp_ft", "zs_init@ft",
            "lp_ft@ft1e-5", "self_train@acc", "self_train@sgd", "self_train", "self_train@r2"]


class Bench:
    """Data, the source encoder and the test sets, loaded once."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.source = from_pretrained("minilm")
        self.data = {d: load_dataset(f"vader-{d}", model=self.source.spec) for d in DOMAINS}
        self.data[SPAM] = load_dataset(SPAM, model=self.source.spec)
        self.cache = FeatureCache()
        self.logits_dir: Path | None = None  # where each cell's logits go (for the post-hoc methods)

    def task(self, domain: str, seed: int) -> tuple[ArrayDataset, ArrayDataset, dict[str, ArrayDataset]]:
        """(train k-shot, val k-shot, test sets by domain): the in-domain test comes from the held-out split."""
        sp = self.split(domain, seed)
        k = self.cfg["shots"]
        train, val = kshot(sp.train, k, seed=seed), kshot(sp.val, k, seed=seed)
        tests = {}
        for d in (DOMAINS if domain in DOMAINS else (domain,)):
            pool = sp.test if d == domain else self.data[d]
            idx = self.test_indices(len(pool), seed)
            tests[d] = pool.subset(idx, f":test{len(idx)}")
        return train, val, tests

    def test_indices(self, n: int, seed: int) -> np.ndarray:
        """The (sorted) test draw of ``seed`` from a pool of ``n`` texts."""
        return np.sort(np.random.default_rng(seed).choice(n, min(self.cfg["test"], n), replace=False))

    def run(self, strategy: str, domain: str, seed: int) -> dict[str, Any]:
        train, val, tests = self.task(domain, seed)
        options, overrides = RECIPES[strategy]
        base = strategy.split("@")[0]  # "full@5e-5": the strategy full with another learning rate
        tc = TrainConfig(**{"epochs": self.cfg["epochs"], "patience": self.cfg["patience"], **TRAIN_FIXED,
                            "progress": "off", "seed": seed, **overrides})
        model = copy.deepcopy(self.source)
        torch.manual_seed(seed)  # the new head's initialisation must not depend on the cells run before
        model.reset_head(train.class_names)

        def fresh() -> TransferModel:
            from transferkit.models import fresh_like

            return fresh_like(model, seed)

        def t(d: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.from_numpy(d.x), torch.from_numpy(d.require_labels())

        pools, dropped = self.pools(strategy, domain, seed, tests) if base == "self_train" else ([], 0)
        x_unl, groups = pool_inputs([torch.from_numpy(p_.x) for p_ in pools]) if pools else (None, None)
        ctx = TransferContext(model, {}, t(train), t(val), tc, fresh, cache=self.cache,
                              head_lr_scale=head_lr_scale(strategy), unlabelled=x_unl, unlabelled_groups=groups)
        t0 = time.perf_counter()
        strat = make_strategy(base, options)
        run_strategy(strat, ctx)
        seconds = time.perf_counter() - t0
        place = resolve_placement(ctx.model, "fp32", "off")
        out: dict[str, Any] = {"train_seconds": seconds, "info": _jsonable(ctx.info),
                               "best_val_acc": [r.best_val_acc for r in ctx.results]}
        if pools:  # the pseudo-labels scored against the labels this benchmark holds back
            kept, labels = strat.pseudo  # type: ignore[attr-defined]
            truth = np.concatenate([p_.require_labels() for p_ in pools])[kept]
            out["pseudo"] = {"n": len(kept), "accuracy": float((labels == truth).mean()),
                             "n_unlabelled": sum(len(p_) for p_ in pools),
                             "per_class": np.bincount(labels, minlength=2).tolist()}
            if groups is not None:  # per source: n kept, their accuracy, the true positive rate of the source
                src = groups[kept]
                out["pseudo"]["per_source"] = [
                    {"n": int((src == g).sum()), "accuracy": float((labels[src == g] == truth[src == g]).mean()),
                     "per_class": np.bincount(labels[src == g], minlength=2).tolist(),
                     "n_unlabelled": len(p_), "positive_rate": float(p_.require_labels().mean())}
                    for g, p_ in enumerate(pools)]
                out["pseudo"]["repeats_of_test_texts_dropped"] = dropped
        saved: dict[str, np.ndarray] = {}
        for d, ds in {"val": val, **tests}.items():
            if base == "linear_probe":  # frozen encoder: test features are cached too
                with torch.no_grad():
                    logits = ctx.model.head(self.cache.features(ctx.model, torch.from_numpy(ds.x), place))
            else:
                logits = predict_logits(ctx.model, torch.from_numpy(ds.x), place)
            saved[d], saved[f"{d}_y"] = logits.float().numpy(), ds.require_labels()
            if domain in DOMAINS:  # the zero-shot model's logits on the same texts (cached frozen features)
                saved[f"zs_{d}"] = self._zs_logits(ds)
            if d != "val":
                m = report(ds.require_labels(), logits.argmax(1).numpy(), 2, ds.name)
                m.pop("confusion")
                out[d] = m
        if base == "zs_init" and options.get("wise") == "-1":  # the whole WiSE-FT path on the test sets
            chosen = ctx.info["zs_init"]["wise_alpha"]
            for a in ALPHAS:
                strat.interpolate_to(ctx.model, a)  # type: ignore[attr-defined]
                for d, ds in tests.items():
                    saved[f"a{a:.1f}_{d}"] = predict_logits(ctx.model, torch.from_numpy(ds.x), place).float().numpy()
            strat.interpolate_to(ctx.model, chosen)  # type: ignore[attr-defined]
        if self.logits_dir is not None:
            self.logits_dir.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(self.logits_dir / f"{strategy}-{domain}-{seed}.npz", **saved)  # type: ignore[arg-type]
        return out

    def split(self, domain: str, seed: int) -> Splits:
        """The seeded train / validation / test split of ``domain`` every cell draws from."""
        return split(self.data[domain], seed=seed, **SPLIT)

    def rest(self, domain: str, seed: int) -> ArrayDataset:
        """The training split's snippets that the k-shot draw left out, labels kept (the strategy never sees
        them: only ``x`` goes into the context; they score the pseudo-labels), as ``--unlabelled rest``."""
        pool = self.split(domain, seed).train
        keep = np.setdiff1d(np.arange(len(pool)), kshot_indices(pool, self.cfg["shots"], seed=seed))
        return pool.subset(keep, ":rest")

    def pools(self, strategy: str, domain: str, seed: int,
              tests: dict[str, ArrayDataset]) -> tuple[list[ArrayDataset], int]:
        """A self_train cell's unlabelled sources, labels kept for scoring (only ``x`` reaches the strategy):
        the ``rest`` of the k-shot draw, and for an adaptation row (UDA_DOMAINS) that domain's texts outside
        this seed's test draw of it, less any whose tokens repeat a test text (the data has repeats; their
        number is the second value)."""
        pools = [self.rest(domain, seed)]
        if strategy not in UDA_DOMAINS:
            return pools, 0
        other = self.data[UDA_DOMAINS[strategy]]
        seen = {_text_key(r) for ds in tests.values() for r in ds.x}
        idx = np.setdiff1d(np.arange(len(other)), self.test_indices(len(other), seed))
        kept = np.array([i for i in idx if _text_key(other.x[i]) not in seen], dtype=np.int64)
        return [*pools, other.subset(kept, ":unlabelled")], len(idx) - len(kept)

    def _zs_logits(self, ds: ArrayDataset) -> np.ndarray:
        """``s * cos(f(x), t_c)`` of the zero-shot classifier (prompt 'a {} review', s = 20)."""
        classes = class_embeddings(self.source, ["negative", "positive"], ZS_TEMPLATES)
        place = resolve_placement(self.source, "fp32", "off")
        feats = self.cache.features(self.source, torch.from_numpy(ds.x), place).float()
        feats = torch.nn.functional.normalize(feats, dim=-1)
        return (20.0 * feats @ classes.T).numpy()

    def val_zero_shot(self, templates: tuple[str, ...], seeds: list[int]) -> float:
        """Mean zero-shot accuracy on the movies *validation* draws of ``seeds`` (for choosing prompts)."""
        classes = class_embeddings(self.source, ["negative", "positive"], templates)
        place = resolve_placement(self.source, "fp32", "off")
        accs = []
        for s in seeds:
            _, val, _ = self.task("movies", s)
            pred = cosine_predict(self.cache.features(self.source, torch.from_numpy(val.x), place), classes)
            accs.append(float((pred == val.require_labels()).mean()))
        return statistics.mean(accs)

    def zero_shot(self, templates: tuple[str, ...], domain: str, seed: int) -> dict[str, Any]:
        _, _, tests = self.task(domain, seed)
        classes = class_embeddings(self.source, ["negative", "positive"], templates)
        place = resolve_placement(self.source, "fp32", "off")
        out: dict[str, Any] = {"train_seconds": 0.0}
        for d, ds in tests.items():
            feats = self.cache.features(self.source, torch.from_numpy(ds.x), place)
            m = report(ds.require_labels(), cosine_predict(feats, classes), 2, ds.name)
            m.pop("confusion")
            out[d] = m
        return out


def _text_key(tokens: np.ndarray) -> bytes:
    """A tokenised text ``[2, L]`` (ids, mask) as bytes of its unpadded ids: equal for the same text at any width."""
    return tokens[0][tokens[1] > 0].tobytes()


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _done(runs: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    return [r for r in runs if r is not None]


def import_cells(path: Path) -> dict[str, Any]:
    """The finished cells of an earlier ``text.json`` (main rows, derived rows included, and pair cells),
    keyed as this script's store keys them, so a machine without ``runs/`` re-renders them unchanged."""
    prev = json.loads(path.read_text())
    seeds = prev["settings"]["seeds"]
    cells: dict[str, Any] = {}
    # each movies block (main table, fresh-seed confirmation, adaptation) with the seeds its rows ran on
    for block, seeds_key in (("main", "seeds"), ("confirm", "confirm_seeds"), ("uda", "uda_seeds")):
        block_seeds = prev["settings"].get(seeds_key, [])
        for name, runs in (prev["results"].get(block) or {}).items():
            if len(runs) != len(block_seeds):
                raise SystemExit(f"--import {path}: {block} row {name!r} has {len(runs)} cells for seeds {block_seeds}")
            cells.update({f"{name}/movies/{s}": r for s, r in zip(block_seeds, runs, strict=True)})
    for key, runs in prev["results"]["pairs"].items():
        src, strat = key.split("/")
        cells.update({f"{strat}/{src}/{s}": r for s, r in zip(seeds, runs, strict=False)
                      if f"{strat}/{src}/{s}" not in cells})
    if prev["results"].get("template_choice"):
        cells["template_choice/movies/val"] = prev["results"]["template_choice"]
    return cells


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--seeds", default=None,
                    help="N (seeds 0..N-1) or a comma-separated list of seeds; default 3 (1 with --quick)")
    ap.add_argument("--work", default=None, help="where finished cells are kept (default runs/text[-quick])")
    ap.add_argument("--methods", default=None,
                    help="comma-separated subset of: zero_shot, " + ", ".join(RECIPES) + " (default: all)")
    ap.add_argument("--no-pairs", action="store_true", help="skip the domain-pair table")
    ap.add_argument("--merge", action="append", default=[], metavar="DIR",
                    help="also take finished cells from DIR/results.json (e.g. a parallel --no-main run's --work)")
    ap.add_argument("--import", dest="imports", action="append", default=[], metavar="TEXT_JSON",
                    help="also take finished cells from an earlier docs/text.json (cells already stored win)")
    ap.add_argument("--pick-templates", action="store_true",
                    help="print the zero-shot accuracy of each TEMPLATE_CANDIDATES set on the movies validation "
                         "draws (no test set is read) and exit")
    ap.add_argument("--render-only", action="store_true",
                    help="compute nothing: write the docs from the finished cells (missing ones are listed)")
    ap.add_argument("--no-main", action="store_true", help="skip the movies -> tweets table (pairs only)")
    ap.add_argument("--confirm-only", action="store_true",
                    help="only the fresh-seed confirmation of CONFIRM_ROW (CONFIRM_METHODS on --confirm-seeds)")
    ap.add_argument("--no-confirm", action="store_true", help="skip the fresh-seed confirmation")
    ap.add_argument("--no-uda", action="store_true",
                    help=f"skip the unsupervised-adaptation block ({', '.join(UDA_DOMAINS)})")
    ap.add_argument("--uda-seeds", default=",".join(map(str, UDA_SEEDS)),
                    help="comma-separated seeds of the unsupervised-adaptation block (default %(default)s)")
    ap.add_argument("--confirm-seeds", default=",".join(map(str, CONFIRM_SEEDS)),
                    help="comma-separated seeds of the confirmation (default %(default)s)")
    ap.add_argument("--pair-sources", default=None,
                    help="comma-separated training domains of the pair table (default: "
                         + ", ".join((*DOMAINS, SPAM)) + ")")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = settings(args.quick)
    cfg["confirm_seeds"] = [int(x) for x in args.confirm_seeds.split(",") if x.strip()]
    cfg["uda_seeds"] = [int(x) for x in args.uda_seeds.split(",") if x.strip()]
    if args.seeds is not None:
        cfg["seeds"] = ([int(x) for x in args.seeds.split(",") if x.strip()] if "," in args.seeds
                        else list(range(int(args.seeds))))
    methods = None if args.methods is None else {m.strip() for m in args.methods.split(",") if m.strip()}
    if methods is not None and methods - {"zero_shot", *RECIPES}:
        raise SystemExit(f"--methods: unknown {sorted(methods - {'zero_shot', *RECIPES})}")

    def wanted(m: str) -> bool:
        return methods is None or m in methods

    if args.pair_sources:
        cfg["pair_sources"] = [d.strip() for d in args.pair_sources.split(",") if d.strip()]
        if set(cfg["pair_sources"]) - {*DOMAINS, SPAM}:
            raise SystemExit(f"--pair-sources: unknown {sorted(set(cfg['pair_sources']) - {*DOMAINS, SPAM})}")
    if args.no_pairs:
        cfg["pair_sources"] = []
    if args.no_main:
        methods = {m for m in (methods or {"zero_shot", *RECIPES}) if m != "zero_shot"}
    if args.pick_templates:
        bench0 = Bench(cfg)
        scores = {name: bench0.val_zero_shot(t, cfg["seeds"]) for name, t in TEMPLATE_CANDIDATES.items()}
        for name, acc in scores.items():
            print(f"{acc:.3f}  {name}: {list(TEMPLATE_CANDIDATES[name])}")
        print("best on the movies validation draws:", max(scores, key=lambda k: scores[k]))
        return 0
    machine = machine_info()
    work = Path(args.work) if args.work else ROOT / "runs" / f"text{cfg['suffix']}"
    work.mkdir(parents=True, exist_ok=True)
    store = work / "results.json"
    done: dict[str, Any] = json.loads(store.read_text()) if store.exists() else {}
    def merge() -> None:  # cells finished by parallel runs (their own --work), re-read before each cell
        for extra in args.merge:
            path = Path(extra) / "results.json"
            other = json.loads(path.read_text()) if path.exists() else {}
            done.update({k: v for k, v in other.items() if k not in done})

    for prev in args.imports:
        done.update({k: v for k, v in import_cells(Path(prev)).items() if k not in done})
    merge()
    t0 = time.perf_counter()
    bench: Any = None if args.render_only else Bench(cfg)  # None: nothing is computed
    logits_dir = work / "logits"
    if bench is not None:
        bench.logits_dir = logits_dir

    missing: list[str] = []

    def cell(key: str, fn: Any) -> dict[str, Any] | None:
        if key not in done and not args.render_only:
            merge()
        if key not in done and args.render_only:
            missing.extend([key] if key not in missing else [])
            return None
        if key not in done:
            log(f"  {key} ...")
            c0 = time.perf_counter()
            done[key] = fn()
            done[key]["cell_seconds"] = time.perf_counter() - c0
            store.write_text(json.dumps(done, indent=1))
            log(f"  {key}: " + " ".join(f"{d} {m['accuracy']:.3f}" for d, m in done[key].items()
                                         if isinstance(m, dict) and "accuracy" in m))
        return done[key]

    results: dict[str, Any] = {"main": {}, "pairs": {}}
    zs = {"zero_shot 'a {} review'": ("a {} review",), "zero_shot (default templates)": None,
          "zero_shot (prompt ensemble)": ZS_ENSEMBLE}
    for name, tmpl in (zs.items() if wanted("zero_shot") else []):
        from transferkit.zeroshot import DEFAULT_TEMPLATES

        templates = tmpl or DEFAULT_TEMPLATES
        results["main"][name] = _done([cell(f"{name}/movies/{s}",
                                            lambda s=s, t=templates: bench.zero_shot(t, "movies", s))
                                       for s in cfg["seeds"]])
    if wanted("zero_shot"):  # how ZS_ENSEMBLE was chosen: validation draws only
        results["template_choice"] = cell("template_choice/movies/val", lambda: {"train_seconds": 0.0, "val_accuracy": {
            n: bench.val_zero_shot(t, cfg["seeds"]) for n, t in TEMPLATE_CANDIDATES.items()}})
    def movie_rows(strat: str, seeds: list[int], into: dict[str, Any]) -> None:
        """``strat``'s cells for ``seeds`` and the rows derived from their saved logits, into ``into``."""
        into[strat] = _done([cell(f"{strat}/movies/{s}", lambda s=s, st=strat: bench.run(st, "movies", s))
                             for s in seeds])
        # output-space ensembles, EM prior correction, other WiSE-FT weights: from the saved logits when they
        # are here, kept in the store as cells (so a render without runs/*/logits still shows them)
        for s in seeds:
            found = [q for d in (work, *map(Path, args.merge))
                     if (q := d / "logits" / f"{strat}-movies-{s}.npz").exists()]
            if found:
                rows = derived_cells(strat, found[0], done.get(f"{strat}/movies/{s}"))
                done.update({f"{row}/movies/{s}": c for row, c in rows.items()})
        if not args.render_only:
            store.write_text(json.dumps(done, indent=1))
        rows = dict.fromkeys(k.rsplit("/", 2)[0] for k in done
                             if k.startswith(strat + " ") and k.rsplit("/", 2)[1] == "movies")
        for row in rows:
            into[row] = _done([done.get(f"{row}/movies/{s}") for s in seeds])

    for strat in filter(wanted, [] if args.no_main or args.confirm_only else main_strategies()):
        movie_rows(strat, cfg["seeds"], results["main"])
    if not args.quick and not args.no_confirm:  # fresh seeds for the row chosen with the test numbers in view
        results["confirm"] = {}
        for strat in CONFIRM_METHODS:
            movie_rows(strat, cfg["confirm_seeds"], results["confirm"])
    if not args.quick and not args.no_uda and not args.confirm_only:  # unlabelled tweets: its own pre-registered block
        results["uda"] = {}
        for row in filter(wanted, UDA_DOMAINS):
            movie_rows(row, cfg["uda_seeds"], results["uda"])
    if args.confirm_only:
        cfg["pair_sources"] = []
    for src in cfg["pair_sources"]:
        for strat in filter(wanted, cfg["pair_strategies"]):
            results["pairs"][f"{src}/{strat}"] = _done([
                cell(f"{strat}/{src}/{s}", lambda s=s, st=strat, d=src: bench.run(st, d, s)) for s in cfg["seeds"]])
    wall = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(["benchmarks/text.py", *sys.argv[1:]])
    cfg["missing_cells"] = missing
    fewshot_json = ROOT / "docs" / "fewshot.json"  # contrastive and SetFit beside the user table (fewshot.py)
    fewshot = json.loads(fewshot_json.read_text(encoding="utf-8")) if fewshot_json.exists() else None
    (out / f"TEXT{cfg['suffix']}.md").write_text(render(results, cfg, machine, wall, command, fewshot,
                                                        rendered_only=bool(args.render_only)))
    (out / f"text{cfg['suffix']}.json").write_text(json.dumps(
        {"settings": cfg, "results": results, "machine": machine, "wall_seconds": wall,
         "recipes": {k: {"options": o, "train": v} for k, (o, v) in RECIPES.items()}}, indent=1))
    suffix = cfg["suffix"]
    log(f"wrote {out / f'TEXT{suffix}.md'} ({wall / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
