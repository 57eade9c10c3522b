"""The light image augmentation: shapes and ranges, label-preserving per kind, seeded, training batches only,
resumable, and wired through recipes, transfer() and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import transferkit
from transferkit.data.augment import LightAugment, augment_batch, image_kind, light_matrices
from transferkit.engine.config import TrainConfig
from transferkit.engine.loop import Phase, fit
from transferkit.errors import ConfigError
from transferkit.models import ModelSpec, build_model
from transferkit.strategies.base import TransferContext
from transferkit.strategies.recipes import attach_augment, given_settings

DIGITS = [str(i) for i in range(10)]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_policy_keeps_shape_dtype_layout_and_range() -> None:
    x = torch.rand(8, 3, 32, 32)
    for policy in (LightAugment.for_kind("glyph"), LightAugment.for_kind("photo")):
        y = augment_batch(x, policy, _gen())
        assert y.shape == x.shape and y.dtype == x.dtype and not torch.allclose(x, y)
        assert y.min() >= x.min() - 1e-6 and y.max() <= x.max() + 1e-6
    cl = x.contiguous(memory_format=torch.channels_last).to(torch.bfloat16)
    y = augment_batch(cl, LightAugment(), _gen())
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    still = LightAugment(rotate=0, translate=0, scale=(1.0, 1.0))
    assert torch.allclose(augment_batch(x, still, _gen()), x, atol=1e-5)


def test_digits_are_never_flipped_photos_half_the_time() -> None:
    digits = torch.zeros(4, 1, 28, 28)
    grey_rgb = torch.rand(4, 1, 16, 16).expand(4, 3, 16, 16)  # a grey digit converted for an RGB backbone
    assert image_kind(digits) == "glyph" and image_kind(grey_rgb) == "glyph"
    assert image_kind(torch.rand(4, 3, 8, 8)) == "photo"
    glyph = LightAugment.for_kind("glyph")
    assert not glyph.flip and glyph.crop is None
    det = torch.linalg.det(light_matrices(2000, glyph, _gen())[:, :, :2])
    assert (det > 0).all()  # no reflection ever: a mirrored digit is not the digit
    det = torch.linalg.det(light_matrices(2000, LightAugment.for_kind("photo"), _gen())[:, :, :2])
    assert 0.45 < (det < 0).float().mean().item() < 0.55


def test_glyph_warp_stays_small_and_keeps_the_ink() -> None:
    """Rotation within 10 degrees, shift within ~2 px, scale 0.9-1.1: a digit moves, it is not cut off."""
    theta = light_matrices(1000, LightAugment(), _gen())
    angle = torch.atan2(theta[:, 1, 0], theta[:, 0, 0]).rad2deg()
    assert angle.abs().max() <= 10.0 + 1e-4 and theta[:, :, 2].abs().max() <= 2 * 0.08 + 1e-6
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0
    ink = augment_batch(x, LightAugment(), _gen()).flatten(1).sum(1) / x.flatten(1).sum(1)
    assert ((ink > 0.75) & (ink < 1.3)).all()


def test_seeded_by_the_generator_and_independent_of_the_global_rng() -> None:
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(1)
    a = augment_batch(x, LightAugment.for_kind("photo"), _gen(5))
    torch.manual_seed(2)
    b = augment_batch(x, LightAugment.for_kind("photo"), _gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, augment_batch(x, LightAugment.for_kind("photo"), _gen(6)))
    with pytest.raises(ConfigError, match="crop"):
        LightAugment(crop=(0.5, 1.5))


def _phase(model: torch.nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
           **kw: Any) -> Phase:
    return Phase("finetune", model, train, val, [{"params": list(model.parameters())}], **kw)


def _small(seed: int = 0) -> torch.nn.Module:
    return build_model(ModelSpec("small_cnn", (1, 28, 28), DIGITS, {"width": 4, "hidden": 16}), seed)


def test_only_training_batches_are_augmented(mnist_slices: Any) -> None:
    (xt, yt), (xv, yv) = mnist_slices
    seen: list[torch.Tensor] = []

    def spy(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        seen.append(x)
        return LightAugment()(x, gen)

    cfg = TrainConfig(epochs=2, batch_size=64, precision="fp32", progress="off", patience=0)
    fit(_phase(_small(), (xt[:128], yt[:128]), (xv[:50], yv[:50]), augment=spy), cfg)
    assert len(seen) == 4 and sum(len(b) for b in seen) == 256  # two epochs of 128; never the 50 validation images
    train_rows = {tuple(r.tolist()) for r in xt[:128].flatten(1)[:, ::37]}
    assert all(tuple(r.tolist()) in train_rows for b in seen for r in b.flatten(1)[:, ::37])


class _Stop(Exception):
    pass


def test_an_augmented_run_resumes_to_identical_weights(mnist_slices: Any, tmp_path: Path) -> None:
    (xt, yt), (xv, yv) = mnist_slices
    train, val = (xt[:96], yt[:96]), (xv[:40], yv[:40])
    cfg = TrainConfig(epochs=4, batch_size=32, precision="fp32", progress="off", patience=0)
    ref = _small()
    fit(_phase(ref, train, val, augment=LightAugment()), cfg)
    plain = _small()
    fit(_phase(plain, train, val), cfg)
    assert not torch.equal(plain.state_dict()["head.weight"], ref.state_dict()["head.weight"])  # it did augment

    def stop_at_2(epoch: int) -> None:
        if epoch == 2:
            raise _Stop

    ckpt = tmp_path / "ckpt" / "0-finetune"
    with pytest.raises(_Stop):
        fit(_phase(_small(), train, val, augment=LightAugment(), on_epoch_start=stop_at_2), cfg, ckpt)
    torch.manual_seed(99)  # a new process: another global RNG state; the augmentation must not read it
    resumed = _small(seed=7)
    fit(_phase(resumed, train, val, augment=LightAugment()), cfg, ckpt)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def _ctx(augment: str, modality: str = "image") -> TransferContext:
    model = _small()
    model.spec.modality = modality
    x = torch.rand(20, 1, 28, 28)
    return TransferContext(model, {}, (x, torch.arange(20) % 10), None, TrainConfig(augment=augment), lambda: model,
                           user_set=frozenset())


def test_attach_gives_the_policy_to_model_phases_never_to_a_probe_on_features() -> None:
    ctx = _ctx("on")
    probe = Phase("probe", ctx.model.head, (torch.rand(20, 16), ctx.train[1]), None, [])
    ft = Phase("finetune", ctx.model, ctx.train, None, [])
    attach_augment(probe, ctx)
    attach_augment(ft, ctx)
    assert probe.augment is None and ft.augment == LightAugment.for_kind("glyph")
    assert ctx.info["augment"]["augmented"] == ["finetune"] and ctx.info["augment"]["source"] == "given"
    assert ctx.info["augment"]["not_augmented"][0].startswith("probe (trains on cached features")
    for setting in ("off", "auto"):  # auto that no recipe resolved is off
        ctx = _ctx(setting)
        attach_augment(ft, ctx)
        assert "augment" not in ctx.info
    with pytest.raises(ConfigError, match="augment=on applies to image models; small_cnn takes text"):
        attach_augment(Phase("finetune", ctx.model, ctx.train, None, []), _ctx("on", modality="text"))
    assert given_settings({"augment": "auto", "lr": 1.0}) == {"lr"} and given_settings({"augment": "on"}) == {"augment"}


def test_the_recipe_applies_only_the_measured_affine_part_to_colour_images() -> None:
    """Before: the small_cnn recipe said ``on``, so colour photos also got crop + flip, never measured."""
    from transferkit.strategies.recipes import apply_recipe

    photos = (torch.rand(20, 3, 28, 28), torch.arange(20) % 10)
    for setting, expected in (("auto", LightAugment()), ("affine", LightAugment()),
                              ("on", LightAugment.for_kind("photo"))):
        model = _small()
        ctx = TransferContext(model, {}, photos, None, TrainConfig(augment=setting), lambda: model,
                              user_set=frozenset() if setting == "auto" else frozenset({"augment"}))
        apply_recipe("full", ctx)
        ft = Phase("finetune", ctx.model, ctx.train, None, [])
        attach_augment(ft, ctx)
        assert ft.augment == expected and ctx.info["augment"]["kind"] == "photo", setting
        assert ctx.info["augment"]["source"] == ("recipe" if setting == "auto" else "given")


def test_transfer_records_the_setting_and_augments_only_fine_tuning(source_run: Path, tmp_path: Path) -> None:
    kw: dict[str, Any] = {"shots": 3, "epochs": 2, "batch_size": 16, "precision": "fp32", "progress": "off"}
    res = transferkit.transfer(source_run, "digits8", strategy="lp_ft", out=tmp_path / "on", augment="on", **kw)
    rec = res.metrics["strategy_info"]["augment"]
    assert rec["augmented"] == ["finetune"] and rec["kind"] == "glyph" and rec["policy"]["flip"] is False
    assert json.loads((tmp_path / "on" / "config.json").read_text())["train"]["augment"] == "on"
    res = transferkit.transfer(source_run, "digits8", strategy="linear_probe", augment="on", **kw)
    assert res.metrics["strategy_info"]["augment"]["augmented"] == []
    res = transferkit.transfer(source_run, "digits8", strategy="lp_ft", augment="off", **kw)
    assert "augment" not in res.metrics["strategy_info"]


def test_cli_flag_is_checked_in_one_line(capsys: pytest.CaptureFixture[str], source_run: Path, tmp_path: Path) -> None:
    from transferkit.cli import main

    code = main(["transfer", "--source", str(source_run), "--data", "digits8", "--shots", "2", "--augment", "sideways",
                 "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and err == ["transferkit: error: augment='sideways' is not one of auto, on, affine, off"]
    assert not (tmp_path / "bad").exists()


def test_auto_takes_the_recipe_and_config_json_says_so(source_run: Path, tmp_path: Path) -> None:
    kw: dict[str, Any] = {"shots": 2, "epochs": 1, "batch_size": 16, "precision": "fp32", "progress": "off"}
    for given in ({}, {"augment": "auto"}):  # auto given explicitly is still the recipe's
        out = tmp_path / f"run{len(given)}"
        res = transferkit.transfer(source_run, "digits8", strategy="full", out=out, **given, **kw)
        config = json.loads((out / "config.json").read_text())
        assert config["train"]["augment"] == "affine" and config["recipe"] == {"augment": "affine"}
        assert res.metrics["strategy_info"]["augment"]["source"] == "recipe"
        assert any("small_cnn recipe for full: augment=affine" in n for n in res.notes)
    res = transferkit.transfer(source_run, "digits8", strategy="full", out=tmp_path / "off", augment="off", **kw)
    assert json.loads((tmp_path / "off" / "config.json").read_text())["recipe"] is None
    assert "augment" not in res.metrics["strategy_info"]
