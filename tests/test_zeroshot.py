"""Zero-shot / prototype baselines, their metrics, the ``zeroshot`` command and ``zs_init``."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from transferkit.cli import main
from transferkit.data import ArrayDataset, load_dataset
from transferkit.engine.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.models import TransferModel, from_pretrained
from transferkit.strategies import TransferContext, make_strategy, run_strategy
from transferkit.zeroshot import (
    balanced_accuracy,
    class_embeddings,
    cosine_predict,
    majority_rate,
    nearest_class_mean,
    prototypes,
    report,
    zero_shot,
)


@pytest.fixture(scope="module")
def minilm() -> TransferModel:
    return from_pretrained("minilm").eval()


def _slice(name: str, per_class: int, start: int = 0) -> ArrayDataset:
    ds = load_dataset(name)
    y = ds.require_labels()
    idx = np.concatenate([np.flatnonzero(y == c)[start : start + per_class] for c in range(ds.num_classes)])
    return ds.subset(np.sort(idx))


@pytest.fixture(scope="module")
def tweets_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 real VADER tweets (20 per class) as a user CSV."""
    ds = _slice("vader-tweets", 20)
    path = tmp_path_factory.mktemp("zs") / "tweets.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([t, ds.class_names[c]] for t, c in zip(ds.x, ds.require_labels()))
    return path


def test_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 3, 200))
    out = report(y, pred, 3)
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert out["majority_rate"] == pytest.approx(np.bincount(y).max() / 200)
    assert balanced_accuracy([[3, 1], [0, 0]]) == 0.75  # an absent class does not count
    assert majority_rate(np.array([1, 1, 0])) == pytest.approx(2 / 3)


def test_prototypes_are_normalised_class_means() -> None:
    f = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    p = prototypes(f, np.array([0, 1, 1]), 2)
    torch.testing.assert_close(p, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert list(cosine_predict(torch.tensor([[1.0, 0.2], [0.1, 1.0]]), p)) == [0, 1]


def test_zero_shot_beats_chance_on_real_tweets(minilm: TransferModel, tweets_csv: Path) -> None:
    out = zero_shot(minilm, str(tweets_csv), templates=("a {} review",), split_part="all")
    assert out["n"] == 40 and out["majority_rate"] == 0.5
    assert out["accuracy"] >= 0.7, out  # chance is 0.5
    named = zero_shot(minilm, str(tweets_csv), "negative=bad,positive=good", split_part="all")
    assert named["labels"] == ["bad", "good"] and named["accuracy"] > 0.6
    with pytest.raises(ConfigError, match="--labels: 3 names given for the 2 classes"):
        zero_shot(minilm, str(tweets_csv), "a,b,c", split_part="all")
    with pytest.raises(ConfigError, match="must contain"):
        zero_shot(minilm, str(tweets_csv), templates=("no slot",), split_part="all")


def _write_jsonl(path: Path, texts: list[str], labels: list[object]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in zip(texts, labels, strict=True)),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def news(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    """30 real 20 Newsgroups posts: 15 from rec.sport.hockey ("sports"), 15 from talk.politics.misc ("politics")."""
    from transferkit.data.text import newsgroups

    ds = newsgroups(False)
    y = ds.require_labels()
    texts: list[str] = []
    labels: list[str] = []
    for group, name in (("rec.sport.hockey", "sports"), ("talk.politics.misc", "politics")):
        idx = np.flatnonzero(y == ds.class_names.index(group))[:15]
        texts += [str(t) for t in ds.x[idx]]
        labels += [name] * len(idx)
    return texts, labels


def test_labels_are_matched_to_classes_by_name_never_by_position(minilm: TransferModel,
                                                                 news: tuple[list[str], list[str]], tmp_path: Path) -> None:
    """Before the fix the names were paired with the sorted classes by position: one order scored
    the inverse of the other (issue 17, item 5: 3.3% vs 96.7% on a weather/sports file)."""
    texts, labels = news
    named = _write_jsonl(tmp_path / "news.jsonl", texts, labels)  # classes: politics, sports
    a = zero_shot(minilm, str(named), "sports,politics", split_part="all")
    b = zero_shot(minilm, str(named), "politics,sports", split_part="all")
    assert a["accuracy"] == b["accuracy"] >= 0.8, (a["accuracy"], b["accuracy"])
    assert a["label_map"] == b["label_map"] == {"politics": "politics", "sports": "sports"}
    assert zero_shot(minilm, str(named), "Sports,POLITICS", split_part="all")["accuracy"] == a["accuracy"]
    numeric = _write_jsonl(tmp_path / "coded.jsonl", texts, [int(lab == "sports") for lab in labels])  # classes 0, 1
    c = zero_shot(minilm, str(numeric), "1=sports,0=politics", split_part="all")
    assert c["accuracy"] == a["accuracy"] and c["label_map"] == {"0": "politics", "1": "sports"}
    assert zero_shot(minilm, str(named), "sports=hockey", split_part="all")["labels"] == ["politics", "hockey"]


@pytest.mark.parametrize(("labels", "message"), [
    ("sports,weather", r"--labels: 'weather' is not a class of .*news.jsonl \(classes: politics, sports\)"),
    ("sport,politics", r"'sport' is not a class .*did you mean 'sports'\?"),
    ("1=sports,0=politics", r"'1' is not a class"),
    ("sports,sports", r"class 'sports' of .* is given twice"),
    ("sports=,politics", r"empty name"),
    ("sports", r"1 names given for the 2 classes"),
])
def test_labels_that_are_not_classes_are_refused(news: tuple[list[str], list[str]], tmp_path: Path, labels: str,
                                                  message: str) -> None:
    from transferkit.zeroshot import parse_labels

    path = str(tmp_path / "news.jsonl")
    with pytest.raises(ConfigError, match=message):
        parse_labels(labels, ["politics", "sports"], path)


def test_zeroshot_command_names_an_unknown_label_in_one_line(news: tuple[list[str], list[str]], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_jsonl(tmp_path / "news.jsonl", *news)
    assert main(["zeroshot", "--data", str(path), "--labels", "sports,weather", "--split", "all"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("transferkit: error: --labels: 'weather' is not a class") and "\n" not in err
    assert "politics, sports" in err


def test_nearest_class_mean_on_real_tweets(minilm: TransferModel, tweets_csv: Path) -> None:
    out = nearest_class_mean(minilm, str(tweets_csv), 4)
    assert out["method"] == "nearest_class_mean" and out["n"] == 12 and 0 <= out["accuracy"] <= 1


def test_zeroshot_command(tweets_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zeroshot", "--source", "minilm", "--data", str(tweets_csv), "--labels", "negative,positive",
                 "--template", "a {} review", "--split", "all", "--json", str(tmp_path / "zs.json")]) == 0
    line = capsys.readouterr().out
    assert "zero-shot on" in line and "balanced accuracy" in line and "(majority class 50.00%)" in line
    assert (tmp_path / "zs.json").exists()
    assert main(["zeroshot", "--data", str(tweets_csv), "--labels", "one"]) == 2
    assert "--labels: 1 names given" in capsys.readouterr().err


def _ctx(model: TransferModel, train: ArrayDataset, val: ArrayDataset, **cfg: object) -> TransferContext:
    from transferkit.models.text import tokenize

    def t(ds: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(tokenize(ds.x)), torch.from_numpy(ds.require_labels())

    base = {"epochs": 1, "batch_size": 8, "precision": "fp32", "progress": "off", "seed": 0, "lr": 3e-5}
    return TransferContext(model, {}, t(train), t(val), TrainConfig(**{**base, **cfg}), lambda: model, probe_epochs=5)  # type: ignore[arg-type]


def test_zs_init_without_training_is_the_zero_shot_classifier(minilm: TransferModel) -> None:
    train, val = _slice("vader-tweets", 4), _slice("vader-tweets", 10, start=4)
    model = copy.deepcopy(minilm)
    model.reset_head(["negative", "positive"])
    ctx = _ctx(model, train, val)
    strategy = make_strategy("zs_init", {"train": "none", "templates": "a {} review", "scale": "10"})
    run_strategy(strategy, ctx)
    classes = class_embeddings(minilm, ["negative", "positive"], ("a {} review",))
    torch.testing.assert_close(ctx.model.head.weight, 10 * classes)
    x = ctx.val[0]  # type: ignore[index]
    with torch.no_grad():
        feats = ctx.model.eval().forward_features(x)
        logits = ctx.model(x)
    assert list(logits.argmax(1).numpy()) == list(cosine_predict(feats, classes))


def test_zs_init_align_keeps_the_head_tied_to_the_prompts(minilm: TransferModel) -> None:
    train, val = _slice("vader-tweets", 4), _slice("vader-tweets", 4, start=4)
    model = copy.deepcopy(minilm)
    model.reset_head(["negative", "positive"])
    ctx = _ctx(model, train, val)
    run_strategy(make_strategy("zs_init", {"train": "align", "wise": "0.5"}), ctx)
    trained = ctx.model
    assert ctx.info["zs_init"]["wise_alpha"] == 0.5
    changed = [n for n, p in trained.groups.named_parameters() if not torch.equal(p, dict(minilm.groups.named_parameters())[n])]
    assert changed, "align trained no encoder weight"
    s = make_strategy("zs_init").options.scale
    torch.testing.assert_close(trained.head.weight, s * class_embeddings(trained, ["negative", "positive"],
                                                                         list(make_strategy("zs_init").options.templates)))


def test_zs_init_wise_path_ends_at_zero_shot_and_fine_tuned(minilm: TransferModel) -> None:
    """train=finetune (WiSE-FT's recipe): alpha 0 is the zero-shot model, 1 the fine-tuned one, the picked
    alpha is what the run returned, and the val accuracies recorded per alpha are those of the path."""
    from transferkit.engine.loop import evaluate_arrays

    train, val = _slice("vader-tweets", 4), _slice("vader-tweets", 6, start=4)
    model = copy.deepcopy(minilm)
    model.reset_head(["negative", "positive"])
    ctx = _ctx(model, train, val, lr=1e-3)
    strategy = make_strategy("zs_init", {"train": "finetune", "templates": "a {} review", "prior": "0"})
    run_strategy(strategy, ctx)
    info = ctx.info["zs_init"]
    final = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    strategy.interpolate_to(ctx.model, 0.0)  # type: ignore[attr-defined]
    zs_head = 20 * class_embeddings(minilm, ["negative", "positive"], ("a {} review",))
    torch.testing.assert_close(ctx.model.head.weight, zs_head)
    enc = dict(ctx.model.groups.named_parameters())
    assert all(torch.equal(p, enc[n]) for n, p in minilm.groups.named_parameters())
    strategy.interpolate_to(ctx.model, 1.0)  # type: ignore[attr-defined]
    assert any(not torch.equal(p, enc[n]) for n, p in minilm.groups.named_parameters()), "nothing was fine-tuned"
    for a in (0.0, info["wise_alpha"]):
        strategy.interpolate_to(ctx.model, a)  # type: ignore[attr-defined]
        acc = evaluate_arrays(ctx.model, ctx.val[0], ctx.val[1], ctx.placement())[0]  # type: ignore[index]
        assert acc == info["val_acc_by_alpha"][f"{a:.1f}"]
    strategy.interpolate_to(ctx.model, info["wise_alpha"])  # type: ignore[attr-defined]
    for k, v in ctx.model.state_dict().items():
        torch.testing.assert_close(v, final[k])
    with pytest.raises(ConfigError, match="zs_init: interpolate_to"):
        make_strategy("zs_init").interpolate_to(ctx.model, 0.5)  # type: ignore[attr-defined]


def test_zs_init_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="train='x' is not one of"):
        make_strategy("zs_init", {"train": "x"})
    with pytest.raises(ConfigError, match="wise must be in"):
        make_strategy("zs_init", {"wise": "2"})
    with pytest.raises(ConfigError, match="wise_rule='x' is not one of"):
        make_strategy("zs_init", {"wise_rule": "x"})


def test_select_alpha_rules() -> None:
    """best: argmax (ties to the smaller alpha); 1se: smallest alpha within one binomial SE of the best."""
    from transferkit.strategies.text_prior import select_alpha

    acc = {"0.0": 0.70, "0.5": 0.76, "0.8": 0.78, "1.0": 0.78}
    assert select_alpha(acc, 100, "best") == 0.8
    se = (0.78 * 0.22 / 100) ** 0.5  # 0.041: 0.76 is within it, 0.70 is not
    assert 0.78 - se < 0.76
    assert select_alpha(acc, 100, "1se") == 0.5
    assert select_alpha(acc, 10_000, "1se") == 0.8


# ------------------------------------------------------------------ calibration, EM label shift, output ensembles


def _gaussian_task(n: int, pos_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """1-d classes N(-1, 1) vs N(+1, 1); logits = the exact log-likelihoods, i.e. the Bayes posterior
    under a uniform prior (a calibrated source model trained on balanced data)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pos_rate).astype(int)
    x = rng.normal(2.0 * y - 1.0, 1.0)
    return np.stack([-0.5 * (x + 1) ** 2, -0.5 * (x - 1) ** 2], 1), y


def test_em_label_shift_recovers_the_target_prior() -> None:
    from transferkit.zeroshot import em_label_shift, log_softmax_np

    logits, y = _gaussian_task(20_000, 0.8, 0)
    probs = np.exp(log_softmax_np(logits))
    pi, post = em_label_shift(probs, np.array([0.5, 0.5]))
    assert abs(pi[1] - 0.8) < 0.02
    # the adjusted decisions are the Bayes rule under the true prior: never worse than the uniform-prior rule
    assert (post.argmax(1) == y).mean() >= (probs.argmax(1) == y).mean()
    bayes = (logits[:, 1] + np.log(0.8) > logits[:, 0] + np.log(0.2)).astype(int)
    assert (post.argmax(1) == bayes).mean() > 0.99


def test_em_label_shift_one_step_matches_the_formula() -> None:
    from transferkit.zeroshot import em_label_shift

    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]])
    ps = np.array([0.5, 0.5])
    pi, post = em_label_shift(p, ps, iters=1)
    # one E step at pi = pi_s leaves the posteriors; the M step averages them
    np.testing.assert_allclose(pi, p.mean(0))
    np.testing.assert_allclose(post, p)
    _, post2 = em_label_shift(p, ps, iters=2)
    w = p * pi / ps
    np.testing.assert_allclose(post2, w / w.sum(1, keepdims=True))
    with pytest.raises(ConfigError):
        em_label_shift(np.zeros((0, 2)))
    with pytest.raises(ConfigError):
        em_label_shift(p, np.array([1.0, 0.0]))


def test_fit_temperature_matches_scipy() -> None:
    from scipy.optimize import minimize_scalar

    from transferkit.zeroshot import fit_temperature, log_softmax_np

    logits, y = _gaussian_task(2_000, 0.5, 1)
    scaled = 3.0 * logits  # over-confident by 3: the best temperature is ~3
    t = fit_temperature(scaled, y)
    nll = lambda lt: -log_softmax_np(scaled, float(np.exp(lt)))[np.arange(len(y)), y].mean()
    ref = float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20)), method="bounded").x))
    assert abs(np.log(t) - np.log(ref)) < 0.05
    assert 2.5 < t < 3.5
    with pytest.raises(ConfigError):
        fit_temperature(scaled, y[:10])


def test_output_ensemble_endpoints_and_range() -> None:
    from transferkit.zeroshot import log_softmax_np, output_ensemble

    a = log_softmax_np(np.array([[2.0, 0.0], [0.0, 1.0]]))
    b = log_softmax_np(np.array([[0.0, 3.0], [1.0, 0.0]]))
    np.testing.assert_allclose(output_ensemble(a, b, 0.0), a)
    np.testing.assert_allclose(output_ensemble(a, b, 1.0), b)
    np.testing.assert_allclose(output_ensemble(a, b, 0.25), 0.75 * a + 0.25 * b)
    np.testing.assert_allclose(np.exp(log_softmax_np(np.array([[1.0, 2.0, 3.0]]))).sum(), 1.0)
    with pytest.raises(ConfigError):
        output_ensemble(a, b, 1.5)


def test_self_train_teacher_mixes_the_zero_shot_prior(minilm: TransferModel) -> None:
    from transferkit.models.text import tokenize

    train, val, pool = _slice("vader-tweets", 4), _slice("vader-tweets", 10, start=4), _slice("vader-tweets", 20, start=14)
    model = copy.deepcopy(minilm)
    model.reset_head(["negative", "positive"])
    ctx = _ctx(model, train, val)
    ctx.unlabelled = torch.from_numpy(tokenize(pool.x))  # its own token width: padded to the labelled one's
    strategy = make_strategy("self_train", {"base": "linear_probe", "keep": "0.5", "templates": "a {} review"})
    run_strategy(strategy, ctx)
    info = ctx.info["self_train"]
    assert info["teacher"] == "probe + zero-shot" and 0.0 <= info["alpha"] <= 1.0
    assert info["templates"] == ["a {} review"] and info["n_unlabelled"] == 40
    nll = info["val_nll"]  # the default rule: the weight of least validation NLL (ties to the zero-shot side)
    assert info["weight_rule"] == "nll" and f"{info['alpha']:.1f}" == min(nll, key=lambda k: (nll[k], float(k)))
    kept, labels = strategy.pseudo  # type: ignore[attr-defined]
    assert info["n_pseudo"] == len(kept) and max(info["pseudo_per_class"]) <= 10
    assert len(ctx.train[0]) == 8 + len(kept)
    # the real tweets' labels: the teacher's confident half is right well above chance
    assert float((labels == pool.require_labels()[kept]).mean()) >= 0.7
