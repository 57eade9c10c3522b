"""Test-time adaptation (bn / tent / eata) and the corruption functions, on real MNIST digits."""

from __future__ import annotations

import csv
import json
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.cli import main
from transferkit.data import ArrayDataset, split
from transferkit.data.corruptions import CORRUPTIONS, corrupt, corruption_stream
from transferkit.engine.precision import Placement, predict_logits
from transferkit.errors import ConfigError
from transferkit.models import TransferModel
from transferkit.models.base import ModelSpec
from transferkit.testtime import (
    CollapseOptions,
    EataOptions,
    TentAdapter,
    TentOptions,
    adapt_stream,
    affine_parameters,
    make_adapter,
)

CPU = Placement(torch.device("cpu"), False, False)


@pytest.fixture(scope="module")
def test_split(mnist_ds: ArrayDataset) -> ArrayDataset:
    """mnist5k's test split (the source run's), shuffled: a stream of mixed classes."""
    te = split(mnist_ds, seed=0).test
    return te.subset(np.random.default_rng(0).permutation(len(te)))


@pytest.fixture(scope="module")
def stream(test_split: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise then contrast at severity 5, 256 digits each."""
    x, y, _ = corruption_stream(test_split.x, test_split.require_labels(), ["noise", "contrast"], [5],
                                per_segment=256, seed=0)
    return torch.from_numpy(x), torch.from_numpy(y)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def test_corruptions_are_seeded_graded_and_in_range(test_split: ArrayDataset) -> None:
    x = test_split.x[:64]
    for kind in CORRUPTIONS:
        a, b = corrupt(x, kind, 3, seed=1), corrupt(x, kind, 3, seed=1)
        assert np.array_equal(a, b) and a.shape == x.shape and a.dtype == np.float32
        assert a.min() >= 0 and a.max() <= 1
        damage = [float(np.abs(corrupt(x, kind, s, seed=1) - x).mean()) for s in (1, 3, 5)]
        assert damage[0] < damage[1] < damage[2], (kind, damage)
    with pytest.raises(ConfigError, match=r"severity 6: must be 1\.\.5"):
        corrupt(x, "noise", 6)
    with pytest.raises(ConfigError, match="unknown corruption 'fog'"):
        corrupt(x, "fog", 1)


def test_tent_and_eata_beat_the_unadapted_model(source_model: TransferModel, stream: tuple[torch.Tensor, torch.Tensor],
                                                source_run: object) -> None:
    x, y = stream
    base = accuracy(predict_logits(source_model, x, CPU, 64), y)
    got = {}
    for method in ("bn", "tent", "eata"):
        model = _fresh(source_model)
        logits, records = adapt_stream(make_adapter(method, model, CPU, 10), x, 64)
        got[method] = accuracy(logits, y)
        assert [r.batch for r in records] == list(range(8)) and sum(r.n for r in records) == len(x)
    assert got["tent"] >= base + 0.05 and got["eata"] >= base + 0.05, (base, got)


def _fresh(model: TransferModel) -> TransferModel:
    import copy

    return copy.deepcopy(model)


def test_only_normalisation_affine_parameters_change(source_model: TransferModel,
                                                     stream: tuple[torch.Tensor, torch.Tensor]) -> None:
    before = {k: v.clone() for k, v in source_model.state_dict().items()}
    grads = [p.requires_grad for p in source_model.parameters()]
    modes = [m.training for m in source_model.modules()]
    adapter = make_adapter("eata", source_model, CPU, 10, EataOptions(lr=1e-2))
    _, records = adapt_stream(adapter, stream[0], 64)
    assert sum(r.selected or 0 for r in records) > 0
    affine = {id(p) for p in affine_parameters(source_model)}
    names = {n for n, p in source_model.named_parameters() if id(p) in affine}
    changed = {k for k, v in source_model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= names, changed - names
    assert [m.training for m in source_model.modules()] == modes
    assert [p.requires_grad for p in source_model.parameters()] == grads


def test_frozen_norms_keeps_the_first_layers_affine_and_still_adapts_their_statistics(
        source_model: TransferModel, stream: tuple[torch.Tensor, torch.Tensor]) -> None:
    x = stream[0][:128]
    bns = [m for m in source_model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2  # small_cnn
    changed = {}
    for frozen in (None, 0, 1):
        model = _fresh(source_model)
        before = [(b.weight.detach().clone(), b.bias.detach().clone()) for b in model.modules()
                  if isinstance(b, nn.BatchNorm2d)]
        adapter = make_adapter("tent", model, CPU, 10, TentOptions(lr=1e-2, frozen_norms=frozen))
        assert adapter.frozen_norms == (1 if frozen is None else frozen)
        adapt_stream(adapter, x, 64)
        after = [(b.weight, b.bias) for b in model.modules() if isinstance(b, nn.BatchNorm2d)]
        changed[frozen] = [not (torch.equal(w0, w1) and torch.equal(b0, b1))
                           for (w0, b0), (w1, b1) in zip(before, after, strict=True)]
    assert changed[0] == [True, True] and changed[1] == changed[None] == [False, True]
    # the frozen first layer still normalises with the batch's statistics: a tent batch predicts as a bn batch
    bn_logits, _ = adapt_stream(make_adapter("bn", _fresh(source_model), CPU, 10), x[:64], 64)
    tent_logits, _ = adapt_stream(make_adapter("tent", _fresh(source_model), CPU, 10), x[:64], 64)
    assert torch.allclose(bn_logits, tent_logits, atol=1e-5)
    # every affine layer frozen: nothing to train, one line naming the option; one layer: the default trains it
    with pytest.raises(ConfigError, match=r"^--adapt eata --adapt-frozen-norms 2: model small_cnn has 2 "
                                          r"normalisation layer\(s\) with affine parameters, so none is left"):
        make_adapter("eata", _fresh(source_model), CPU, 10, EataOptions(frozen_norms=2))
    with pytest.raises(ConfigError, match=r"--adapt-frozen-norms -1: must be >= 0"):
        TentOptions(frozen_norms=-1)
    one = TransferModel(OrderedDict(fc=nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.LayerNorm(16))), 16,
                        ModelSpec("tiny", (1, 28, 28), [str(i) for i in range(10)]))
    assert make_adapter("tent", one, CPU, 10).frozen_norms == 0


def test_collapse_resets_to_the_source_weights(source_model: TransferModel,
                                               stream: tuple[torch.Tensor, torch.Tensor]) -> None:
    before = {k: v.clone() for k, v in source_model.state_dict().items()}
    always = CollapseOptions(window=1, share=0.01, entropy=1.0)  # every batch counts as collapsed
    adapter = make_adapter("tent", source_model, CPU, 10, TentOptions(lr=1e-2, collapse=always))
    assert isinstance(adapter, TentAdapter)
    _, records = adapt_stream(adapter, stream[0], 64)
    assert all(r.reset for r in records) and adapter.resets == len(records)
    assert all(torch.equal(v, before[k]) for k, v in source_model.state_dict().items())
    # a learning rate far too high collapses tent onto few classes; the reset keeps accuracy up
    x, y = stream
    acc = {}
    for enabled in (False, True):
        model = _fresh(source_model)
        opts = TentOptions(lr=5.0, optimizer="sgd", collapse=CollapseOptions(enabled=enabled, window=2, share=0.5))
        ad = make_adapter("tent", model, CPU, 10, opts)
        logits, records = adapt_stream(ad, x, 32)
        acc[enabled] = (accuracy(logits, y), sum(r.reset for r in records))
    assert acc[False][1] == 0 and acc[True][1] >= 1, acc
    assert acc[True][0] > acc[False][0] + 0.05, acc


def test_stream_order_is_the_order_given(source_model: TransferModel, test_split: ArrayDataset) -> None:
    clean = torch.from_numpy(test_split.x[:128])
    noisy = torch.from_numpy(corrupt(test_split.x[128:256], "noise", 5, seed=0))
    for first, second in ((clean, noisy), (noisy, clean)):
        _, records = adapt_stream(make_adapter("bn", _fresh(source_model), CPU, 10), torch.cat([first, second]), 64)
        ent = [r.entropy for r in records]
        low, high = (ent[:2], ent[2:]) if first is clean else (ent[2:], ent[:2])
        assert max(low) < min(high), ent
    # bn has no state across batches: batch b's logits are those of batch b predicted alone
    x = torch.cat([clean, noisy])
    logits, _ = adapt_stream(make_adapter("bn", source_model, CPU, 10), x, 64)
    alone, _ = adapt_stream(make_adapter("bn", source_model, CPU, 10), x[64:128], 64)
    assert torch.allclose(logits[64:128], alone, atol=1e-5)


def test_models_without_the_layers_get_one_line_errors(source_model: TransferModel) -> None:
    mlp = TransferModel(OrderedDict(fc=nn.Sequential(nn.Flatten(), nn.Linear(784, 16))), 16,
                        ModelSpec("mlp", (1, 28, 28), [str(i) for i in range(10)]))
    with pytest.raises(ConfigError, match=r"^--adapt tent: model mlp has no normalisation layers[^\n]*$"):
        make_adapter("tent", mlp, CPU, 10)
    ln = TransferModel(OrderedDict(fc=nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.LayerNorm(16))), 16,
                       ModelSpec("minilm", (1, 28, 28), [str(i) for i in range(10)]))
    with pytest.raises(ConfigError, match=r"^--adapt bn: model minilm has no BatchNorm layers \(only LayerNorm"):
        make_adapter("bn", ln, CPU, 10)
    make_adapter("tent", ln, CPU, 10)  # LayerNorm affine: tent applies
    with pytest.raises(ConfigError, match="did you mean 'tent'"):
        make_adapter("tnet", source_model, CPU, 10)
    with pytest.raises(ConfigError, match="optimizer 'rmsprop'"):
        TentOptions(optimizer="rmsprop")


def test_predict_adapt_streams_in_order_and_logs_each_batch(source_run: Path, stream: tuple[torch.Tensor, torch.Tensor],
                                                            tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    x, y = stream
    source_run = shutil.copytree(source_run, tmp_path / "run")  # eata caches its Fisher in the run folder
    np.savez(tmp_path / "stream.npz", x=x.numpy(), y=y.numpy())
    np.savez(tmp_path / "unlabelled.npz", x=x.numpy())
    out = tmp_path / "p.csv"
    assert main(["predict", str(source_run), str(tmp_path / "stream.npz"), "--adapt", "eata", "--labels-if-any",
                 "--batch-size", "100", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["input"] for r in rows] == [f"stream.npz[{i}]" for i in range(len(x))]
    log = list(csv.DictReader((tmp_path / "p.batches.csv").open()))
    assert [int(r["batch"]) for r in log] == list(range(6)) and [int(r["n"]) for r in log] == [100] * 5 + [12]
    summary = json.loads((tmp_path / "p.batches.json").read_text())["summary"]
    hits = [r["class"] == str(int(t)) for r, t in zip(rows, y, strict=True)]
    assert summary["accuracy"] == pytest.approx(np.mean(hits)) and "validation split" in summary["fisher_data"]
    assert all(0 <= int(r["selected"]) <= 100 for r in log) and {r["reset"] for r in log} <= {"0", "1"}
    assert "predict --adapt eata: 512 inputs in 6 batches of 100" in caplog.text and "accuracy" in caplog.text
    # unlabelled inputs: no accuracy column; a file predict did not write is not replaced
    assert main(["predict", str(source_run), str(tmp_path / "unlabelled.npz"), "--adapt", "tent", "--labels-if-any",
                 "--out", str(out)]) == 0
    assert next(csv.reader((tmp_path / "p.batches.csv").open())) == ["batch", "n", "entropy", "selected", "reset"]
    (tmp_path / "q.batches.json").write_text("mine")
    assert main(["predict", str(source_run), str(tmp_path / "unlabelled.npz"), "--adapt", "bn",
                 "--out", str(tmp_path / "q.csv")]) == 2
    assert "q.batches.json: exists and was not written by transferkit predict" in capsys.readouterr().err
    assert (tmp_path / "q.batches.json").read_text() == "mine"
    # --adapt-frozen-norms: recorded as resolved; only for the methods that train
    assert main(["predict", str(source_run), str(tmp_path / "unlabelled.npz"), "--adapt", "tent",
                 "--adapt-frozen-norms", "0", "--out", str(tmp_path / "r.csv")]) == 0
    assert json.loads((tmp_path / "r.batches.json").read_text())["summary"]["options"]["frozen_norms"] == 0
    assert main(["predict", str(source_run), str(tmp_path / "unlabelled.npz"), "--adapt", "tent",
                 "--out", str(tmp_path / "s.csv")]) == 0
    assert json.loads((tmp_path / "s.batches.json").read_text())["summary"]["options"]["frozen_norms"] == 1
    for flags in (["--adapt", "bn"], []):
        assert main(["predict", str(source_run), str(tmp_path / "unlabelled.npz"), *flags,
                     "--adapt-frozen-norms", "1"]) == 2
        assert "--adapt-frozen-norms 1: applies to --adapt tent or eata, not " in capsys.readouterr().err
