"""The ``contrastive`` strategy: its two losses, its options, and that it learns on real few-shot data.

The registry-wide contract (tests/strategies/test_contract.py) also runs it: trained groups, the run
directory round trip, and resuming after an interruption through the engine's checkpoints.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch

from transferkit.engine.config import TrainConfig
from transferkit.engine.features import FeatureCache, extract_features
from transferkit.engine.precision import resolve_placement
from transferkit.errors import ConfigError
from transferkit.models import TransferModel
from transferkit.strategies import TransferContext, make_strategy, run_strategy
from transferkit.strategies.contrastive import class_means, pair_loss, supcon_loss

Tensors = tuple[torch.Tensor, torch.Tensor]


def _supcon_by_loops(z: torch.Tensor, y: torch.Tensor, t: float) -> float:
    """Khosla et al. 2020, eq. 2 (L_out), written out anchor by anchor."""
    total, anchors = 0.0, 0
    for i in range(len(z)):
        pos = [p for p in range(len(z)) if p != i and y[p] == y[i]]
        if not pos:
            continue
        denom = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(len(z)) if a != i)
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denom) for p in pos) / len(pos)
        anchors += 1
    return total / anchors


def test_supcon_matches_the_paper_formula() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=-1)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3])  # classes 2 and 3 have no positive: not anchors
    assert supcon_loss(z, y, 0.2).item() == pytest.approx(_supcon_by_loops(z, y, 0.2), rel=1e-5)


def test_pair_loss_is_zero_for_the_ideal_geometry_and_balances_the_pair_kinds() -> None:
    e = torch.eye(3)
    z = torch.stack([e[0], e[0], e[1], e[2]])  # same label: identical; different: orthogonal
    y = torch.tensor([0, 0, 1, 2])
    assert pair_loss(z, y).item() == pytest.approx(0.0)
    z2 = torch.stack([e[0], e[1], e[1], e[2]])  # the one positive pair orthogonal (error 1), negatives: one at cos 1
    expected = 0.5 * 1.0 + 0.5 * (1.0 / 5)  # positive mean 1; 5 negative pairs, one with error 1
    assert pair_loss(z2, y).item() == pytest.approx(expected)
    lone = torch.tensor([0, 1, 2, 3])  # no positive pair: only the negatives count
    upper = torch.triu(torch.ones(4, 4), 1) > 0
    assert pair_loss(z, lone).item() == pytest.approx(((z @ z.T)[upper] ** 2).mean().item())


def test_hard_pair_loss_takes_each_anchor_s_hardest_positive_and_negative() -> None:
    from transferkit.strategies.contrastive import hard_pair_loss

    e = torch.eye(3)
    y = torch.tensor([0, 0, 1, 2])
    assert hard_pair_loss(torch.stack([e[0], e[0], e[1], e[2]]), y).item() == pytest.approx(0.0)
    c = 0.6
    z = torch.stack([e[0], c * e[0] + 0.8 * e[1], e[1], e[2]])  # anchors 0, 1 (the only ones with a positive)
    # anchor 0: positive cos 0.6, hardest negative cos 0 (items 2, 3); anchor 1: positive 0.6, negative cos 0.8
    expected = ((0.6 - 1) ** 2 + 0.0 + (0.6 - 1) ** 2 + 0.8**2) / 2
    assert hard_pair_loss(z, y).item() == pytest.approx(expected)
    assert hard_pair_loss(z, torch.tensor([0, 1, 2, 3])).item() == 0.0  # no anchor has a positive


def test_class_means_keep_an_absent_class_as_zero() -> None:
    f = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    m = class_means(f, torch.tensor([0, 1]), 3)
    assert torch.allclose(m[:2], torch.eye(2)) and torch.equal(m[2], torch.zeros(2))


@pytest.mark.parametrize("opts", [{"loss": "triplet"}, {"head": "zero"}, {"temperature": "0"}, {"passes": "-1"},
                                  {"body_lr_scale": "-2"}, {"prior": "-1"}, {"templates": "no slot"},
                                  {"temperature": "warm"}, {"finetune_epochs": "-1"}])
def test_bad_options_raise_one_config_error(opts: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        make_strategy("contrastive", opts)
    assert "\n" not in str(err.value) and next(iter(opts)) in str(err.value)


def _ctx(model: TransferModel, target: tuple[Tensors, Tensors], val: bool = True, **cfg: Any) -> TransferContext:
    base: dict[str, Any] = {"epochs": 3, "batch_size": 32, "precision": "fp32", "progress": "off", "seed": 0,
                            "lr": 1e-3, **cfg}
    return TransferContext(model, {}, target[0], target[1] if val else None, TrainConfig(**base), lambda: model,
                           cache=FeatureCache(), probe_epochs=30)


@pytest.mark.parametrize("loss", ["supcon", "pairs"])
def test_body_phase_pulls_classes_together_on_real_digits(loss: str, source_model: TransferModel,
                                                          digits_fewshot: tuple[Tensors, Tensors]) -> None:
    """On digits8 (10 per class) from the MNIST-pretrained source: the body phase lowers its own loss on the
    labelled examples, and the finished model beats the nearest class mean of the untouched source on
    the validation split."""
    (x, y), (xv, yv) = digits_fewshot
    place = resolve_placement(source_model, "fp32", "off")
    before = copy.deepcopy(source_model)
    z0 = torch.nn.functional.normalize(extract_features(before, x, place), dim=-1)
    ctx = _ctx(source_model, digits_fewshot)
    results = run_strategy(make_strategy("contrastive", {"loss": loss, "head": "means"}), ctx)
    assert [r.name for r in results] == ["contrastive", "probe"]
    assert ctx.info["contrastive"]["head"] == "means" and ctx.info["contrastive"]["passes"] >= 1
    z1 = torch.nn.functional.normalize(extract_features(ctx.model, x, place), dim=-1)
    f = (lambda z: supcon_loss(z, y, 0.1)) if loss == "supcon" else (lambda z: pair_loss(z, y))
    assert f(z1).item() < 0.9 * f(z0).item()
    base_acc = (torch.argmax(torch.nn.functional.normalize(extract_features(before, xv, place), dim=-1)
                             @ class_means(extract_features(before, x, place), y, 10).T, 1) == yv).float().mean()
    with torch.no_grad():
        acc = (ctx.model.eval()(xv).argmax(1) == yv).float().mean()
    assert acc > base_acc, (acc, base_acc)


def test_without_validation_the_body_trains_every_epoch(source_model: TransferModel,
                                                        digits_fewshot: tuple[Tensors, Tensors]) -> None:
    ctx = _ctx(source_model, digits_fewshot, val=False, epochs=2, patience=1)
    run_strategy(make_strategy("contrastive", {"passes": "3"}), ctx)
    body = ctx.results[0]
    n, bs = len(digits_fewshot[0][0]), 32
    assert body.epochs_run == 2 and ctx.info["contrastive"]["passes"] == 3
    assert math.isnan(body.best_val_acc) and n * 3 // bs >= 1
    assert ctx.info["contrastive"]["head"] == "means"  # prompts need a text encoder: the class means instead


def test_text_encoder_learns_sentiment_from_eight_reviews_per_class() -> None:
    """MiniLM on real vader-movies, 8 labelled snippets per class: the label-name prompt head of the tuned
    encoder plus the probe score above the untuned encoder's zero-shot prompts on 200 held-out snippets."""
    pytest.importorskip("transformers")
    from transferkit.data import kshot, load_dataset, split
    from transferkit.models import from_pretrained
    from transferkit.models.text import tokenize_for
    from transferkit.zeroshot import class_embeddings, cosine_predict

    try:
        model = from_pretrained("minilm")
        ds = load_dataset("vader-movies")  # raw texts: only the two draws below are tokenised
    except Exception as err:  # the offline packages are optional extras
        pytest.skip(f"minilm or vader-movies not installed: {err}")
    sp = split(ds, seed=0, val=0.15, test=0.3)
    train = kshot(sp.train, 8, seed=0)
    test = sp.test.subset(np.arange(200), ":200")

    def t(d: Any) -> Tensors:
        return torch.from_numpy(tokenize_for(model.spec, d.x)), torch.from_numpy(d.require_labels())

    model.reset_head(train.class_names)
    place = resolve_placement(model, "fp32", "off")
    zs = cosine_predict(extract_features(model, t(test)[0], place), class_embeddings(model, train.class_names))
    zs_acc = float((zs == test.require_labels()).mean())
    ctx = TransferContext(model, {}, t(train), None, TrainConfig(progress="off", seed=0), lambda: model,
                          user_set=frozenset({"progress", "seed"}))
    run_strategy(make_strategy("contrastive", {"passes": "2"}), ctx)
    assert ctx.info["recipe"]["settings"]["lr"] == 2e-5 and ctx.info["contrastive"]["head"] == "prompts"
    with torch.no_grad():
        acc = float((ctx.model.eval()(t(test)[0]).argmax(1) == t(test)[1]).float().mean())
    assert acc > zs_acc + 0.02, (acc, zs_acc)


def test_options_are_typed_and_documented() -> None:
    from dataclasses import fields

    from transferkit.strategies.contrastive import ContrastiveOptions

    for f in fields(ContrastiveOptions):
        assert f.metadata.get("help"), f.name
    o = make_strategy("contrastive", {"loss": "pairs", "passes": "4", "prior": "0.5"}).options
    assert (o.loss, o.passes, o.prior) == ("pairs", 4, 0.5)
    assert isinstance(o.templates, tuple) and o.templates[0] == "{}" and o.head == "auto"
    assert make_strategy("contrastive", {"templates": "a {} review,{}"}).options.templates == ("a {} review", "{}")
    with pytest.raises(ConfigError, match="'\\|'"):
        make_strategy("contrastive", {"templates": "{}|it is {}"})


def test_auto_head_takes_prompts_only_when_every_class_name_is_a_word() -> None:
    """head=auto: sms-spam's 'spam' is not one token of MiniLM's vocabulary (spa ##m): the class means;
    vader-movies' negative/positive are: the prompts. Decided from the names alone (no labels)."""
    pytest.importorskip("transformers")
    from transferkit.models import from_pretrained
    from transferkit.strategies.contrastive import names_are_words

    try:
        model = from_pretrained("minilm")
    except Exception as err:  # the offline packages are optional extras
        pytest.skip(f"minilm not installed: {err}")
    model.reset_head(["negative", "positive"])
    assert names_are_words(model)
    model.reset_head(["ham", "spam"])
    assert not names_are_words(model)


def test_saturated_validation_score_stops_the_body_phase(source_model: TransferModel,
                                                         digits_fewshot: tuple[Tensors, Tensors],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding: at validation accuracy 1.0 every later epoch 'improved' by its lower loss, so early
    stopping never fired (fontdigits seed 0 ran all 40 epochs). The body trains for real on digits8; the
    features the validation score reads are replaced by ones that classify every digit right from the first
    epoch with a margin (and so a loss) that keeps improving: the phase must stop ``patience`` epochs later."""
    import transferkit.strategies.contrastive as contrastive

    train = digits_fewshot[0]
    calls = [0]

    def sharpening(model: TransferModel, x: torch.Tensor, place: Any) -> torch.Tensor:
        calls[0] += 1
        return torch.nn.functional.one_hot(train[1], 10).float() * (1 + calls[0]) + 1.0

    monkeypatch.setattr(contrastive, "extract_features", sharpening)
    ctx = _ctx(source_model, (train, train), epochs=12, patience=2)
    run_strategy(make_strategy("contrastive", {"head": "means", "passes": "1"}), ctx)
    body = ctx.results[0]
    assert [h["val_score"] for h in body.history] == [1.0] * 3
    assert body.best_epoch == 0 and body.epochs_run == 3


def test_a_saturated_score_ties_whatever_the_loss_and_other_ties_break_by_loss() -> None:
    """The engine's comparison (engine/epoch.py ``validate``): below ``saturates_at`` a tie with a lower loss is
    an improvement; at it, no tie is, and the history keeps the real loss."""
    from types import SimpleNamespace

    from transferkit.engine.epoch import validate

    def run(scores: list[tuple[float, float]], saturates_at: float | None) -> tuple[int, list[float]]:
        it = iter(scores)
        module = torch.nn.Linear(1, 1)
        phase = SimpleNamespace(val_score=lambda: next(it), module=module, saturates_at=saturates_at)
        st = SimpleNamespace(phase=phase, loop={"best_acc": -1.0, "best_loss": float("inf"), "bad": 0}, best=None)
        recs = []
        for e in range(len(scores)):
            recs.append({})
            validate(st, e, recs[-1])  # type: ignore[arg-type]
        return st.loop["best_epoch"], [r["val_loss"] for r in recs]

    assert run([(0.9, 0.5), (0.9, 0.3), (0.9, 0.2)], 1.0)[0] == 2
    best, losses = run([(1.0, 0.5), (1.0, 0.3), (1.0, 0.2)], 1.0)
    assert best == 0 and losses == [0.5, 0.3, 0.2]
    assert run([(1.0, 0.5), (1.0, 0.3)], None)[0] == 1


def test_end_to_end_stage_trains_every_layer_after_the_probe(source_model: TransferModel,
                                                             digits_fewshot: tuple[Tensors, Tensors]) -> None:
    ctx = _ctx(source_model, digits_fewshot, val=False, epochs=1)
    run_strategy(make_strategy("contrastive", {"head": "means", "finetune_epochs": "2"}), ctx)
    assert [r.name for r in ctx.results] == ["contrastive", "probe", "end_to_end"]
    assert ctx.results[2].epochs_run == 2


def test_body_batches_never_exceed_the_labelled_set(source_model: TransferModel,
                                                    digits_fewshot: tuple[Tensors, Tensors]) -> None:
    """A batch larger than the labelled set would only repeat texts (and cut the steps an epoch has). An epoch
    has at least 8 steps and at least 4 passes: 8 steps of the whole set (a batch of it), or 4 passes of 32s."""
    from transferkit.strategies.contrastive import MIN_PASSES, MIN_STEPS_PER_EPOCH

    n = len(digits_fewshot[0][0])
    assert n == 100
    for bs, want, passes in ((256, n, MIN_STEPS_PER_EPOCH), (32, 32, MIN_PASSES)):
        ctx = _ctx(source_model, digits_fewshot, val=False, batch_size=bs)
        ctx.info["contrastive"] = {}
        phase = make_strategy("contrastive")._body_phase(ctx)
        assert phase.batch_size == want and len(phase.train[0]) == passes * n
        assert len(phase.train[0]) // want >= MIN_STEPS_PER_EPOCH
