"""``auto``: choose the strategy from cheap signals, then (budget allowing) full-length trials of the candidates.

The rules, in order (each decision is recorded in ``ctx.info["auto"]`` with its reason):

1. **Useless source** -- the frozen source features are no better than chance in a nearest-class-mean
   probe (within two standard errors of ``1 / classes``): train ``scratch``. Fine-tuning from a
   backbone whose features collapsed cannot recover (negative transfer; Wang et al., CVPR 2019).
   Not for a text encoder: ``scratch`` would train a transformer from random weights on a few texts (the
   library trains no text backbone from scratch), and with few labels the test has little power (at 8
   per class, 32 cross-fitted texts: two standard errors of chance is 67.7%, which MiniLM's untuned
   sentiment features need not reach). For text, rule 1 is noted in the reason and the rules below decide.
2. **Mismatched features** -- the same probe on the raw inputs beats the one on the features by
   more than ``z`` paired standard errors (and by ``margin``): the source's features carry less about
   the target than the target data alone would learn, so train ``scratch`` (the negative-transfer
   guard of the issue's spec). Fine-tuning every layer freely (``full``) is the alternative when a
   search budget is given: distant sources' weights can still be a better start than random after
   fine-tuning (Yosinski et al., NeurIPS 2014), and the validation split decides. On the task suite's
   permuted-pixel source (docs/AUTO_SUITE.md) ``full`` and ``scratch`` were within their seed spread
   of each other, ``scratch`` the higher mean.
3. **Useful features** -- the prior by labelled examples per class ``k``: with ``k <= 2``, keep the
   source features (``linear_probe``, then WiSE-FT and LP-FT: Kumar et al., ICLR 2022; Wortsman et
   al., CVPR 2022); with ``3 <= k < 10``, fine-tune every layer under the L2-SP pull toward the
   source weights (Li et al., ICML 2018); with ``k >= 10``, fine-tune every layer from a probed head
   (LP-FT), which distorts the features less than a random head, without a weight anchor.

4. **Text encoders, few labels** -- ``contrastive`` (strategies/contrastive.py: the encoder tuned on
   in-batch pairs of the labelled texts, then a probe head) is a candidate for a text backbone with
   ``CONTRASTIVE_SHOTS[0] <= k < CONTRASTIVE_SHOTS[1]`` labelled examples per class, placed by
   :data:`TEXT_FEW`. The measurements behind the rule: on MiniLM / vader-movies at 8 per class it
   scored 0.663 over 5 seeds (docs/FEWSHOT.md) where the linear probe scored 0.589 / 0.579 at 5 / 10
   per class (docs/CURVES.md); at 64 per class it scored 0.741 (docs/FEWSHOT.md) against ``lp_ft``'s
   0.750 (docs/TEXT.md), so from 64 per class it is left out; between 10 and 63 it was not measured and
   joins last (only a search's validation accuracy can pick it). Below 3 per class a class has at most
   one positive pair and it was never measured: left out. Other modalities (image, audio): not measured
   by any auto rule yet, so their candidates are unchanged (the image rows of docs/AUTO_SUITE.md).
   At ``3 <= k < 10`` (:data:`TEXT_FEW`) it goes first, then ``lp_ft`` and ``full``, the strategies with
   a measured MiniLM recipe (strategies/recipes.py); ``l2sp``, the image prior's first candidate there,
   has none (it would train MiniLM at the library's 1e-3) and is left out for text. The order was set with
   the first seed of the auto suite's text tasks in view (docs/AUTO_SUITE.md, "Text tasks": every strategy
   beside auto, 3 seeds), so those tasks are design tasks for this rule, not a held-out test of it.
   The rule applies to a text encoder with a measured ``contrastive`` recipe (MiniLM); another text
   encoder (``hf``: a user's checkpoint) has no measured recipe for any strategy and keeps the image prior.

With unlabelled target inputs (``--unlabelled``) and informative source features (rule 3), ``self_train``
(``lp_ft`` on the labelled examples plus confidently pseudo-labelled ones; strategies/semi.py) joins the
candidates, last: on MiniLM / vader-movies it beat ``lp_ft`` by 3.3 pt over 6 seeds (docs/TEXT.md), on the
image rows of docs/IMAGE.md it was within the seed spread of ``lp_ft``, so only the search's validation
accuracy, never a rule, picks it.

With ``budget > 0`` and a validation split, a budgeted search compares the candidates at full
fidelity. Every trial runs a candidate's own recipe (its phases, learning-rate scales and finishing
step) for the run's full ``epochs``, from a copy of the run's starting model and with the run's seed,
and is scored by its validation accuracy. The candidates run in prior order: the first (the rules'
choice, which a budget of 0 would train anyway) always; each further one only while the time spent
on the further trials plus the longest trial so far fits in ``budget`` seconds, and while some
validation accuracy the next candidate could reach would change the winner (not, e.g., once the
leader is perfect on the validation split). Ranking: a candidate
earlier in the prior order (cheaper / closer to the source) is kept unless a later one beats it by
more than one standard error of the validation accuracy, ``sqrt(max(p (1 - p), 1/4n) / n)`` at the
best ``p`` over ``n`` validation samples. The winner's trial *is* the final model, so the model
returned is exactly the one that was measured. With one trial (no time for a second) the result is
the rules-only one.

Why not successive halving (Jamieson & Talwalkar, AISTATS 2016) over short rounds: its premise is
that a short run ranks candidates as a long one would, and here it does not. The recipes converge at
different speeds (``lp_ft`` starts from a fitted head, ``full`` and ``l2sp`` from a random one; with
5 shots per class a 3-epoch round is a handful of steps), so short rounds favour ``lp_ft``; on the
task suite (docs/AUTO_SUITE.md) rounds of 3 and 6 epochs from a shared probed head took budget 15 s
from 10/12 tasks within 1 pt of the best (rules only) down to 7/12. With three candidates and
trials that restart, halving would also cost more than running all three once at full length
(``3 E / 2 + 2 E`` epochs against ``3 E``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from transferkit.engine import distributed
from transferkit.engine.loop import Phase, evaluate_arrays
from transferkit.errors import ConfigError
from transferkit.options import opt
from transferkit.strategies.base import Strategy, TransferContext
from transferkit.strategies.catalog import make_strategy
from transferkit.strategies.recipes import recipe_for
from transferkit.strategies.runner import run_strategy, settle


@dataclass
class AutoOptions:
    budget: float = opt(0.0, "seconds for full-length trials of further candidates after the rules' choice "
                             "(0 = rules only)")
    margin: float = opt(0.02, "negative-transfer guard: the least gap (accuracy) by which raw inputs must beat "
                              "frozen features")
    z: float = opt(2.0, "negative-transfer guard: the gap must also exceed z paired standard errors")

    def __post_init__(self) -> None:
        if self.budget < 0 or not math.isfinite(self.budget):
            raise ConfigError(f"auto: budget must be >= 0 seconds, got {self.budget}")
        if self.margin < 0 or self.z < 0:
            raise ConfigError(f"auto: margin and z must be >= 0, got {self.margin}, {self.z}")


def nearest_mean_correct(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray) -> np.ndarray:
    """Per-sample correctness ``[N_te]`` of a nearest-class-mean classifier (cosine, centred on the mean
    of ``x_tr``) fitted on ``x_tr`` ``[N, D]``; a class absent from ``y_tr`` is never predicted."""
    mu = x_tr.mean(0)

    def norm(a: np.ndarray) -> np.ndarray:
        a = a - mu
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    classes = np.unique(y_tr)
    n_tr = norm(x_tr)
    means = np.stack([n_tr[y_tr == c].mean(0) for c in classes])
    return classes[(norm(x_te) @ means.T).argmax(1)] == y_te


def nearest_mean_accuracy(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray) -> float:
    """Accuracy of a nearest-class-mean classifier (cosine) fitted on ``x_tr``; shapes ``[N, D]``."""
    return float(nearest_mean_correct(x_tr, y_tr, x_te, y_te).mean())


def cross_fit_correct(a: np.ndarray, ya: np.ndarray, b: np.ndarray, yb: np.ndarray) -> np.ndarray:
    """Two-fold cross-fitting: fit on ``a`` and score ``b``, then fit on ``b`` and score ``a``;
    per-sample correctness ``[N_a + N_b]`` (every labelled sample is scored once, by a probe that
    never saw it -- twice the evidence of a single train/validation split)."""
    return np.concatenate([nearest_mean_correct(a, ya, b, yb), nearest_mean_correct(b, yb, a, ya)])


def paired_gap(c_raw: np.ndarray, c_feat: np.ndarray) -> tuple[float, float]:
    """Mean of ``d = c_raw - c_feat`` (per-sample 0/1 correctness) and its standard error
    ``std(d, ddof=1) / sqrt(n)`` (the paired, McNemar-style error of an accuracy difference)."""
    d = c_raw.astype(np.float64) - c_feat.astype(np.float64)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("inf")
    return float(d.mean()), se


def rank_with_tolerance(scores: dict[str, float], prior: list[str], tol: float) -> list[str]:
    """Candidates best first, where every score within ``tol`` of the best counts as a tie and ties
    keep the ``prior`` order (the cheaper / more conservative strategy first)."""
    best = max(scores.values())

    def key(n: str) -> tuple[bool, int, float]:
        tie = scores[n] >= best - tol
        return (not tie, prior.index(n) if tie else 0, -scores[n])

    return sorted(scores, key=key)


def val_tolerance(p: float, n: int) -> float:
    """One standard error of a validation accuracy ``p`` over ``n`` samples, ``sqrt(max(p (1 - p), 1/4n) / n)``
    (the floor, half a sample, keeps a perfect score from counting as exact)."""
    return math.sqrt(max(p * (1 - p), 0.25 / n) / n)


def rank_on_validation(scores: dict[str, float], prior: list[str], n: int) -> list[str]:
    """:func:`rank_with_tolerance` at one standard error (:func:`val_tolerance`) of the best score."""
    return rank_with_tolerance(scores, prior, val_tolerance(max(scores.values()), n))


def can_change(scores: dict[str, float], prior: list[str], n: int) -> bool:
    """Whether one more candidate (later in ``prior`` than those scored) could change the winner of
    :func:`rank_on_validation` with any validation accuracy ``k / n`` it might reach; checked exactly,
    score by score. False e.g. when the leader is perfect on the validation split."""
    leader, new = rank_on_validation(scores, prior, n)[0], "\0next"
    return any(rank_on_validation({**scores, new: k / n}, [*prior, new], n)[0] != leader for k in range(n + 1))


#: labelled examples per class ``[low, high)`` for which ``contrastive`` is a candidate on a text encoder (rule 4)
CONTRASTIVE_SHOTS = (3, 64)
#: the text candidates in prior order at ``3 <= k < 10`` (rule 4; measured on the auto suite's text tasks)
TEXT_FEW = ["contrastive", "lp_ft", "full"]


def candidates_for(shots: int, modality: str = "image") -> list[str]:
    """The prior order of strategies by labelled examples per class ``shots`` and the source's input
    ``modality``: the fewer labels, the closer to the source the model is kept (frozen features, then a
    weight-space anchor, then a probed-head start); for a text encoder with few labels, ``contrastive``
    (rule 4 of the module docstring)."""
    if shots <= 2:
        return ["linear_probe", "wise_ft", "lp_ft"]
    text = modality == "text" and CONTRASTIVE_SHOTS[0] <= shots < CONTRASTIVE_SHOTS[1]
    if shots < 10:
        return list(TEXT_FEW) if text else ["l2sp", "full", "lp_ft"]
    return ["lp_ft", "layerwise_lr", "full", *(["contrastive"] if text else [])]


class Auto(Strategy):
    """Pick a strategy from the data: shots per class, frozen-feature vs raw-input probes (negative
    transfer guard), then, within ``budget`` seconds, full-length trials of the candidates on validation accuracy."""

    name = "auto"
    Options = AutoOptions
    uses_unlabelled = True  # as a search candidate (self_train)

    def signals(self, ctx: TransferContext) -> dict[str, Any]:
        """Shots, LogME, and cross-fitted nearest-mean probes on the frozen features and raw inputs."""
        from transferkit.transferability import logme

        x, y = ctx.train
        place = ctx.placement()
        f_tr = ctx.cache.features(ctx.model, x, place).float().numpy()
        y_np = y.numpy()
        classes = int(y_np.max()) + 1
        sig: dict[str, Any] = {"shots_per_class": int(np.bincount(y_np).min()), "classes": classes,
                               "n_train": len(y_np), "parameters": sum(p.numel() for p in ctx.model.parameters()),
                               "modality": ctx.model.spec.modality,
                               "contrastive_recipe": recipe_for(ctx.model.spec.name, "contrastive") is not None}
        sig["logme_features"] = logme(f_tr.astype(np.float64), y_np)
        if ctx.val is None:
            return sig
        f_va = ctx.cache.features(ctx.model, ctx.val[0], place).float().numpy()
        yv = ctx.val[1].numpy()
        c_feat = cross_fit_correct(f_tr, y_np, f_va, yv)
        n = len(c_feat)
        chance = 1.0 / classes
        sig.update(probe_n=n, probe_features=float(c_feat.mean()), chance=chance,
                   chance_se=math.sqrt(chance * (1 - chance) / n))
        if torch.is_floating_point(x):  # raw inputs as a baseline representation (not for token ids)
            raw_tr, raw_va = x.reshape(len(x), -1).float().numpy(), ctx.val[0].reshape(len(yv), -1).float().numpy()
            c_raw = cross_fit_correct(raw_tr, y_np, raw_va, yv)
            gap, se = paired_gap(c_raw, c_feat)
            sig.update(probe_raw_inputs=float(c_raw.mean()), raw_minus_features=gap, gap_se=se)
        return sig

    def rules(self, sig: dict[str, Any]) -> tuple[list[str], str]:
        """The candidates in prior order and the reason (rules 1-4 of the module docstring)."""
        k, modality = sig["shots_per_class"], sig.get("modality", "image")
        prior = modality if sig.get("contrastive_recipe", True) else "image"  # rule 4 needs a measured recipe
        if "probe_features" not in sig:
            return candidates_for(k, prior), f"{k} labelled examples per class (no validation split: no probes)"
        pf, chance = sig["probe_features"], sig["chance"]
        at_chance = pf - chance <= 2 * sig["chance_se"]
        probe = f"{100 * pf:.1f}% nearest-mean vs chance {100 * chance:.1f}%, n={sig['probe_n']}"
        if at_chance and modality != "text":
            return ["scratch"], f"negative transfer guard: the frozen source features are at chance ({probe})"
        gap, se = sig.get("raw_minus_features", -1.0), sig.get("gap_se", 1.0)
        if gap > max(self.options.margin, self.options.z * se):
            return ["scratch", "full"], (
                f"negative transfer guard, mismatched features: raw inputs beat the frozen features by "
                f"{100 * gap:.1f} pt "
                f"(> {self.options.z:g} x paired SE {100 * se:.1f} pt; features {100 * pf:.1f}% vs chance "
                f"{100 * chance:.1f}%): the target data alone learns more than the source features carry, train from "
                f"scratch (fine-tuning all layers is the search's alternative)")
        raw = (f"raw-minus-features {100 * gap:+.1f} pt +- {100 * se:.1f}" if "raw_minus_features" in sig
               else "no raw-input probe on token ids")
        if at_chance:  # text (rule 1's exception)
            return candidates_for(k, prior), (
                f"{k} labelled examples per class (text source); the frozen features are within two standard errors "
                f"of chance in a nearest-mean probe ({probe}), but a text encoder has no from-scratch alternative, "
                f"so the prior by shots decides ({raw})")
        return candidates_for(k, prior), (f"{k} labelled examples per class ({modality or 'custom'} source); "
                                             f"source features informative ({100 * pf:.1f}% nearest-mean, {raw})")

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        t0 = time.perf_counter()
        sig = self.signals(ctx)
        # under torchrun every rank must take the same branches: rank 0's signals and timings decide
        sig = distributed.broadcast_object(sig)
        cands, reason = self.rules(sig)
        if ctx.unlabelled is not None and "scratch" not in cands and "self_train" not in cands:
            cands = [*cands, "self_train"]  # unlabelled inputs to learn from: the search may try it
        info: dict[str, Any] = {"signals": sig, "reason": reason, "candidates": cands}
        self._inner: Strategy | None = None
        if len(cands) > 1 and self.options.budget > 0 and ctx.val is not None:
            won, info["search"] = self._search(ctx, cands)
            info.update(choice=won.name, decision_seconds=time.perf_counter() - t0)
            ctx.model = won.ctx.model  # the winner's trial is the final model: nothing is trained again
            ctx.results.extend(won.ctx.results)
            ctx.info.update(won.ctx.info)
            ctx.info["auto"] = info
            return
        info.update(choice=cands[0], decision_seconds=time.perf_counter() - t0)
        ctx.info["auto"] = info
        self._inner = make_strategy(cands[0])
        settle(self._inner.recipe_strategy(), ctx)  # its settings, before it trains (trials: in run_strategy)
        yield from self._inner.phases(ctx)

    def finish(self, ctx: TransferContext) -> None:
        if self._inner is not None:  # a searched run's winner finished inside its trial
            self._inner.finish(ctx)

    def summary_lines(self, info: Mapping[str, Any]) -> list[str]:
        """The choice, its reason and the signals; then the chosen strategy's own lines."""
        auto = info.get("auto")
        if not auto:
            return []
        sig = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in auto["signals"].items())
        return [f"auto: chose {auto['choice']} ({auto['reason']}); signals: {sig}",
                *make_strategy(auto["choice"]).summary_lines(info)]

    def _trial(self, ctx: TransferContext, name: str) -> _Trial:
        """Candidate ``name``'s own recipe, full length, on a copy of the run's start, seeded as the run."""
        t = time.perf_counter()
        torch.manual_seed(ctx.cfg.seed)  # every trial draws the same random numbers (batch order, dropout)
        sub = replace(ctx, model=copy.deepcopy(ctx.model), cfg=replace(ctx.cfg, progress="off"), results=[], info={})
        run_strategy(make_strategy(name), sub)
        assert ctx.val is not None
        acc = evaluate_arrays(sub.model, ctx.val[0], ctx.val[1], ctx.placement(sub.model))[0]
        acc, seconds = distributed.broadcast_object((acc, time.perf_counter() - t))  # rank 0's, on every rank
        return _Trial(name, sub, acc, seconds)

    def _search(self, ctx: TransferContext, cands: list[str]) -> tuple[_Trial, dict[str, Any]]:
        """Full-length trials in prior order within the budget (module docstring); the winning trial and
        the record ``{"val_acc", "seconds", "skipped", "stopped", "tie_se", "n_val"}``."""
        assert ctx.val is not None
        n_val = len(ctx.val[1])
        trials = [self._trial(ctx, cands[0])]  # the rules' choice: trained with or without a budget
        spent, stop = 0.0, "all candidates ran"
        for name in cands[1:]:
            if not can_change({t.name: t.val_acc for t in trials}, cands[: len(trials)], n_val):
                stop = "no further score could change the winner"
                break
            if spent + max(t.seconds for t in trials) > self.options.budget:
                stop = "budget"
                break
            trials.append(self._trial(ctx, name))
            spent += trials[-1].seconds
        scores = {t.name: t.val_acc for t in trials}
        won = next(t for t in trials if t.name == rank_on_validation(scores, cands[: len(trials)], n_val)[0])
        return won, {"val_acc": scores, "seconds": {t.name: t.seconds for t in trials}, "skipped": cands[len(trials):],
                     "stopped": stop, "tie_se": val_tolerance(max(scores.values()), n_val), "n_val": n_val}


@dataclass
class _Trial:
    """One full-length trial: the candidate, its trained context, validation accuracy and cost in seconds."""

    name: str
    ctx: TransferContext
    val_acc: float
    seconds: float
