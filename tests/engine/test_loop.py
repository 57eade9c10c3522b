"""The one training loop: schedules, config validation, learning, early stopping, divergence,
checkpoint resume, and equivalence with a hand-written PyTorch loop."""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.engine.config import TrainConfig
from transferkit.engine.loop import DivergenceError, Phase, fit, lr_factor, make_optimizer
from transferkit.errors import CheckpointError, ConfigError
from transferkit.models import ModelSpec, TransferModel, build_model, wrap_module

DIGITS = [str(i) for i in range(10)]
Tensors = tuple[torch.Tensor, torch.Tensor]


def _model(name: str = "mlp", seed: int = 0, **kwargs: Any) -> TransferModel:
    defaults = {"mlp": {"hidden": 64}, "small_cnn": {"width": 8, "hidden": 32}}[name]
    return build_model(ModelSpec(name, (1, 28, 28), list(DIGITS), {**defaults, **kwargs}), seed)


def _cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 3, "batch_size": 32, "precision": "fp32", "progress": "off", "seed": 0}
    return TrainConfig(**{**base, **kw})


def _phase(module: nn.Module, train: Tensors, val: Tensors | None, **kw: Any) -> Phase:
    return Phase("test", module, train, val, [{"params": list(module.parameters())}], **kw)


def _state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _assert_states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), f"{k} differs"


# ------------------------------------------------------------------------------ schedules


def test_cosine_warms_up_then_decays_to_zero() -> None:
    total = 200
    f = np.array([lr_factor("cosine", s, total) for s in range(total)])
    peak = int(f.argmax())
    assert peak == pytest.approx(0.05 * total, abs=1)
    assert f[0] < 0.2
    assert np.all(np.diff(f[: peak + 1]) > 0), "warm-up is not increasing"
    assert np.all(np.diff(f[peak + 1 :]) <= 0), "decay is not monotone"
    assert f.max() == pytest.approx(1.0)
    assert f[-1] < 1e-3
    # half-way through the decay the cosine is at one half
    mid = round(total * (0.05 + 0.95 / 2))
    assert f[mid] == pytest.approx(0.5, abs=0.01)


def test_onecycle_peaks_at_30_percent() -> None:
    total = 1000
    f = np.array([lr_factor("onecycle", s, total) for s in range(total)])
    assert int(f.argmax()) == pytest.approx(0.3 * total, abs=1)
    assert f[0] == pytest.approx(1 / 25)
    assert f.max() == pytest.approx(1.0)
    assert f[-1] < 1e-3
    assert np.all(np.diff(f[:300]) > 0) and np.all(np.diff(f[300:]) < 0)


def test_constant_schedule() -> None:
    assert {lr_factor("constant", s, 50) for s in range(50)} == {1.0}


def test_fit_applies_the_schedule_per_step(mnist_slices: tuple[Tensors, Tensors]) -> None:
    train, _ = mnist_slices
    train = (train[0][:64], train[1][:64])
    cfg = _cfg(epochs=4, batch_size=16, schedule="onecycle", lr=0.01)
    seen: list[float] = []
    m = _model()
    phase = _phase(m, train, None)
    opt_step = torch.optim.AdamW.step

    def spy(self: torch.optim.Optimizer, *a: Any, **k: Any) -> Any:
        seen.append(self.param_groups[0]["lr"])
        return opt_step(self, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", spy)
        res = fit(phase, cfg)
    total = 4 * 4
    assert seen == pytest.approx([0.01 * lr_factor("onecycle", s, total) for s in range(total)])
    assert [r["lr"] for r in res.history] == pytest.approx(seen[3::4])


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", -1e-3), ("lr", 0.0), ("lr", math.inf), ("epochs", 0), ("batch_size", -4), ("weight_decay", -0.1),
     ("weight_decay", math.nan), ("patience", -1), ("grad_clip", -1.0), ("grad_clip", math.nan),
     ("optimizer", "adam"), ("schedule", "linear"), ("precision", "fp16"), ("channels_last", "yes"),
     ("progress", "maybe")],
)
def test_config_errors_name_the_field_and_value(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{field: value})
    msg = str(e.value)
    assert msg.startswith(field), msg
    assert str(value) in msg, msg


def test_config_help_covers_every_field() -> None:
    helps = TrainConfig.field_help()
    assert "lr" in helps and all(helps.values())


# ------------------------------------------------------------------------------ learning


def test_fit_learns_real_digits(mnist_slices: tuple[Tensors, Tensors]) -> None:
    train, val = mnist_slices
    m = _model()
    res = fit(_phase(m, train, val), _cfg(epochs=8, lr=2e-3))
    assert res.epochs_run == 8 and len(res.history) == 8
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.best_val_acc > 0.75, res.history
    # the module holds the best weights: its validation accuracy is the recorded best
    acc = (m.eval()(val[0]).argmax(1) == val[1]).float().mean().item()
    assert acc == pytest.approx(res.best_val_acc)


def test_only_phase_parameters_are_updated(mnist_slices: tuple[Tensors, Tensors]) -> None:
    train, _ = mnist_slices
    m = _model()
    for p in m.backbone_parameters():
        p.requires_grad_(False)
    before = _state(m)
    fit(Phase("head", m, train, None, [{"params": list(m.head.parameters())}]), _cfg(epochs=1))
    after = _state(m)
    for k in before:
        assert torch.equal(before[k], after[k]) == (not k.startswith("head.")), k


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("frozen", [True, False])
def test_batchnorm_statistics_follow_their_group(affine: bool, frozen: bool,
                                                 mnist_slices: tuple[Tensors, Tensors]) -> None:
    """A frozen group's BatchNorm keeps its running statistics, with or without affine parameters."""
    torch.manual_seed(0)
    body = nn.Sequential()
    body.add_module("block", nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.BatchNorm2d(4, affine=affine),
                                           nn.ReLU(), nn.Flatten()))
    body.add_module("fc", nn.Linear(4 * 13 * 13, 10))
    m = wrap_module(body, "fc", (1, 28, 28), DIGITS)
    bn = m.body.block[1]
    if frozen:
        for p in m.backbone_parameters():
            p.requires_grad_(False)
    params = [p for p in m.parameters() if p.requires_grad]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    fit(Phase("t", m, mnist_slices[0], None, [{"params": params}]), _cfg(epochs=1))
    after = (bn.running_mean, bn.running_var, bn.num_batches_tracked)
    assert all(torch.equal(a, b) for a, b in zip(before, after)) == frozen


def test_phase_without_trainable_parameters_raises(mnist_slices: tuple[Tensors, Tensors]) -> None:
    m = _model()
    for p in m.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(_phase(m, mnist_slices[0], None), _cfg(epochs=1))


def test_early_stopping_stops_and_restores_best(mnist_slices: tuple[Tensors, Tensors]) -> None:
    train, _ = mnist_slices
    # validation labels shifted by one: the better the model fits the truth, the worse it scores,
    # so validation accuracy peaks early and early stopping must kick in
    val = (train[0][:100], (train[1][:100] + 1) % 10)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    m = _model()

    def snap(epoch: int) -> None:  # weights at the start of `epoch` = after epoch - 1
        snapshots[epoch - 1] = _state(m)

    patience, epochs = 2, 30
    res = fit(_phase(m, train, val, on_epoch_start=snap), _cfg(epochs=epochs, patience=patience, lr=3e-3))
    accs = [r["val_acc"] for r in res.history]
    assert res.epochs_run < epochs, "early stopping never triggered"
    assert res.epochs_run == res.best_epoch + 1 + patience
    assert res.best_val_acc == max(accs) == accs[res.best_epoch]
    assert all(a <= res.best_val_acc for a in accs[res.best_epoch + 1 :])
    _assert_states_equal(_state(m), snapshots[res.best_epoch])


def test_patience_zero_runs_every_epoch(mnist_slices: tuple[Tensors, Tensors]) -> None:
    train, _ = mnist_slices
    val = (train[0][:50], (train[1][:50] + 1) % 10)
    res = fit(_phase(_model(), train, val), _cfg(epochs=5, patience=0))
    assert res.epochs_run == 5


def test_nan_extra_loss_raises_divergence(mnist_slices: tuple[Tensors, Tensors]) -> None:
    m = _model()
    phase = _phase(m, mnist_slices[0], None, extra_loss=lambda: torch.tensor(float("nan")))
    with pytest.raises(DivergenceError, match="phase 'test': loss became nan at epoch 0 step 0"):
        fit(phase, _cfg(epochs=1))


def test_infinite_loss_raises_divergence(mnist_slices: tuple[Tensors, Tensors]) -> None:
    phase = _phase(_model(), mnist_slices[0], None, extra_loss=lambda: torch.tensor(math.inf))
    with pytest.raises(DivergenceError):
        fit(phase, _cfg(epochs=1))


# ------------------------------------------------------------------------------ checkpoints


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("arch", ["mlp", "small_cnn"])
def test_resume_after_interruption_matches_an_uninterrupted_run(
    arch: str, mnist_slices: tuple[Tensors, Tensors], tmp_path: Path
) -> None:
    train, val = mnist_slices
    train = (train[0][:160], train[1][:160])
    val = (val[0][:60], val[1][:60])
    cfg = _cfg(epochs=4, batch_size=32, patience=0, schedule="cosine")

    ref = _model(arch)
    ref_res = fit(_phase(ref, train, val), cfg)

    ckpt = tmp_path / "ckpt" / "phase"

    def crash_at_2(epoch: int) -> None:
        if epoch == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        fit(_phase(_model(arch), train, val, on_epoch_start=crash_at_2), cfg, ckpt)
    assert ckpt.with_suffix(".json").exists() and ckpt.with_suffix(".safetensors").exists()

    started: list[int] = []
    resumed = _model(arch, seed=123)  # a new process: any initial weights; the checkpoint wins
    res = fit(_phase(resumed, train, val, on_epoch_start=started.append), cfg, ckpt)
    assert started == [2, 3], "resume re-ran finished epochs"
    _assert_states_equal(_state(resumed), _state(ref))
    strip = [{k: v for k, v in r.items()} for r in res.history]
    assert strip == ref_res.history
    assert res.best_epoch == ref_res.best_epoch and res.epochs_run == 4


def test_checkpoint_that_does_not_fit_raises(mnist_slices: tuple[Tensors, Tensors], tmp_path: Path) -> None:
    train, _ = mnist_slices
    ckpt = tmp_path / "phase"
    fit(_phase(_model(hidden=64), train, None), _cfg(epochs=1), ckpt)
    with pytest.raises(CheckpointError, match="checkpoint does not fit this model") as e:
        fit(_phase(_model(hidden=32), train, None), _cfg(epochs=2), ckpt)
    assert str(ckpt) in str(e.value)


def test_torn_checkpoint_is_refused(mnist_slices: tuple[Tensors, Tensors], tmp_path: Path) -> None:
    """Killed between writing the tensors and the JSON: never resume new weights with old counters."""
    train, _ = mnist_slices
    ckpt = tmp_path / "ckpt" / "phase"
    old_json = tmp_path / "old.json"

    def hook(epoch: int) -> None:
        if epoch == 1:
            shutil.copy(ckpt.with_suffix(".json"), old_json)  # the JSON as of epoch 0
        if epoch == 2:  # the epoch-1 tensors are on disk, their JSON "never got written"
            shutil.copy(old_json, ckpt.with_suffix(".json"))
            raise _Interrupt

    with pytest.raises(_Interrupt):
        fit(_phase(_model(), train, None, on_epoch_start=hook), _cfg(epochs=4), ckpt)
    with pytest.raises(CheckpointError, match="does not match phase.json") as e:
        fit(_phase(_model(), train, None), _cfg(epochs=4), ckpt)
    assert str(ckpt.with_suffix(".safetensors")) in str(e.value)


# ------------------------------------------------------------------------------ equivalence


@pytest.mark.parametrize(
    ("optimizer", "grad_clip", "n", "batch_size"),
    [("adamw", 0.0, 128, 128), ("sgd", 0.0, 128, 128), ("adamw", 0.05, 128, 50), ("adamw", 0.0, 101, 50)],
    ids=["adamw-fullbatch", "sgd-fullbatch", "adamw-clip-minibatch", "adamw-no-batch-of-one"],
)
def test_fit_equals_a_hand_written_loop(
    optimizer: str, grad_clip: float, n: int, batch_size: int, mnist_slices: tuple[Tensors, Tensors]
) -> None:
    """pytorch-adapt style: the engine's steps equal plain PyTorch steps on the same model and data."""
    x, y = mnist_slices[0][0][:n], mnist_slices[0][1][:n]
    lr, wd, epochs, seed = 3e-3, 0.05, 3, 7
    cfg = _cfg(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=wd, optimizer=optimizer,
               schedule="constant", grad_clip=grad_clip, patience=0, channels_last="off", seed=seed)
    engine = _model("mlp", seed=1)  # has dropout: the RNG stream must match too
    hand = copy.deepcopy(engine)
    fit(_phase(engine, (x, y), None), cfg)

    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(hand.parameters(), lr=lr, momentum=0.9, nesterov=True,
                                                     weight_decay=wd, fused=True)
    else:
        opt = torch.optim.AdamW(hand.parameters(), lr=lr, weight_decay=wd, fused=True)
    torch.set_flush_denormal(True)  # as fit does on the CPU
    try:
        _hand_epochs(hand, opt, x, y, n, batch_size, epochs, seed, grad_clip)
    finally:
        torch.set_flush_denormal(False)
    _assert_states_equal(_state(engine), _state(hand))


def _hand_epochs(hand: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, n: int,
                 batch_size: int, epochs: int, seed: int, grad_clip: float) -> None:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # batches of `batch_size`; a trailing batch of one joins the previous batch
    bounds = list(range(0, n, batch_size))
    if n % batch_size == 1:
        bounds = bounds[:-1]
    steps = 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        hand.train()
        for j, start in enumerate(bounds):
            idx = perm[start : bounds[j + 1]] if j + 1 < len(bounds) else perm[start:]
            assert len(idx) > 1
            loss = nn.functional.cross_entropy(hand(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(list(hand.parameters()), grad_clip)
            opt.step()
            steps += 1
    assert steps == epochs * len(bounds)


def test_optimizer_groups_scale_lr_and_weight_decay() -> None:
    m = _model()
    groups = [{"params": list(m.groups["fc1"].parameters()), "lr_scale": 0.25},
              {"params": list(m.head.parameters()), "lr_scale": 10.0, "weight_decay": 0.0}]
    opt = make_optimizer(groups, _cfg(weight_decay=0.01), lr=1e-3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2.5e-4, 1e-2])
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert isinstance(opt, torch.optim.AdamW)


def test_fit_restores_the_subnormal_mode_it_found() -> None:
    from transferkit.engine.precision import Placement, denormals_flushed, flush_denormals

    cpu = Placement(torch.device("cpu"), bf16=False, channels_last=False)
    assert not denormals_flushed()
    with flush_denormals(cpu):
        assert denormals_flushed()
        assert (torch.tensor([1e-39]) * 1.0).item() == 0.0
    assert not denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        with flush_denormals(cpu):
            pass
        assert denormals_flushed()  # a caller's choice survives
    finally:
        torch.set_flush_denormal(False)


def test_restored_optimizer_state_follows_a_channels_last_parameter() -> None:
    """Fused AdamW pairs parameter and moment elements by flat position: state loaded contiguous for a
    channels-last weight must be re-laid out, or the resumed step differs from the uninterrupted one."""
    from transferkit.engine.checkpoint import flatten_optimizer, restore_optimizer

    torch.manual_seed(0)
    w0 = torch.randn(8, 3, 3, 3).contiguous(memory_format=torch.channels_last)
    grads = [torch.randn(8, 3, 3, 3).contiguous(memory_format=torch.channels_last) for _ in range(2)]

    def param() -> nn.Parameter:
        return nn.Parameter(w0.clone(memory_format=torch.preserve_format))

    whole = param()
    opt = torch.optim.AdamW([whole], lr=0.1, fused=True)
    for g in grads:
        whole.grad = g.clone(memory_format=torch.preserve_format)
        opt.step()

    resumed = param()
    opt = torch.optim.AdamW([resumed], lr=0.1, fused=True)
    resumed.grad = grads[0].clone(memory_format=torch.preserve_format)
    opt.step()
    tensors, meta = flatten_optimizer(opt)
    tensors = {k: v.contiguous() for k, v in tensors.items()}  # as safetensors gives them back
    opt = torch.optim.AdamW([resumed], lr=0.1, fused=True)
    restore_optimizer(opt, tensors, meta)
    resumed.grad = grads[1].clone(memory_format=torch.preserve_format)
    opt.step()
    assert torch.equal(whole.detach(), resumed.detach())


@pytest.mark.parametrize("mode", ["train", "frozen"])
def test_batchnorm_frozen_keeps_running_statistics(mode: str, mnist_slices: tuple[Tensors, Tensors]) -> None:
    """``batchnorm=frozen``: every BatchNorm normalises with its running statistics (left as they
    were) while its affine parameters still train; ``train`` updates the statistics."""
    x, y = mnist_slices[0][0][:96], mnist_slices[0][1][:96]
    model = _model("small_cnn", seed=0)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d)]
    assert bns
    before = [(m.running_mean.clone(), m.running_var.clone(), m.weight.detach().clone()) for m in bns]
    fit(_phase(model, (x, y), None), _cfg(epochs=1, batch_size=32, batchnorm=mode, patience=0))
    stats_kept = all(torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
                     for m, (mean, var, _) in zip(bns, before))
    assert stats_kept == (mode == "frozen")
    assert all(not torch.equal(m.weight.detach(), w) for m, (_, _, w) in zip(bns, before))
