"""``self_train``: few labels plus unlabelled examples of the same task, by pseudo-labelling.

A few-shot target often comes with many unlabelled examples (the rest of a corpus nobody
labelled). Self-training (Yarowsky, ACL 1995; Lee's pseudo-label, ICML-W 2013; the teacher /
student of Noisy Student, Xie et al., CVPR 2020) lets them count:

1. **teacher**: a linear probe on the frozen features of the labelled examples (one backbone
   pass per example, cached): logistic regression fitted to convergence by L-BFGS, its L2
   strength picked by cross-validated log-loss on the labelled examples (``teacher=lbfgs``, the
   linear-evaluation protocol of Kornblith et al., CVPR 2019; ``teacher=sgd`` uses the library's
   probe phase, early-stopped on validation, instead). On a text encoder it is mixed with the
   zero-shot classifier of the prompted label names (both temperature-scaled on the validation
   split, the mixing weight picked there too: output-space WiSE-FT, Wortsman et al., CVPR 2022),
   so the teacher starts from the encoder's own prior as well as from the few labels. Without a validation
   split (a run on exactly the labelled examples), the temperatures and the weight are fitted on the
   probe's out-of-fold outputs on the labelled examples instead (stratified folds, each example scored by
   the probe fitted on the others; ``teacher=lbfgs``, one round). The weight
   is the one of least validation negative log-likelihood (``teacher_weight=nll``): the teacher's
   job is to rank examples by confidence, so its probabilities matter, and on a 128-example
   validation draw accuracy moves in coarse steps;
2. **pseudo-labels**: the teacher labels every unlabelled example; the ``keep`` most confident
   fraction is kept, in equal numbers per class (class-balanced selection, as in Zou et al.,
   ECCV 2018, so a teacher's bias toward one class is not amplified);
3. **student**: the ``base`` strategy (LP-FT by default) trains on the labelled and the kept
   pseudo-labelled examples together, with early stopping and every other setting on the
   labelled validation split only when there is one (pseudo-labels never reach validation; without
   one, the base strategy's fixed schedule). With ``rounds=N`` the
   finished student (mixed with the zero-shot part on text, as the probe was) is the next teacher and
   a fresh student starts from the pretrained weights (Noisy Student's iteration; on MiniLM /
   vader-movies two rounds were no better than one, docs/TEXT.md row ``self_train@r2``).

History, so nobody repeats it: the first version used the SGD probe with the weight picked by
validation accuracy; on MiniLM / vader-movies that chose the probe alone (zero-shot weight 0) in 2
of 3 seeds. The weight by NLL came next, then the L-BFGS probe, after the pseudo-labels of the
SGD probe were seen to be less accurate (checked against the labels the benchmark holds back for
the unlabelled pool) than those of an L-BFGS logistic regression in a one-off check. The test
numbers of all three are in docs/TEXT.md (rows ``self_train@acc``, ``self_train@sgd``,
``self_train``).

The unlabelled inputs come from ``ctx.unlabelled`` (``transferkit transfer --unlabelled rest``:
the training split's examples that ``--shots`` left unlabelled; or any data set, whose labels are
ignored; ``rest+DATA`` pools several, ``ctx.unlabelled_groups`` says which is which, and each source
gets its own ``keep`` share per class: with unlabelled text of the domain the model will be used on,
that is unsupervised domain adaptation by self-training, as in Zou et al.'s class-balanced version).
Nothing here reads a test split. The kept indices and labels stay on the strategy
(``self.pseudo``) for a benchmark to score them against labels it holds.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from transferkit.engine.loop import Phase
from transferkit.errors import ConfigError
from transferkit.models.base import TransferModel
from transferkit.options import build, opt
from transferkit.strategies.base import Strategy, TransferContext, probe_phase
from transferkit.strategies.catalog import STRATEGIES, make_strategy
from transferkit.strategies.text_prior import ALPHAS, TEMPLATES, check_templates, select_alpha


@dataclass
class SelfTrainOptions:
    base: str = opt("lp_ft", "strategy the student trains with (labelled + pseudo-labelled)")
    base_options: dict[str, Any] = opt(factory=dict, help="the base strategy's options (its Options fields); "
                                                          "on the command line 'key=value,key=value'")
    keep: float = opt(0.25, "fraction of the unlabelled examples kept as pseudo-labelled, most confident first, equal "
                            "per class")
    zero_shot: Literal["auto", "on", "off"] = opt(
        "auto", "mix the zero-shot classifier of the label names into the teacher: auto (text encoders) | on | off")
    templates: tuple[str, ...] = opt(TEMPLATES, "prompt templates of the zero-shot part of the teacher")
    scale: float = opt(20.0, "logit scale s of the zero-shot part: s * cos(f(x), t_c)")
    rounds: int = opt(1, "teacher/student rounds: from the second on, the last student (mixed with the zero-shot part "
                         "on text) is the teacher and a new student starts again from the pretrained weights")
    teacher: Literal["lbfgs", "sgd"] = opt(
        "lbfgs", "the teacher's probe: lbfgs (logistic regression to convergence, L2 strength by cross-validated "
                 "log-loss on the labelled examples) | sgd (the library's probe phase, early-stopped on validation)")
    teacher_weight: float | Literal["nll", "accuracy"] = opt(
        "nll", "weight of the probe against the zero-shot part: nll | accuracy (the best on the validation split by "
               "that measure, or on the probe's out-of-fold outputs without one) | a number in [0, 1] (1 = probe "
               "only)")

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise ConfigError(f"self_train: keep must be in (0, 1], got {self.keep}")
        if self.zero_shot not in ("auto", "on", "off"):
            raise ConfigError(f"self_train: zero_shot={self.zero_shot!r} is not one of auto, on, off")
        if self.base in ("self_train", "auto"):
            raise ConfigError(f"self_train: base={self.base!r} cannot be nested; use a training strategy such as lp_ft")
        if self.scale <= 0:
            raise ConfigError(f"self_train: scale must be positive, got {self.scale}")
        if self.rounds < 1:
            raise ConfigError(f"self_train: rounds must be at least 1, got {self.rounds}")
        if self.teacher not in ("lbfgs", "sgd"):
            raise ConfigError(f"self_train: teacher={self.teacher!r} is not one of lbfgs, sgd")
        w = self.teacher_weight
        if w not in ("nll", "accuracy") and not (isinstance(w, (int, float)) and 0 <= w <= 1):
            raise ConfigError(f"self_train: teacher_weight={w!r} is not nll, accuracy or a number in [0, 1]")
        check_templates("self_train", self.templates)
        self.base_options = self._typed_base_options()

    def _typed_base_options(self) -> dict[str, Any]:
        """``base_options`` checked against the base strategy's ``Options`` and typed (the keys given only)."""
        raw = self.base_options
        if dataclasses.is_dataclass(raw) and not isinstance(raw, type):  # the base's Options instance
            raw = {f.name: getattr(raw, f.name) for f in dataclasses.fields(raw)}
        cls = STRATEGIES.get(self.base).Options
        try:
            built: Any = build(cls, raw, "strategy")
        except ConfigError as e:
            raise ConfigError(f"self_train base_options: {e}") from None
        return {k: getattr(built, k) for k in raw}


def balanced_top(probs: np.ndarray, keep: float) -> np.ndarray:
    """Indices (sorted) of the ``keep * N / K`` most confident examples predicted as each class ``[N, K]``
    (fewer for a class predicted less often)."""
    pred, conf = probs.argmax(1), probs.max(1)
    per_class = int(keep * len(probs) / probs.shape[1])
    picked = [idx[np.argsort(-conf[idx], kind="stable")[:per_class]]
              for idx in (np.flatnonzero(pred == c) for c in range(probs.shape[1]))]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def grouped_top(probs: np.ndarray, keep: float, groups: np.ndarray | None) -> np.ndarray:
    """:func:`balanced_top` within each source of a pooled unlabelled set (``groups[i]``: the source of
    example ``i``; ``None``: one source), so a domain the teacher is less sure of (a shifted target)
    still gets its share of pseudo-labels instead of losing every slot to the in-domain examples."""
    if groups is None:
        return balanced_top(probs, keep)
    picked = [idx[balanced_top(probs[idx], keep)] for idx in (np.flatnonzero(groups == g) for g in np.unique(groups))]
    return np.sort(np.concatenate(picked))


def concat_inputs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` then ``b`` along the batch; integer token arrays ``[N, 2, L]`` of two widths are zero-padded
    (id 0 and mask 0: padding) to the wider one."""
    if a.shape[1:] != b.shape[1:] and not a.is_floating_point() and a.shape[1:-1] == b.shape[1:-1]:
        width = max(a.shape[-1], b.shape[-1])
        a, b = (torch.nn.functional.pad(t, (0, width - t.shape[-1])) for t in (a, b))
    return torch.cat([a, b.to(a.dtype)])


def pool_inputs(xs: list[torch.Tensor]) -> tuple[torch.Tensor, np.ndarray | None]:
    """Several unlabelled sources as one input tensor (:func:`concat_inputs`, in order) and the source
    index of each row (``None`` for a single source: nothing to tell apart)."""
    x = xs[0]
    for more in xs[1:]:
        x = concat_inputs(x, more)
    return x, (np.repeat(np.arange(len(xs)), [len(v) for v in xs]) if len(xs) > 1 else None)


def lbfgs_probe(x: np.ndarray, y: np.ndarray, score: dict[str, np.ndarray], seed: int = 0,
                cs: tuple[float, ...] = tuple(10.0 ** np.arange(-2, 3.5, 0.5)), out_of_fold: str | None = None
                ) -> tuple[dict[str, np.ndarray], float]:
    """Multinomial logistic regression on standardised features, fitted to convergence by L-BFGS, its
    inverse L2 strength ``C`` picked from ``cs`` by stratified cross-validated log-loss on ``(x, y)``
    (the linear-evaluation protocol: Kornblith et al., CVPR 2019; Radford et al., ICML 2021). Returns
    its logits ``[N, K]`` (softmax = its probabilities) for each array of ``score`` and the chosen ``C``.
    ``out_of_fold``: the key under which the logits of ``x`` itself are returned instead, each row from the
    probe (same ``C``) fitted on the other folds of a second shuffle (not the folds that picked ``C``); ``C``
    itself was picked on ``x``, so they are slightly more confident than a held-out split's would be."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def probe(c: float) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))

    folds = int(min(5, np.bincount(y).min()))
    c = 1.0  # one example of some class: no folds to choose on
    if folds >= 2:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        loss = [-float(np.mean(cross_val_score(probe(c), x, y, cv=cv, scoring="neg_log_loss"))) for c in cs]
        c = float(cs[int(np.argmin(loss))])
    fitted = probe(c).fit(x, y)

    def logits(d: np.ndarray) -> np.ndarray:  # finite where predict_log_proba gives log(0) = -inf
        return np.stack([-d / 2, d / 2], 1) if d.ndim == 1 else d  # two classes: one margin, softmax-equivalent

    out = {k: logits(fitted.decision_function(v)) for k, v in score.items()}
    if out_of_fold is not None:
        if folds < 2:
            raise ConfigError(f"out-of-fold logits need at least 2 examples of every class, got {np.bincount(y)}")
        out[out_of_fold] = logits(cross_val_predict(probe(c), x, y, method="decision_function",
                                                    cv=StratifiedKFold(folds, shuffle=True, random_state=seed + 1)))
    return out, c


class SelfTrain(Strategy):
    """Self-training: a (probe + zero-shot) teacher pseudo-labels unlabelled data, a student trains on both."""

    name = "self_train"
    Options = SelfTrainOptions
    uses_unlabelled = True
    needs_unlabelled = True  # transfer() gives it the rest of a --shots draw when no --unlabelled is named

    def __init__(self, options: SelfTrainOptions | None = None) -> None:
        super().__init__(options)
        self.base = self._new_base()
        self.pseudo: tuple[np.ndarray, np.ndarray] | None = None
        self._pretrained: TransferModel | None = None

    def _new_base(self) -> Strategy:
        return make_strategy(self.options.base, self.options.base_options)

    def recipe_strategy(self) -> str:
        return self.base.name  # the student's recipe (an sgd teacher probes at its head rate too)

    def phases(self, ctx: TransferContext) -> Iterator[Phase]:
        if ctx.unlabelled is None or len(ctx.unlabelled) == 0:
            raise ConfigError("self_train needs unlabelled inputs: pass --unlabelled rest (the examples --shots left "
                              "unlabelled) or --unlabelled DATA")
        if ctx.val is None and (self.options.teacher == "sgd" or self.options.rounds > 1):
            raise ConfigError("self_train: teacher=sgd and rounds > 1 need a labelled validation split (the default "
                              "teacher, lbfgs with one round, calibrates on out-of-fold predictions instead)")
        counts = np.bincount(ctx.train[1].numpy(), minlength=ctx.model.num_classes)
        if ctx.val is None and counts.min() < 2:
            raise ConfigError(f"self_train without a validation split needs at least 2 labelled examples of every "
                              f"class (its teacher is calibrated on out-of-fold predictions); per class: "
                              f"{counts.tolist()}")
        start = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        if self.options.rounds > 1:  # the zero-shot part of later teachers reads the pretrained encoder
            self._pretrained = copy.deepcopy(ctx.model).eval()
        if self.options.teacher == "sgd":
            yield probe_phase(ctx, name="teacher")
        probs, info = self._teacher(ctx)
        ctx.model.load_state_dict(start)  # the student starts as the base strategy would without a teacher
        labelled = ctx.train
        history = []
        for r in range(self.options.rounds):
            if r > 0:  # the finished student teaches; the next one starts from the pretrained weights again
                self.base.finish(ctx)
                probs, info = self._teacher(ctx, student=True)
                ctx.model.load_state_dict(start)
                self.base = self._new_base()
            groups = ctx.unlabelled_groups
            kept = grouped_top(probs, self.options.keep, groups)
            labels = probs[kept].argmax(1)
            self.pseudo = (kept, labels)
            x, y = labelled
            ctx.train = (concat_inputs(x, ctx.unlabelled[torch.from_numpy(kept)]),
                         torch.cat([y, torch.from_numpy(labels).to(y.dtype)]))
            info.update(round=r + 1, n_unlabelled=len(probs), n_pseudo=len(kept),
                        pseudo_per_class=np.bincount(labels, minlength=probs.shape[1]).tolist(),
                        teacher_predicted=np.bincount(probs.argmax(1), minlength=probs.shape[1]).tolist(),
                        n_labelled=len(y), base=self.base.name)
            if groups is not None:  # pseudo-labels per class of each unlabelled source, in --unlabelled order
                info["pseudo_per_source"] = [np.bincount(labels[groups[kept] == g], minlength=probs.shape[1]).tolist()
                                             for g in range(int(groups.max()) + 1)]
            ctx.info["unlabelled_read"] = len(probs)  # evaluate() flags scores on data read this way
            history.append(dict(info))
            ctx.info["self_train"] = {**info, "rounds": history} if self.options.rounds > 1 else info
            yield from self.base.phases(ctx)

    def _teacher(self, ctx: TransferContext, student: bool = False) -> tuple[np.ndarray, dict[str, object]]:
        """The teacher's class probabilities on ``ctx.unlabelled`` and what it was made of: the probe, or
        with ``student`` the trained model itself (the zero-shot part uses the pretrained encoder)."""
        from transferkit.engine.precision import predict_logits
        from transferkit.zeroshot import class_embeddings, fit_temperature, log_softmax_np, output_ensemble

        o, model = self.options, ctx.model
        assert ctx.unlabelled is not None
        place = ctx.placement()
        # the teacher is calibrated (temperatures, the zero-shot weight) on the validation split; without one,
        # on the labelled examples' out-of-fold probe outputs (each predicted by a probe fitted without it)
        cal_x, cal_y = ctx.val if ctx.val is not None else ctx.train
        if student:  # its outputs first; the pretrained encoder's features (cached) for the zero-shot part
            assert ctx.val is not None  # rounds > 1 need one (checked in phases)
            probe = {"val": predict_logits(model, ctx.val[0], place).numpy(),
                     "unl": predict_logits(model, ctx.unlabelled, place, desc="pseudo-labelling").numpy()}
            assert self._pretrained is not None
            model = self._pretrained
        feats = {"val": ctx.cache.features(model, cal_x, place).float(),
                 "unl": ctx.cache.features(model, ctx.unlabelled, place, desc="pseudo-labelling").float()}
        y_val = cal_y.numpy()
        info: dict[str, object] = {"teacher": "student" if student else "probe", "probe": o.teacher,
                                   "calibrated_on": "validation" if ctx.val is not None else "out-of-fold labelled"}
        if not student and o.teacher == "lbfgs":
            train = ctx.cache.features(model, ctx.train[0], place).float().numpy()
            probe, info["probe_c"] = lbfgs_probe(train, ctx.train[1].numpy(), {k: f.numpy() for k, f in feats.items()},
                                                 seed=ctx.cfg.seed, out_of_fold="val" if ctx.val is None else None)
        elif not student:
            with torch.no_grad():
                probe = {k: model.head(f.to(next(model.head.parameters()).device)).float().cpu().numpy()
                         for k, f in feats.items()}
        t_p = fit_temperature(probe["val"], y_val)
        lp = {k: log_softmax_np(v, t_p) for k, v in probe.items()}
        use_zs = o.zero_shot == "on" or (o.zero_shot == "auto" and model.spec.modality == "text")
        info["probe_val_acc"] = float((lp["val"].argmax(1) == y_val).mean())
        if not use_zs:
            return np.exp(lp["unl"]), info
        classes = class_embeddings(model, model.spec.class_names, list(o.templates))
        zs = {k: (o.scale * torch.nn.functional.normalize(f, dim=-1) @ classes.T).numpy() for k, f in feats.items()}
        t_z = fit_temperature(zs["val"], y_val)
        lz = {k: log_softmax_np(v, t_z) for k, v in zs.items()}
        mixed = {f"{a:.1f}": output_ensemble(lz["val"], lp["val"], a) for a in ALPHAS}
        val_acc = {k: float((v.argmax(1) == y_val).mean()) for k, v in mixed.items()}
        # the mixture as a distribution: renormalised, its mean negative log-likelihood of the validation labels
        val_nll = {k: float(-(log_softmax_np(v)[np.arange(len(y_val)), y_val]).mean()) for k, v in mixed.items()}
        if o.teacher_weight == "accuracy":
            alpha = select_alpha(val_acc, len(y_val), "best")
        elif o.teacher_weight == "nll":
            alpha = float(min(val_nll, key=lambda k: (val_nll[k], float(k))))
        else:
            alpha = float(o.teacher_weight)
        chosen = float((output_ensemble(lz["val"], lp["val"], alpha).argmax(1) == y_val).mean())
        info.update(teacher="probe + zero-shot", templates=list(o.templates), alpha=alpha,
                    weight_rule=o.teacher_weight, teacher_val_acc=chosen,
                    zero_shot_val_acc=val_acc["0.0"], val_nll=val_nll)
        return np.exp(output_ensemble(lz["unl"], lp["unl"], alpha)), info

    def finish(self, ctx: TransferContext) -> None:
        self.base.finish(ctx)

    def summary_lines(self, info: Mapping[str, Any]) -> list[str]:
        """The teacher, its validation accuracy and the pseudo-labels it kept (per class, per source)."""
        st = info.get("self_train")
        if not st:
            return []
        mix = f", zero-shot weight {1 - st['alpha']:.1f}" if "alpha" in st else ""
        per_source = f", per source {st['pseudo_per_source']}" if "pseudo_per_source" in st else ""
        return [f"self_train: teacher {st['teacher']}{mix} ({st.get('calibrated_on', 'validation')} accuracy "
                f"{100 * st.get('teacher_val_acc', st['probe_val_acc']):.1f}%) pseudo-labelled {st['n_pseudo']} of "
                f"{st['n_unlabelled']} unlabelled examples (per class {st['pseudo_per_class']}{per_source}); "
                f"{st['base']} trained on them and the {st['n_labelled']} labelled"]

    def trained_groups(self, model: TransferModel) -> list[str]:
        return self.base.trained_groups(model)

    def save_artifacts(self, directory: Path) -> list[Path]:
        return self.base.save_artifacts(directory)
