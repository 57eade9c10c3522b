"""The stages of an ``adapt`` run, public so benchmarks and users can compose them too.

``resolve(spec)`` -> :class:`AdaptPlan` (candidates typed, settings resolved with provenance; nothing
loaded) -> ``prepare(plan)`` -> :class:`Prepared` (the source model and the label-free data; the epoch
count an iteration budget gives) -> ``train_candidate`` for each candidate (one runner:
:func:`~transferkit.adaptation.base.run_method`) -> ``assess`` (validators, the label-free choice,
accuracy where labelled evaluation data was given, forgetting, A-distance) -> ``finish`` (the run
folder). :func:`transferkit.adaptation.api.adapt` is that composition.

Target labels are never read for training or selection: the target is loaded without labels, split
label-free (seeded permutation) into train / validation / held-out inputs, and checkpoints and methods
are chosen by label-free validators. Labels are read only to *evaluate* (``eval_data``).
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from transferkit.adaptation.adistance import proxy_a_distance
from transferkit.adaptation.base import AdaptContext, Method, run_method, validation_data
from transferkit.adaptation.candidates import Candidate, candidates, needs_source
from transferkit.adaptation.data import AdaptData, accuracy, features, load_data
from transferkit.adaptation.spec import (
    DEFAULT_ITERATIONS,
    SGD_DEFAULTS,
    TRAIN_DEFAULTS,
    TRAIN_DEFAULTS_WHY,
    AdaptSpec,
    restyle_default,
)
from transferkit.adaptation.validators import (
    LEAD_CONFIDENCE,
    RESAMPLES,
    VALIDATORS,
    agreement,
    pick_within_noise,
    resampled,
    score_all,
)
from transferkit.data import ReadOptions
from transferkit.engine.config import TrainConfig
from transferkit.engine.loop import PhaseResult, epochs_for_steps
from transferkit.errors import ConfigError
from transferkit.evaluation.evaluate import evaluate_model
from transferkit.models import TransferModel
from transferkit.pipeline import RunResult, data_identity, finish_run, phase_summary
from transferkit.pipeline.transfer import versions
from transferkit.runs import LoadedRun, RunDir, load_source
from transferkit.strategies.recipes import resolve_settings

#: What ``adapt`` adapts: a run directory or backbone name, a loaded run or a model.
Source = str | LoadedRun | TransferModel


@dataclass
class AdaptPlan:
    """A resolved ``adapt`` run: the spec, its candidates and its settings with where each came from.

    ``cfg`` holds every training setting but ``epochs`` when an iteration budget sets it
    (:func:`prepare` fills it in from the source training set's size)."""

    spec: AdaptSpec
    candidates: list[Candidate]
    cfg: TrainConfig
    iterations: int | None
    restyle_source: bool
    provenance: dict[str, str]


@dataclass
class Prepared:
    """The source model, its run's config and the data of an ``adapt`` run, with the final settings."""

    model: TransferModel
    source_config: dict[str, Any]
    data: AdaptData
    cfg: TrainConfig


@dataclass
class CandidateRun:
    """One trained candidate: its ``metrics.json`` record, the adapted model and its phases. ``resampled``: the
    selection validator on the bootstrap resamples of the target validation inputs (see
    :func:`~transferkit.adaptation.validators.resampled`), which :func:`choose` compares; ``None`` when not
    scored so (a paused candidate, or ``dev``)."""

    record: dict[str, Any]
    model: TransferModel
    phases: list[PhaseResult] = field(default_factory=list)
    resampled: np.ndarray | None = None


def _train_settings(spec: AdaptSpec) -> tuple[TrainConfig, dict[str, str]]:
    given = dict(spec.train)
    defaults = dict(TRAIN_DEFAULTS)
    if given.get("optimizer", TRAIN_DEFAULTS["optimizer"]) == "sgd":
        defaults.update(SGD_DEFAULTS)
    settings = resolve_settings("", "adapt", given, spec.seed, command="adapt", command_defaults=defaults)
    prov = {k: (TRAIN_DEFAULTS_WHY if v == "command default" else v) for k, v in settings.provenance.items()
            if k != "head_lr_scale"}
    return settings.cfg, prov


def resolve(spec: AdaptSpec) -> AdaptPlan:
    """The run ``spec`` describes, checked and resolved before anything loads: the candidates (options typed
    against each method's), the validator, and every setting with its provenance (user, adapt's default or
    the recipe that set it). Errors are one line naming the field."""
    VALIDATORS.get(spec.validator)
    cands = candidates(spec.method, spec.options, source_free=spec.source_data is None)
    if spec.source_data is None and needs_source(cands):
        need = [c.name for c in cands if getattr(c.method, "needs_source", True)]
        raise ConfigError(f"method {need[0]!r} trains on labelled source data: pass --source-data (methods that "
                          "need none declare needs_source = False)")
    if spec.source_data is None and spec.validator == "dev":
        raise ConfigError("validator 'dev' weighs the source risk: it needs --source-data (try im, snd or entropy)")
    cfg, prov = _train_settings(spec)
    iterations = spec.iterations
    if iterations is not None:
        prov["iterations"] = "user"
    elif "epochs" not in spec.train:
        iterations, prov["iterations"] = DEFAULT_ITERATIONS, "adapt default (docs/UDA.md's budget)"
    else:
        prov["iterations"] = "none: the user's epochs"
    if spec.restyle_source is None:
        restyle, prov["restyle_source"] = restyle_default(spec.source_data)
    else:
        restyle, prov["restyle_source"] = spec.restyle_source, "user"
    return AdaptPlan(spec, cands, cfg, iterations, restyle, prov)


def prepare(plan: AdaptPlan, source: tuple[TransferModel, dict[str, Any]] | None = None) -> Prepared:
    """The source model and its run's config (``source``: as :func:`~transferkit.runs.load_source` gives them;
    by default loaded from ``plan.spec.source``), the data, and with an iteration budget the epochs over the
    training set that give at least that many optimizer steps."""
    spec = plan.spec
    model, src_config = load_source(spec.source) if source is None else source
    for c in plan.candidates:
        c.method.check(model)
    data = load_data(model, src_config, spec, ReadOptions(spec.skip_bad_files))
    cfg = plan.cfg
    if plan.iterations is not None:
        n = len(data.source_train[0]) if data.source_train is not None else len(data.target_train)
        cfg = replace(cfg, epochs=epochs_for_steps(plan.iterations, n, cfg.batch_size))
        plan.provenance["epochs"] = f"iterations ({plan.iterations} steps over {n} training examples)"
    return Prepared(model, src_config, data, cfg)


def run_config(plan: AdaptPlan, prep: Prepared) -> dict[str, Any]:
    """``config.json``: the spec's fields at the values the run used (flat, as earlier runs wrote them), the
    full training settings, where each setting came from, what identifies the target data, the folder the run
    was started in (``cwd``: its relative paths are relative to it, for a replay with ``--config``), the versions."""
    spec = plan.spec
    return {"command": "adapt", **spec.to_dict(),
            "target_data_identity": data_identity(spec.target_data),
            "target_split": asdict(spec.target_split.with_seed(spec.seed)),
            "iterations": plan.iterations, "restyle_source": plan.restyle_source, "train": asdict(prep.cfg),
            "provenance": dict(sorted(plan.provenance.items())), "cwd": os.getcwd(), "versions": versions()}


def assess_before(prep: Prepared, seed: int) -> dict[str, Any]:
    """Scores of the source model before adaptation: source test accuracy, proxy A-distance, target accuracy
    where labelled evaluation data was given. Without source data the source scores are left out, with a note."""
    d, model = prep.data, prep.model
    out: dict[str, Any] = {"notes": []}
    if d.source_test is None:
        out["notes"].append("no source data: source accuracy, forgetting and A-distance not measured")
    else:
        out["source_before"] = accuracy(model, d.source_test)
        fs, ft = features(model, d.source_test.x), features(model, d.target_test)
        out["a_distance"] = {"before": proxy_a_distance(fs, ft, seed=seed)}
    if d.eval is not None:
        out["target_before"] = accuracy(model, d.eval)
    if d.eval_all is not None:
        out["target_all_before"] = accuracy(model, d.eval_all)
    return out


def train_candidate(plan: AdaptPlan, prep: Prepared, index: int, run: RunDir | None,
                    method: Method | None = None) -> CandidateRun:
    """Train candidate ``index`` from a fresh copy of the source model through :func:`run_method` (checkpoints,
    resume, NaN rollback and retry), then score it with every validator (and on labelled eval data).
    ``method``: train this instead of the candidate's own (e.g. a wrapper that pauses it; same checkpoints)."""
    cand, d = plan.candidates[index], prep.data
    model = copy.deepcopy(prep.model)
    torch.manual_seed(prep.cfg.seed)  # the method's new layers: from the run's seed, whatever ran before
    ctx = AdaptContext(model, d.source_train, d.source_val, d.target_train, d.target_val,  # type: ignore[arg-type]
                       prep.cfg, plan.spec.validator, augment=plan.restyle_source)
    ckpt = None if run is None else run.checkpoints / f"{index}-{cand.name}"
    t0 = time.perf_counter()
    results = run_method(method or cand.method, ctx, ckpt)
    return score_candidate(plan, prep, index, ctx, time.perf_counter() - t0, results)


def score_candidate(plan: AdaptPlan, prep: Prepared, index: int, ctx: AdaptContext, seconds: float,
                    results: list[PhaseResult] | None = None) -> CandidateRun:
    """Candidate ``index`` as ``ctx.model`` holds it now: its ``metrics.json`` record (every validator, and
    accuracy on labelled eval data) and the model."""
    cand, d, model = plan.candidates[index], prep.data, ctx.model
    vd = validation_data(model, ctx.placement(), d.target_val, d.source_val)
    names = [n for n in VALIDATORS if d.source_val is not None or n != "dev"]
    rec: dict[str, Any] = {"label": cand.label, "method": cand.name, "options": cand.options,
                           "validators": score_all(vd, names), "train_seconds": seconds, "info": ctx.info}
    if d.eval is not None:
        rec["target_accuracy"] = accuracy(model, d.eval)["accuracy"]
    if d.eval_all is not None:
        rec["target_accuracy_all"] = accuracy(model, d.eval_all)["accuracy"]
    return CandidateRun(rec, model, list(results or []), resampled(plan.spec.validator, vd, seed=plan.spec.seed))


def choose(runs: list[CandidateRun], validator: str, order: list[str]) -> tuple[CandidateRun, dict[str, Any]]:
    """The label-free choice among ``runs`` and how it was made (``metrics.json`` ``choice``).

    The ``validator``'s best, unless its lead over a candidate earlier in ``order`` (the plan's candidate labels:
    auto's defaults are ordered by their measured accuracy, :data:`~transferkit.adaptation.spec.AUTO_CANDIDATES`)
    is within resampling noise: it scores above that candidate in fewer than
    :data:`~transferkit.adaptation.validators.LEAD_CONFIDENCE` of the paired resamples of the target validation
    inputs (:func:`~transferkit.adaptation.validators.pick_within_noise`). Then the earliest such candidate is the
    choice (docs/ADAPT_AUTO.md, fontdigits->digits8 seed 2: ``mcc`` over ``self_training`` by a lead within noise
    had cost points). Without resampled scores (``dev``, ``snd``), the validator's best (the first on a tie); a
    non-finite score ranks last."""
    rank = {label: k for k, label in enumerate(order)}
    labels = [r.record["label"] for r in runs]
    i, b, tied = pick_within_noise([r.record["validators"][validator] for r in runs], [r.resampled for r in runs],
                                   [rank.get(label, len(order)) for label in labels])
    info: dict[str, Any] = {"validator": validator, "validator_best": labels[b],
                            "within_noise": [labels[j] for j in tied], "resamples": RESAMPLES,
                            "confidence": LEAD_CONFIDENCE}
    rb = runs[b].resampled
    if rb is not None:
        info["lead_share"] = {labels[j]: float(np.mean(rb > r.resampled))
                              for j, r in enumerate(runs) if j != b and r.resampled is not None}
    if i != b:
        info["note"] = (f"{validator}'s best, {labels[b]}, scores above {labels[i]} in only "
                        f"{100 * info['lead_share'][labels[i]]:.0f}% of {RESAMPLES} resamples of the target "
                        f"validation inputs (< {100 * LEAD_CONFIDENCE:.0f}%): within noise, the candidate earlier "
                        "in the candidates' order is chosen (auto's defaults: their measured accuracy)")
    return runs[i], info


def assess(plan: AdaptPlan, prep: Prepared, before: dict[str, Any], runs: list[CandidateRun]) -> dict[str, Any]:
    """``metrics.json``: the label-free choice among ``runs``, its scores against ``before``, every candidate's
    record, and (with labelled evaluation data and several candidates) how each validator's choice compares
    with the label oracle's."""
    spec, d = plan.spec, prep.data
    best, choice = choose(runs, plan.spec.validator, [c.label for c in plan.candidates])
    m: dict[str, Any] = {"method": spec.method, "validator": spec.validator, "seed": spec.seed,
                         **{k: v for k, v in before.items() if k != "notes"}}
    m.update(chosen=best.record["label"], validators=best.record["validators"], candidates=[r.record for r in runs])
    if len(runs) > 1:
        m["choice"] = choice
    if d.eval is not None:
        m["target"] = evaluate_model(best.model, d.eval, best.model.num_classes)
        if len(runs) > 1:
            m["selection"] = selection_report([r.record for r in runs], best.record["label"])
    if d.eval_all is not None:
        m["target_all"] = accuracy(best.model, d.eval_all)
    if d.source_test is not None:
        m["source_after"] = accuracy(best.model, d.source_test)
        m["forgetting"] = m["source_before"]["accuracy"] - m["source_after"]["accuracy"]
        m["a_distance"]["after"] = proxy_a_distance(features(best.model, d.source_test.x),
                                                    features(best.model, d.target_test), seed=spec.seed)
    m.update(n_source_train=0 if d.source_train is None else len(d.source_train[0]),
             n_target_train=len(d.target_train), n_target_val=len(d.target_val),
             phases=[phase_summary(r) for r in best.phases], notes=list(before["notes"]))
    if len(runs) > 1:
        if "note" in choice:
            m["notes"].append(choice["note"])
        m["agreement"] = agreement([r.record["validators"] for r in runs])
        note = disagreement_note(m["agreement"], [r.record["label"] for r in runs], spec.target_data)
        if note:
            m["notes"].append(note)
    return m


def disagreement_note(agr: dict[str, Any], labels: list[str], target_data: str) -> str | None:
    """The run's note when the validators disagree beyond ``agr["threshold"]`` (see
    :func:`~transferkit.adaptation.validators.agreement`): which validator picks what, and how to settle it
    with a few labels."""
    if not agr["disagree"]:
        return None
    picks = ", ".join(f"{v} picks {labels[i]}" for v, i in agr["picks"].items())
    return (f"the label-free validators disagree ({picks}; spread {agr['spread']:.2f} > {agr['threshold']}): "
            f"label a few target examples per class (`transferkit suggest-labels --source RUN --data {target_data} "
            "--budget 5x classes --out to_label.csv`) and check the choice on them")


def finish(run: RunDir | None, prep: Prepared, runs: list[CandidateRun], metrics: dict[str, Any]) -> RunResult:
    """Write the chosen model (with the source head beside it, for ``evaluate``), every candidate's history
    and the metrics into the run folder, and return the result."""
    best = next(r for r in runs if r.record["label"] == metrics["chosen"])
    history = [{"candidate": r.record["label"], **asdict(p)} for r in runs for p in r.phases]
    extra = {f"source_head.{k}": v for k, v in prep.model.head.state_dict().items()}
    finish_run(run, best.model, metrics, history, extra)
    return RunResult(best.model, metrics, run.path if run else None, history, list(metrics.get("notes", [])))


def selection_report(cands: list[dict[str, Any]], chosen: str | None = None) -> dict[str, Any]:
    """For each validator: its choice among ``cands`` (its highest score), the label-oracle's choice, whether they
    match and the accuracy given up (regret). ``match_rate`` is the fraction of validators matching. ``chosen``
    (the run's label-free choice, :func:`choose`): the same for it under ``"chosen"``."""
    accs = [c["target_accuracy"] for c in cands]
    oracle = int(np.argmax(accs))
    out: dict[str, Any] = {"oracle": cands[oracle]["label"], "oracle_accuracy": accs[oracle], "validators": {}}
    if chosen is not None:
        acc = next(c["target_accuracy"] for c in cands if c["label"] == chosen)
        out["chosen"] = {"choice": chosen, "matches": acc == accs[oracle], "regret": accs[oracle] - acc}
    for name in cands[0]["validators"]:
        pick = int(np.argmax([c["validators"][name] for c in cands]))
        out["validators"][name] = {"choice": cands[pick]["label"], "matches": accs[pick] == accs[oracle],
                                   "regret": accs[oracle] - accs[pick]}
    v = out["validators"]
    out["match_rate"] = sum(x["matches"] for x in v.values()) / max(1, len(v))
    return out
