"""``self_train``: class-balanced selection, token padding, options, and a run on real digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from tests.conftest import as_tensors
from transferkit.api import unlabelled_sources
from transferkit.data import ArrayDataset, kshot, kshot_rest, load_dataset, split
from transferkit.data.base import kshot_indices
from transferkit.engine.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.models import TransferModel
from transferkit.options import to_dict
from transferkit.strategies import TransferContext, make_strategy, run_strategy
from transferkit.strategies.semi import (
    SelfTrainOptions,
    balanced_top,
    concat_inputs,
    grouped_top,
    lbfgs_probe,
    pool_inputs,
)
from transferkit.strategies.simple import LPFTOptions


def test_balanced_top_takes_the_most_confident_per_predicted_class() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55], [0.05, 0.95], [0.7, 0.3],
                      [0.2, 0.8]])
    # keep 0.5 of 8 over 2 classes: 2 per class; class 0 by confidence 0.9, 0.8; class 1: 0.95, 0.8
    assert balanced_top(probs, 0.5).tolist() == [0, 2, 5, 7]
    # a class predicted less often than its share gives what it has: 3 per class, class 1 has 4, class 0 has 4
    assert balanced_top(probs, 0.75).tolist() == [0, 2, 3, 5, 6, 7]
    only_zero = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    assert balanced_top(only_zero, 1.0).tolist() == [0]  # 1 per class (3 // 2); class 1 is never predicted


def test_grouped_top_gives_each_source_its_share() -> None:
    # source 0 (in-domain) is confident, source 1 (a shifted domain) less so: pooled, every slot goes to source 0
    probs = np.array([[0.99, 0.01], [0.98, 0.02], [0.03, 0.97], [0.04, 0.96],
                      [0.7, 0.3], [0.6, 0.4], [0.35, 0.65], [0.45, 0.55]])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert balanced_top(probs, 0.5).tolist() == [0, 1, 2, 3]
    assert grouped_top(probs, 0.5, groups).tolist() == [0, 2, 4, 6]  # 1 per class per source, most confident
    assert grouped_top(probs, 0.5, None).tolist() == balanced_top(probs, 0.5).tolist()


def test_pool_inputs_keeps_order_and_sources() -> None:
    a, b = torch.ones(2, 2, 3, dtype=torch.int64), torch.full((3, 2, 5), 7, dtype=torch.int64)
    x, groups = pool_inputs([a, b])
    assert x.shape == (5, 2, 5) and x[2:].eq(7).all() and groups is not None and groups.tolist() == [0, 0, 1, 1, 1]
    one, none = pool_inputs([a])
    assert one is a and none is None


def test_unlabelled_sources(tmp_path: Path) -> None:
    assert unlabelled_sources("rest") == ["rest"]
    assert unlabelled_sources("rest+vader-tweets") == ["rest", "vader-tweets"]
    odd = tmp_path / "a+b.csv"
    odd.write_text("text\nhello\n")
    assert unlabelled_sources(str(odd)) == [str(odd)]  # an existing path is one source, '+' and all
    with pytest.raises(ConfigError, match="empty source"):
        unlabelled_sources("rest++vader-tweets")


def test_concat_inputs_zero_pads_token_widths() -> None:
    a = torch.ones(2, 2, 3, dtype=torch.int64)
    b = torch.full((1, 2, 5), 7, dtype=torch.int64)
    c = concat_inputs(a, b)
    assert c.shape == (3, 2, 5)
    assert c[:2, :, 3:].eq(0).all() and c[:2, :, :3].eq(1).all() and c[2].eq(7).all()
    x = concat_inputs(torch.zeros(2, 1, 4, 4), torch.ones(3, 1, 4, 4))  # images: plain concatenation
    assert x.shape == (5, 1, 4, 4) and x[2:].eq(1).all()


def test_options_are_typed_in_every_form() -> None:
    """The CLI strings, typed values and Options instances give the same options; to_dict round-trips."""
    from_cli = make_strategy("self_train", {"base_options": "ft_lr_scale=1", "teacher_weight": "0.3",
                                            "templates": "a {} review,the {} one", "teacher": "sgd"}).options
    typed = SelfTrainOptions(base_options={"ft_lr_scale": 1.0}, teacher_weight=0.3,
                             templates=("a {} review", "the {} one"), teacher="sgd")
    assert from_cli == typed and from_cli.base_options == {"ft_lr_scale": 1.0}
    assert SelfTrainOptions(base_options=LPFTOptions(ft_lr_scale=1.0)).base_options == {"ft_lr_scale": 1.0}
    assert make_strategy("self_train", to_dict(typed)).options == typed
    assert make_strategy("self_train", {"teacher_weight": "accuracy"}).options.teacher_weight == "accuracy"
    assert make_strategy("self_train", typed).options is typed
    assert make_strategy("self_train", {"base_options": {"ft_lr_scale": 1}}).base.options.ft_lr_scale == 1.0
    with pytest.raises(ConfigError, match="templates is a list now: separate templates with ','"):
        make_strategy("self_train", {"templates": "a {} review|the {} one"})


@pytest.mark.parametrize("opts, needle", [({"keep": "0"}, "keep must be in"), ({"keep": "1.5"}, "keep must be in"),
                                          ({"zero_shot": "maybe"}, "zero_shot="), ({"base": "auto"}, "cannot be nested"),
                                          ({"base": "self_train"}, "cannot be nested"), ({"scale": "0"}, "scale"),
                                          ({"base_options": "bogus=1"}, "unknown strategy option 'bogus'"),
                                          ({"teacher_weight": "1.5"}, "teacher_weight="),
                                          ({"teacher_weight": "likelihood"}, "teacher_weight="),
                                          ({"teacher": "svm"}, "teacher="), ({"rounds": "0"}, "rounds")])
def test_bad_options_are_one_config_error(opts: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        make_strategy("self_train", opts)


def test_kshot_rest_is_the_unlabelled_complement(digits_ds: ArrayDataset) -> None:
    pool = split(digits_ds, seed=3).train
    drawn, rest = kshot(pool, 5, seed=3), kshot_rest(pool, 5, seed=3)
    assert rest.y is None and len(drawn) + len(rest) == len(pool)
    idx = kshot_indices(pool, 5, seed=3)
    assert np.array_equal(drawn.x, pool.x[idx])
    others = np.setdiff1d(np.arange(len(pool)), idx)
    assert np.array_equal(rest.x, pool.x[others])


def _ctx(model: TransferModel, digits_ds: ArrayDataset, n_unlabelled: int) -> tuple[TransferContext, np.ndarray]:
    sp = split(digits_ds, seed=0)
    rest_idx = np.setdiff1d(np.arange(len(sp.train)), kshot_indices(sp.train, 5, seed=0))[:n_unlabelled]
    model.reset_head(digits_ds.class_names)
    cfg = TrainConfig(epochs=2, batch_size=64, precision="fp32", progress="off", seed=0)
    ctx = TransferContext(model, {}, as_tensors(kshot(sp.train, 5, seed=0)), as_tensors(kshot(sp.val, 5, seed=0)), cfg,
                          lambda: model, probe_epochs=30, unlabelled=torch.from_numpy(sp.train.x[rest_idx]))
    return ctx, sp.train.require_labels()[rest_idx]


def test_self_train_on_real_digits(source_model: TransferModel, digits_ds: ArrayDataset) -> None:
    ctx, truth = _ctx(source_model, digits_ds, 400)
    labelled = ctx.train[0].clone()
    strategy = make_strategy("self_train", {"base": "full", "keep": "0.5"})
    run_strategy(strategy, ctx)
    info = ctx.info["self_train"]
    kept, labels = strategy.pseudo  # type: ignore[attr-defined]
    assert info["teacher"] == "probe"  # an image backbone: no zero-shot part
    assert info["n_unlabelled"] == 400 and info["n_pseudo"] == len(kept) == sum(info["pseudo_per_class"])
    assert max(info["pseudo_per_class"]) <= 20  # keep 0.5 of 400 over 10 classes: at most 20 each
    assert len(ctx.train[0]) == 50 + len(kept) and torch.equal(ctx.train[0][:50], labelled)
    assert torch.equal(ctx.train[1][50:], torch.from_numpy(labels))
    # a teacher trained on 50 real digits labels its most confident picks far above chance (10%)
    assert float((labels == truth[kept]).mean()) > 0.6
    assert [r.name for r in ctx.results] == ["finetune"]  # the default teacher (lbfgs) is no training phase
    assert info["probe"] == "lbfgs" and info["probe_c"] in 10.0 ** np.arange(-2, 3.5, 0.5)


def test_self_train_sgd_teacher_is_a_phase_and_the_head_restarts(source_model: TransferModel,
                                                                 digits_ds: ArrayDataset) -> None:
    ctx, truth = _ctx(source_model, digits_ds, 200)
    head0 = {k: v.clone() for k, v in ctx.model.head.state_dict().items()}
    strategy = make_strategy("self_train", {"base": "linear_probe", "teacher": "sgd"})
    seen: list[dict[str, torch.Tensor]] = []
    base_phases = strategy.base.phases  # type: ignore[attr-defined]

    def spy(c: TransferContext):  # type: ignore[no-untyped-def]
        seen.append({k: v.clone() for k, v in c.model.head.state_dict().items()})
        return base_phases(c)

    strategy.base.phases = spy  # type: ignore[attr-defined]
    run_strategy(strategy, ctx)
    assert [r.name for r in ctx.results] == ["teacher", "probe"]
    assert all(torch.equal(seen[0][k], head0[k]) for k in head0)  # the student's head starts where it was
    kept, labels = strategy.pseudo  # type: ignore[attr-defined]
    assert float((labels == truth[kept]).mean()) > 0.6


def test_self_train_needs_unlabelled_inputs(source_model: TransferModel, digits_ds: ArrayDataset) -> None:
    ctx, _ = _ctx(source_model, digits_ds, 10)
    ctx.unlabelled = None
    with pytest.raises(ConfigError, match="--unlabelled rest"):
        run_strategy(make_strategy("self_train"), ctx)
    ctx.unlabelled = torch.from_numpy(digits_ds.x[:10])
    with pytest.raises(ConfigError, match="zero-shot needs a text encoder"):
        run_strategy(make_strategy("self_train", {"zero_shot": "on"}), ctx)


def test_transfer_unlabelled_rest_end_to_end(source_run: Path, tmp_path: Path) -> None:
    res = transferkit.transfer(source_run, "digits8", strategy="self_train", shots=5, out=tmp_path / "st",
                               options={"base": "linear_probe"}, unlabelled="rest", epochs=1, precision="fp32",
                               progress="off")
    m = res.metrics
    spec = transferkit.load_run(source_run).model.spec
    pool = len(split(load_dataset("digits8", model=spec), seed=0).train)
    assert m["n_unlabelled"] == pool - 50
    assert m["strategy_info"]["self_train"]["n_pseudo"] > 0
    config = transferkit.load_run(tmp_path / "st").config
    assert config["unlabelled"] == "rest"
    with pytest.raises(ConfigError, match="no --shots was given"):
        transferkit.transfer(source_run, "digits8", strategy="self_train", unlabelled="rest", epochs=1)
    with pytest.raises(ConfigError, match="self_train needs unlabelled inputs: pass --unlabelled DATA, or --shots K"):
        transferkit.transfer(source_run, "digits8", strategy="self_train", epochs=1)
    res = transferkit.transfer(source_run, "digits8", strategy="self_train", shots=5, options={"base": "linear_probe"},
                               epochs=1, precision="fp32", progress="off")  # no --unlabelled: the rest of the draw
    assert res.metrics["n_unlabelled"] == pool - 50 and any("--unlabelled rest" in n for n in res.notes)
    res = transferkit.transfer(source_run, "digits8", strategy="linear_probe", shots=5, unlabelled="rest", epochs=1,
                               precision="fp32", progress="off")
    assert any("linear_probe ignores it" in n for n in res.notes)
    res = transferkit.transfer(source_run, "digits8", strategy="self_train", shots=5, unlabelled="digits8", epochs=1,
                               options={"base": "linear_probe"}, precision="fp32", progress="off")
    assert res.metrics["n_unlabelled"] == len(load_dataset("digits8", model=spec))  # labels dropped, all of it
    assert any("test accuracy is then transductive" in n for n in res.notes)
    res = transferkit.transfer(source_run, "digits8", strategy="self_train", shots=5, unlabelled="rest+digits8",
                               epochs=1, options={"base": "linear_probe"}, precision="fp32", progress="off")
    st = res.metrics["strategy_info"]["self_train"]
    assert res.metrics["n_unlabelled"] == pool - 50 + len(load_dataset("digits8", model=spec))
    assert len(st["pseudo_per_source"]) == 2 and all(sum(c) > 0 for c in st["pseudo_per_source"])
    assert sum(map(sum, st["pseudo_per_source"])) == st["n_pseudo"]
    assert any("test accuracy is then transductive" in n for n in res.notes)  # digits8 is one of the sources
    assert "transductive" not in transferkit.evaluate(tmp_path / "st", "fontdigits", save=False)["target"]
    res = transferkit.transfer(source_run, "digits8", strategy="self_train", shots=5, unlabelled="rest+fontdigits",
                               epochs=1, options={"base": "linear_probe"}, precision="fp32", progress="off",
                               out=tmp_path / "uda")
    assert "transductive" in transferkit.evaluate(tmp_path / "uda", "fontdigits", save=False)["target"]
    transferkit.transfer(source_run, "digits8", strategy="linear_probe", shots=5, unlabelled="rest+fontdigits",
                         epochs=1, precision="fp32", progress="off", out=tmp_path / "lp")  # recorded, never read
    assert "transductive" not in transferkit.evaluate(tmp_path / "lp", "fontdigits", save=False)["target"]


@pytest.mark.parametrize("binary", [False, True])
def test_lbfgs_probe_logits_give_its_probabilities_and_stay_finite(digits_ds: ArrayDataset, binary: bool) -> None:
    from scipy.special import softmax
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = digits_ds.x.reshape(len(digits_ds), -1)[:300].astype(np.float64)
    y = digits_ds.require_labels()[:300]
    y = (y > 4).astype(np.int64) if binary else y
    out, c = lbfgs_probe(x[:200], y[:200], {"rest": x[200:]})
    assert c in 10.0 ** np.arange(-2, 3.5, 0.5)
    assert out["rest"].shape == (100, 2 if binary else 10) and np.isfinite(out["rest"]).all()
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x[:200], y[:200])
    np.testing.assert_allclose(softmax(out["rest"], axis=1), ref.predict_proba(x[200:]), atol=1e-6)


def test_second_round_is_taught_by_the_first_student(source_model: TransferModel, digits_ds: ArrayDataset) -> None:
    ctx, truth = _ctx(source_model, digits_ds, 300)
    start = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    strategy = make_strategy("self_train", {"base": "linear_probe", "rounds": "2", "keep": "0.5"})
    run_strategy(strategy, ctx)
    info = ctx.info["self_train"]
    assert [r["teacher"] for r in info["rounds"]] == ["probe", "student"] and info["round"] == 2
    assert [r.name for r in ctx.results] == ["probe", "probe"]  # one student per round
    assert len(ctx.train[0]) == 50 + info["n_pseudo"]  # round 2's pseudo-labels replace round 1's
    kept, labels = strategy.pseudo  # type: ignore[attr-defined]
    assert float((labels == truth[kept]).mean()) > 0.6
    # the second student restarted from the pretrained weights: its backbone is untouched (linear_probe)
    end = ctx.model.state_dict()
    assert all(torch.equal(end[k], start[k]) for k in start if not k.startswith("head"))


def test_summary_lines_say_what_the_teacher_did() -> None:
    """What the CLI prints for self_train (and for auto when it chose self_train), from the recorded info."""
    st = {"teacher": "probe + zero-shot", "alpha": 0.7, "teacher_val_acc": 0.8125, "probe_val_acc": 0.75,
          "n_pseudo": 40, "n_unlabelled": 160, "pseudo_per_class": [20, 20], "pseudo_per_source": [[10, 10], [10, 10]],
          "base": "lp_ft", "n_labelled": 16}
    line = ("self_train: teacher probe + zero-shot, zero-shot weight 0.3 (validation accuracy 81.2%) pseudo-labelled "
            "40 of 160 unlabelled examples (per class [20, 20], per source [[10, 10], [10, 10]]); lp_ft trained on "
            "them and the 16 labelled")
    assert make_strategy("self_train").summary_lines({"self_train": st}) == [line]
    assert make_strategy("self_train").summary_lines({}) == []
    auto = {"choice": "self_train", "reason": "search", "signals": {"shots_per_class": 8, "chance": 0.5}}
    assert make_strategy("auto").summary_lines({"auto": auto, "self_train": st}) == [
        "auto: chose self_train (search); signals: shots_per_class=8, chance=0.5", line]


def test_lbfgs_probe_out_of_fold_logits_come_from_probes_fitted_without_each_row(digits_ds: ArrayDataset) -> None:
    """Each row's out-of-fold logits come from the probe (same C) fitted on the other folds: equal to a by-hand
    refit on the folds, and not the in-sample logits (which fit the row they score)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = digits_ds.x.reshape(len(digits_ds), -1)[:150].astype(np.float64)
    y = digits_ds.require_labels()[:150]
    out, c = lbfgs_probe(x, y, {"self": x}, seed=4, out_of_fold="oof")
    folds = StratifiedKFold(5, shuffle=True, random_state=5)  # a second shuffle: not the folds that picked C
    for fit_idx, held in folds.split(x, y):
        ref = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x[fit_idx], y[fit_idx])
        np.testing.assert_allclose(out["oof"][held], ref.decision_function(x[held]), atol=1e-6)
    assert (out["oof"].argmax(1) == y).mean() < (out["self"].argmax(1) == y).mean()


def test_self_train_without_a_validation_split_calibrates_out_of_fold(source_model: TransferModel,
                                                                       digits_ds: ArrayDataset) -> None:
    ctx, truth = _ctx(source_model, digits_ds, 300)
    ctx.val = None
    strategy = make_strategy("self_train", {"base": "linear_probe", "keep": "0.5"})
    run_strategy(strategy, ctx)
    info = ctx.info["self_train"]
    kept, labels = strategy.pseudo  # type: ignore[attr-defined]
    assert info["calibrated_on"] == "out-of-fold labelled" and info["n_pseudo"] == len(kept)
    assert float((labels == truth[kept]).mean()) > 0.6
    assert "out-of-fold labelled accuracy" in strategy.summary_lines(ctx.info)[0]
    ctx2, _ = _ctx(source_model, digits_ds, 50)
    ctx2.val = None
    with pytest.raises(ConfigError, match="teacher=sgd and rounds > 1 need a labelled validation split"):
        run_strategy(make_strategy("self_train", {"rounds": "2"}), ctx2)
    x, y = ctx2.train
    ctx2.train = (x[y != 3][:-1], y[y != 3][:-1])
    ctx2.train = (torch.cat([ctx2.train[0], x[y == 3][:1]]), torch.cat([ctx2.train[1], y[y == 3][:1]]))
    with pytest.raises(ConfigError, match=r"at least 2 labelled examples of every class .*\[5, 5, 5, 1, "):
        run_strategy(make_strategy("self_train"), ctx2)
