"""Every registered strategy through one set of checks (PEFT style), plus focused tests per strategy.

The contract, run for each name in ``STRATEGIES`` (a new strategy is tested automatically):
it builds, trains on a real few-shot target (digits8) from the shared pretrained source, changes
only the layer groups it declares in ``trained_groups`` (BatchNorm running statistics of the
other groups included), gives finite outputs, and its run directory reloads to identical logits.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import transferkit
from transferkit.engine.config import TrainConfig
from transferkit.engine.features import FeatureCache
from transferkit.engine.loop import fit, make_optimizer
from transferkit.engine.precision import predict_logits, resolve_placement
from transferkit.errors import ConfigError
from transferkit.models import ModelSpec, TransferModel, build_model
from transferkit.strategies import STRATEGIES, TransferContext, make_strategy, run_strategy
from transferkit.strategies.base import Strategy
from transferkit.strategies.regularized import L2SPPenalty, interpolate

Tensors = tuple[torch.Tensor, torch.Tensor]
State = dict[str, torch.Tensor]


def _state(m: nn.Module) -> State:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 2, "batch_size": 32, "precision": "fp32", "progress": "off", "seed": 0}
    return TrainConfig(**{**base, **kw})


def _ctx(model: TransferModel, target: tuple[Tensors, Tensors], fresh_log: list[State] | None = None,
         **cfg: Any) -> TransferContext:
    spec = ModelSpec.from_json(model.spec.to_json())

    def fresh() -> TransferModel:
        m = build_model(ModelSpec.from_json(spec.to_json()), seed=0)
        if fresh_log is not None:
            fresh_log.append(_state(m))
        return m

    return TransferContext(model, _state(model), target[0], target[1], _cfg(**cfg), fresh,
                           cache=FeatureCache(), probe_epochs=20)


def group_of_key(model: TransferModel) -> dict[str, str]:
    """Every ``state_dict`` key mapped to the name of the layer group that holds it."""
    qual = {id(m): n for n, m in model.named_modules()}
    owner: dict[str, str] = {}
    for gname, gmod in model.layer_groups():
        prefix = qual[id(gmod)]
        for k in gmod.state_dict():
            owner[f"{prefix}.{k}" if prefix else k] = gname
    missing = set(model.state_dict()) - set(owner)
    assert not missing, f"state not in any layer group: {sorted(missing)}"
    return owner


# ------------------------------------------------------------------------------ the contract


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategy_contract(name: str, source_model: TransferModel, digits_fewshot: tuple[Tensors, Tensors]) -> None:
    strategy = make_strategy(name)
    assert isinstance(strategy, Strategy) and strategy.name == name
    fresh_log: list[State] = []
    ctx = _ctx(source_model, digits_fewshot, fresh_log)
    if getattr(strategy, "uses_unlabelled", False):  # real digits with their labels dropped
        ctx.unlabelled = torch.cat([digits_fewshot[0][0], digits_fewshot[1][0]])
    start = _state(source_model)
    results = run_strategy(strategy, ctx)
    model = ctx.model
    if model is not source_model:  # the strategy replaced the model (scratch): compare with its init
        assert len(fresh_log) == 1, "a replaced model must come from ctx.fresh_model()"
        start = fresh_log[0]
    assert results and all(r.epochs_run >= 1 for r in results)

    trained = set(strategy.trained_groups(model))
    all_groups = [n for n, _ in model.layer_groups()]
    assert trained and trained <= set(all_groups), trained
    owner = group_of_key(model)
    end = _state(model)
    assert end.keys() == start.keys()
    changed = {k for k in end if not torch.equal(end[k], start[k])}
    outside = sorted(k for k in changed if owner[k] not in trained)
    assert not outside, f"{name} changed state outside its trained groups {sorted(trained)}: {outside}"
    assert any(owner[k] in trained for k in changed), f"{name} trained nothing"
    assert all(p.requires_grad for p in model.parameters()), "parameters left frozen after the run"

    with torch.no_grad():
        logits = model.eval()(digits_fewshot[1][0])
    assert logits.shape == (len(digits_fewshot[1][0]), 10)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategy_run_directory_round_trip(name: str, source_run: Path, digits_fewshot: tuple[Tensors, Tensors],
                                           tmp_path: Path) -> None:
    out = tmp_path / name
    unlabelled = "rest" if getattr(make_strategy(name), "uses_unlabelled", False) else None
    res = transferkit.transfer(source_run, "digits8", strategy=name, shots=5, seed=0, out=out, epochs=1,
                               batch_size=32, precision="fp32", progress="off", unlabelled=unlabelled)
    assert res.run_dir == out
    loaded = transferkit.load_run(out)
    assert loaded.config["strategy"] == name and loaded.config["command"] == "transfer"
    saved, mine = loaded.model.state_dict(), res.model.state_dict()
    assert saved.keys() == mine.keys()
    for k in saved:
        assert torch.equal(saved[k], mine[k]), k
    x = digits_fewshot[1][0]
    place = resolve_placement(res.model, "auto", "auto")  # the library's own inference path
    a = predict_logits(res.model, x, place)
    assert torch.isfinite(a).all()
    assert torch.equal(a, predict_logits(loaded.model, x, place))
    # a plain forward agrees too once both hold their weights in the same memory format
    # (predict_logits leaves a convolutional model's weights in channels-last)
    with torch.no_grad():
        a = res.model.eval().to(memory_format=torch.contiguous_format)(x)
        b = loaded.model.eval().to(memory_format=torch.contiguous_format)(x)
    assert torch.equal(a, b)
    assert loaded.metrics["target"]["accuracy"] == res.metrics["target"]["accuracy"]
    assert loaded.source_head() is not None


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategy_resumes_after_interruption(name: str, source_run: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the first epoch of its last phase, the same call finishes with the same weights."""
    from transferkit.engine import loop

    kw: dict[str, Any] = {"strategy": name, "shots": 5, "seed": 0, "epochs": 2, "batch_size": 16, "patience": 0,
                          "precision": "fp32", "progress": "off",
                          "unlabelled": "rest" if getattr(make_strategy(name), "uses_unlabelled", False) else None}
    original = loop.save_checkpoint
    saves: list[str] = []

    def spy(path: Path, *a: Any, **k: Any) -> None:
        original(path, *a, **k)
        saves.append(path.name)

    monkeypatch.setattr(loop, "save_checkpoint", spy)
    ref = transferkit.transfer(source_run, "digits8", out=tmp_path / "ref", **kw)
    last_phase = saves[-1]

    def interrupt(path: Path, *a: Any, **k: Any) -> None:
        original(path, *a, **k)
        if path.name == last_phase:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", interrupt)
    with pytest.raises(KeyboardInterrupt):
        transferkit.transfer(source_run, "digits8", out=tmp_path / "run", **kw)
    monkeypatch.setattr(loop, "save_checkpoint", original)
    res = transferkit.transfer(source_run, "digits8", out=tmp_path / "run", **kw)
    a, b = ref.model.state_dict(), res.model.state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert res.metrics["target"]["accuracy"] == ref.metrics["target"]["accuracy"]


# ------------------------------------------------------------------------------ options


def test_unknown_strategy_has_did_you_mean() -> None:
    with pytest.raises(ConfigError, match=r"unknown strategy 'lpft' \(did you mean 'lp_ft'\?\)"):
        make_strategy("lpft")


def test_option_parsing_and_validation() -> None:
    assert make_strategy("partial", {"k": "3"}).options.k == 3
    assert make_strategy("l2sp", {"alpha": "0.5"}).options.alpha == 0.5
    with pytest.raises(ConfigError, match="unknown strategy option 'kk'"):
        make_strategy("partial", {"kk": "3"})
    with pytest.raises(ConfigError, match="k=.*not a valid int"):
        make_strategy("partial", {"k": "three"})
    with pytest.raises(ConfigError, match="k must be at least 1"):
        make_strategy("partial", {"k": "0"})
    with pytest.raises(ConfigError, match="decay"):
        make_strategy("layerwise_lr", {"decay": "1.5"})
    with pytest.raises(ConfigError, match="alpha and beta"):
        make_strategy("l2sp", {"beta": "-1"})
    with pytest.raises(ConfigError, match="steps"):
        make_strategy("wise_ft", {"steps": "0"})
    with pytest.raises(ConfigError, match="every"):
        make_strategy("gradual_unfreeze", {"every": "-1"})


# ------------------------------------------------------------------------------ l2sp


def test_l2sp_penalty_equals_numpy_formula(source_model: TransferModel) -> None:
    alpha, beta = 0.3, 0.07
    anchors = [p.detach().numpy().astype(np.float64).copy() for p in source_model.backbone_parameters()]
    pen = L2SPPenalty(source_model, alpha, beta)
    assert pen().item() == pytest.approx(0.5 * beta * float((source_model.head.weight.detach().double() ** 2).sum()))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in source_model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    now = [p.detach().numpy().astype(np.float64) for p in source_model.backbone_parameters()]
    head_w = source_model.head.weight.detach().numpy().astype(np.float64)
    expected = alpha / 2 * sum(((w - w0) ** 2).sum() for w, w0 in zip(now, anchors)) + beta / 2 * (head_w**2).sum()
    assert pen().item() == pytest.approx(expected, rel=1e-5)


def test_l2sp_penalty_gradient(source_model: TransferModel) -> None:
    alpha, beta = 0.3, 0.07
    pen = L2SPPenalty(source_model, alpha, beta)
    first = source_model.backbone_parameters()[0]
    with torch.no_grad():
        first.add_(0.1)
    pen().backward()
    torch.testing.assert_close(first.grad, torch.full_like(first, alpha * 0.1))
    torch.testing.assert_close(source_model.head.weight.grad, beta * source_model.head.weight.detach())
    assert source_model.head.bias.grad is None


def test_l2sp_anchors_are_buffers(source_model: TransferModel) -> None:
    pen = L2SPPenalty(source_model, 0.1, 0.01)
    params = source_model.backbone_parameters()
    sd = pen.state_dict()
    assert set(sd) == {f"anchor_{i}" for i in range(len(params))}
    assert list(pen.parameters()) == []
    for i, p in enumerate(params):
        assert torch.equal(sd[f"anchor_{i}"], p.detach())
        assert sd[f"anchor_{i}"].data_ptr() != p.data_ptr(), "anchor aliases the live weight"
    pen.to(torch.float64)
    assert all(b.dtype == torch.float64 for b in pen.buffers()), ".to() does not reach the anchors"


def test_l2sp_pulls_toward_source(source_model: TransferModel, digits_fewshot: tuple[Tensors, Tensors]) -> None:
    """A strong penalty keeps the backbone closer to its source weights than plain full fine-tuning."""
    src = [p.detach().clone() for p in source_model.backbone_parameters()]

    def drift(strategy: str, **opts: str) -> float:
        model = copy.deepcopy(source_model)
        run_strategy(make_strategy(strategy, opts), _ctx(model, digits_fewshot, epochs=3, lr=3e-3))
        return sum(float(((p.detach() - s) ** 2).sum()) for p, s in zip(model.backbone_parameters(), src))

    assert drift("l2sp", alpha="50") < 0.5 * drift("full")


# ------------------------------------------------------------------------------ wise_ft


def test_wise_ft_interpolate() -> None:
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(4, 3, generator=g), "n": torch.tensor(5)}
    b = {"w": torch.randn(4, 3, generator=g), "n": torch.tensor(9)}
    assert torch.equal(interpolate(a, b, 0.0)["w"], a["w"])
    assert torch.equal(interpolate(a, b, 1.0)["w"], b["w"])
    torch.testing.assert_close(interpolate(a, b, 0.5)["w"], (a["w"] + b["w"]) / 2)
    torch.testing.assert_close(interpolate(a, b, 0.25)["w"], 0.75 * a["w"] + 0.25 * b["w"])
    for alpha in (0.0, 0.5, 1.0):  # integer buffers (BatchNorm counters) come from the fine-tuned end
        assert interpolate(a, b, alpha)["n"].item() == 9


def test_wise_ft_records_its_choice(source_model: TransferModel, digits_fewshot: tuple[Tensors, Tensors]) -> None:
    ctx = _ctx(source_model, digits_fewshot)
    run_strategy(make_strategy("wise_ft", {"steps": "4"}), ctx)
    info = ctx.info["wise_ft"]
    assert list(info["val_acc_by_alpha"]) == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    best = max(info["val_acc_by_alpha"].values())
    assert info["val_acc_by_alpha"][f"{info['alpha']:.2f}"] == best
    # ties go to the smaller alpha (closer to the source)
    assert info["alpha"] == min(float(a) for a, s in info["val_acc_by_alpha"].items() if s == best)


# ------------------------------------------------------------------------------ gradual_unfreeze


def test_gradual_unfreeze_opens_groups_output_to_input(source_model: TransferModel,
                                                       digits_fewshot: tuple[Tensors, Tensors]) -> None:
    ctx = _ctx(source_model, digits_fewshot, epochs=6)
    phase = next(make_strategy("gradual_unfreeze", {"every": "2"}).phases(ctx))
    names = [n for n, _ in source_model.layer_groups()]
    assert names == ["conv1", "conv2", "fc", "head"]
    assert phase.on_epoch_start is not None

    def open_groups() -> list[str]:
        return [n for n, g in source_model.layer_groups() if all(p.requires_grad for p in g.parameters())]

    assert open_groups() == ["head"]  # before the first epoch
    seen = []
    for epoch in range(8):
        phase.on_epoch_start(epoch)
        seen.append(open_groups())
    assert seen == [["head"], ["head"], ["fc", "head"], ["fc", "head"], ["conv2", "fc", "head"],
                    ["conv2", "fc", "head"], names, names]


def test_gradual_unfreeze_trains_only_open_groups(source_model: TransferModel,
                                                  digits_fewshot: tuple[Tensors, Tensors]) -> None:
    """Two epochs with ``every=1``: the head, then the fc group; conv1/conv2 (and their BN stats) untouched."""
    owner = group_of_key(source_model)
    start = _state(source_model)
    run_strategy(make_strategy("gradual_unfreeze", {"every": "1"}), _ctx(source_model, digits_fewshot, epochs=2))
    end = _state(source_model)
    changed_groups = {owner[k] for k in end if not torch.equal(end[k], start[k])}
    assert changed_groups == {"fc", "head"}


# ------------------------------------------------------------------------------ layerwise_lr


def test_layerwise_lr_decays_toward_the_input(source_model: TransferModel,
                                              digits_fewshot: tuple[Tensors, Tensors]) -> None:
    decay, lr = 0.5, 1e-3
    ctx = _ctx(source_model, digits_fewshot, lr=lr)
    phase = next(make_strategy("layerwise_lr", {"decay": str(decay)}).phases(ctx))
    opt = make_optimizer(phase.param_groups, ctx.cfg, lr)
    lrs = [g["lr"] for g in opt.param_groups]
    # conv1, conv2, fc, head: decay**3, decay**2, decay**1, then the head's scale
    assert lrs == pytest.approx([lr * decay**3, lr * decay**2, lr * decay, lr * ctx.head_lr_scale])
    body = lrs[:-1]
    assert all(a < b for a, b in itertools.pairwise(body))
    heads = {id(p) for p in source_model.head.parameters()}
    assert {id(p) for p in opt.param_groups[-1]["params"]} == heads


def test_layerwise_lr_with_decay_one_is_uniform(source_model: TransferModel,
                                                digits_fewshot: tuple[Tensors, Tensors]) -> None:
    ctx = _ctx(source_model, digits_fewshot)
    phase = next(make_strategy("layerwise_lr", {"decay": "1"}).phases(ctx))
    assert [g["lr_scale"] for g in phase.param_groups] == [1.0, 1.0, 1.0, ctx.head_lr_scale]


# ------------------------------------------------------------------------------ partial


@pytest.mark.parametrize(("k", "groups"), [(1, ["head"]), (2, ["fc", "head"]), (3, ["conv2", "fc", "head"]),
                                           (4, ["conv1", "conv2", "fc", "head"])])
def test_partial_k_selects_groups_from_the_output(k: int, groups: list[str], source_model: TransferModel) -> None:
    assert make_strategy("partial", {"k": str(k)}).trained_groups(source_model) == groups


def test_partial_k_trains_exactly_those_groups(source_model: TransferModel,
                                               digits_fewshot: tuple[Tensors, Tensors]) -> None:
    owner = group_of_key(source_model)
    start = _state(source_model)
    run_strategy(make_strategy("partial", {"k": "3"}), _ctx(source_model, digits_fewshot, epochs=1))
    end = _state(source_model)
    changed = {k for k in end if not torch.equal(end[k], start[k])}
    assert {owner[k] for k in changed} == {"conv2", "fc", "head"}
    # conv2's BatchNorm statistics moved (it trained), conv1's did not (frozen)
    assert "groups.conv2.1.running_mean" in changed
    assert "groups.conv1.1.running_mean" not in changed


def test_linear_probe_trains_on_cached_features(source_model: TransferModel,
                                                digits_fewshot: tuple[Tensors, Tensors]) -> None:
    ctx = _ctx(source_model, digits_fewshot)
    run_strategy(make_strategy("linear_probe"), ctx)
    assert ctx.cache.misses == 2  # train and val features computed once each
    assert ctx.results[0].best_val_acc > 0.3  # 10-class digits8 from an MNIST source: well above chance


def test_probe_phase_reuses_the_cache_across_strategies(source_model: TransferModel,
                                                        digits_fewshot: tuple[Tensors, Tensors]) -> None:
    cache = FeatureCache()
    for name in ("linear_probe", "lp_ft"):
        ctx = _ctx(copy.deepcopy(source_model), digits_fewshot)
        ctx.cache = cache
        phase = next(make_strategy(name).phases(ctx))
        fit(phase, ctx.cfg)
    assert (cache.misses, cache.hits) == (2, 2)
