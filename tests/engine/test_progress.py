"""Training progress on stderr: one line per epoch off a terminal, a per-batch bar on one (also while
features are extracted and unlabelled inputs pseudo-labelled), silenced by --progress off or
$TRANSFERKIT_PROGRESS=0, and printed by rank 0 alone."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from transferkit.engine import distributed, progress
from transferkit.engine.config import TrainConfig
from transferkit.engine.features import extract_features
from transferkit.engine.loop import Phase, fit
from transferkit.engine.precision import resolve_placement
from transferkit.errors import ConfigError
from transferkit.models import ModelSpec, build_model

Tensors = tuple[torch.Tensor, torch.Tensor]
LINE = re.compile(r"^transferkit: test epoch (\d+)/3: train loss [0-9.e+-]+, val acc [0-9.]+%, lr [0-9.e+-]+, "
                  r"[0-9.]+ s, ETA \d+ s$")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setattr(progress.EpochProgress, "min_interval", 0.0)  # every epoch's line, however fast


def _model() -> Any:
    return build_model(ModelSpec("mlp", (1, 28, 28), [str(i) for i in range(10)], {"hidden": 32}), 0)


def _fit(mnist_slices: tuple[Tensors, Tensors], setting: str, epochs: int = 3) -> None:
    (x, y), (xv, yv) = mnist_slices
    m = _model()
    cfg = TrainConfig(epochs=epochs, batch_size=32, precision="fp32", progress=setting, patience=0)
    fit(Phase("test", m, (x[:96], y[:96]), (xv[:40], yv[:40]), [{"params": list(m.parameters())}]), cfg)


def test_off_a_terminal_one_line_per_epoch_on_stderr(mnist_slices: tuple[Tensors, Tensors],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _fit(mnist_slices, "auto")  # pytest's captured stderr is not a terminal
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""
    assert [int(LINE.match(ln).group(1)) for ln in lines if LINE.match(ln)] == [1, 2, 3], err  # type: ignore[union-attr]
    assert len(lines) == 3, err


def test_lines_are_thinned_to_one_per_interval_but_keep_the_last(mnist_slices: tuple[Tensors, Tensors],
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress.EpochProgress, "min_interval", 3600.0)
    _fit(mnist_slices, "lines")
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split(":")[1].strip() for ln in lines] == ["test epoch 1/3", "test epoch 3/3"]


@pytest.mark.parametrize(("setting", "env"), [("off", None), ("auto", "0"), ("auto", "off")])
def test_silenced_by_the_setting_or_the_environment(setting: str, env: str | None, mnist_slices: tuple[Tensors, Tensors],
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if env is not None:
        monkeypatch.setenv(progress.ENV, env)
    _fit(mnist_slices, setting)
    assert capsys.readouterr().err == ""


def test_an_explicit_setting_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.ENV, "0")
    assert progress.mode("lines") == "lines" and progress.mode("auto") == "off"
    monkeypatch.setenv(progress.ENV, "lines")
    assert progress.mode("off") == "off" and progress.mode("auto") == "lines"


def test_a_bad_environment_value_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.ENV, "loud")
    with pytest.raises(ConfigError, match=r"\$TRANSFERKIT_PROGRESS='loud' is not one of") as e:
        progress.mode("auto")
    assert "\n" not in str(e.value)


def test_a_bad_environment_value_fails_before_a_run_folder_is_made(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from transferkit.cli import main

    monkeypatch.setenv(progress.ENV, "loud")
    code = main(["pretrain", "--data", "digits8", "--model", "mlp", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1, err
    assert err[0].startswith("transferkit: error: $TRANSFERKIT_PROGRESS='loud' is not one of 0, 1, auto, bar")
    assert not (tmp_path / "run").exists()


def test_only_rank_0_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "is_main", lambda: False)
    assert {progress.mode(s) for s in ("bar", "lines", "auto", "on")} == {"off"}


def test_the_bar_advances_per_batch_with_an_eta(mnist_slices: tuple[Tensors, Tensors],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[tuple[int, int, str]] = []
    close = progress.EpochProgress.close

    def spy(self: progress.EpochProgress) -> None:
        if self.bar is not None:
            shown.append((self.bar.n, self.bar.total, self.bar.format_meter(**self.bar.format_dict)))
        close(self)

    monkeypatch.setattr(progress.EpochProgress, "close", spy)
    _fit(mnist_slices, "bar")  # 96 examples in batches of 32: 3 steps per epoch, 9 in all
    [(n, total, text)] = shown
    assert (n, total) == (9, 9)
    assert re.search(r"9/9 \[\d\d:\d\d<\d\d:\d\d", text), text  # elapsed<remaining: the ETA
    assert "epoch=3/3" in text and "val_acc=" in text, text


def test_feature_extraction_follows_the_runs_setting(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    m = _model()
    place = resolve_placement(m, "fp32", "off", "cpu")
    x = torch.rand(300, 1, 28, 28)  # three batches of 128
    with progress.using("bar"):
        extract_features(m, x, place)
    assert "features" in capsys.readouterr().err
    monkeypatch.setenv(progress.ENV, "bar")
    with progress.using("off"):  # --progress off silences the bars too
        extract_features(m, x, place)
    assert capsys.readouterr().err == ""


def test_self_training_shows_its_pseudo_labelling(source_run: Path, digits_fewshot: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The teacher's pass over the unlabelled inputs gets its own bar, under the run's setting."""
    from transferkit.runs import load_run
    from transferkit.strategies import TransferContext, make_strategy, run_strategy

    seen: list[tuple[str, str]] = []
    real = progress.batch_bar

    def spy(total: int, desc: str) -> Any:
        seen.append((desc, progress.mode()))
        return real(total, desc)

    monkeypatch.setattr(progress, "batch_bar", spy)
    (x, y), val = digits_fewshot
    model = load_run(source_run).model
    cfg = TrainConfig(epochs=1, batch_size=64, precision="fp32", progress="bar")
    ctx = TransferContext(model, {}, (x, y), val, cfg, lambda: model, unlabelled=val[0].repeat(6, 1, 1, 1),
                          probe_epochs=2)
    run_strategy(make_strategy("self_train", {"base": "linear_probe", "teacher": "sgd"}), ctx)
    assert ("pseudo-labelling", "bar") in seen, seen
