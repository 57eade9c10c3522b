"""What makes predict --adapt fast without changing what it computes: the gradient layout under
channels-last, and EATA's Fisher estimate cached in the run folder."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from transferkit import testtime
from transferkit.data import ArrayDataset, split
from transferkit.data.corruptions import corrupt
from transferkit.engine.precision import Placement, resolve_placement
from transferkit.io import load_tensors, save_tensors
from transferkit.models import TransferModel
from transferkit.prediction import FISHER_CACHE, clean_inputs, predict_stream
from transferkit.runs import load_run
from transferkit.testtime import EataAdapter, make_adapter

FP32 = Placement(torch.device("cpu"), False, False)
FP32_CL = Placement(torch.device("cpu"), False, True)


@pytest.fixture(scope="module")
def noisy(mnist_ds: ArrayDataset) -> torch.Tensor:
    te = split(mnist_ds, seed=0).test
    return torch.from_numpy(corrupt(te.x[:256], "noise", 4, seed=0))


def test_channels_last_gradients_arrive_channels_last_and_change_no_value(source_model: TransferModel,
                                                                          noisy: torch.Tensor,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The flatten before the linear layers sends back a contiguous gradient; under channels-last
    the adapter turns it channels-last before the pooling / ReLU / BatchNorm / conv backward."""

    def run(place: Placement) -> tuple[torch.Tensor, list[torch.Tensor], list[bool]]:
        seen: list[bool] = []

        def watch(module: nn.Module, inputs: object, out: torch.Tensor) -> None:  # runs after the adapter's hook
            if out.requires_grad and out.ndim == 4:
                out.register_hook(lambda g: seen.append(g.is_contiguous(memory_format=torch.channels_last)))

        model = copy.deepcopy(source_model)
        adapter = make_adapter("tent", model, place, 10)
        with adapter.active():
            handles = [m.register_forward_hook(watch) for m in model.modules() if not any(m.children())]
            logits = torch.cat([adapter.step(noisy[i : i + 64])[0] for i in range(0, len(noisy), 64)])
            for h in handles:
                h.remove()
        assert [p.requires_grad for p in model.parameters()] == [p.requires_grad for p in source_model.parameters()]
        return logits, [p.detach().clone() for p in adapter.params], seen

    logits, params, seen = run(FP32_CL)
    assert seen and all(seen), seen
    plain_logits, plain_params, _ = run(FP32)
    assert torch.allclose(logits, plain_logits, atol=1e-4)
    for a, b in zip(params, plain_params, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    monkeypatch.setattr(testtime, "_grad_like_output", lambda *args: None)  # without it: mixed layouts
    assert not all(run(FP32_CL)[2])


def test_eata_fisher_is_cached_in_the_run_and_equals_a_fresh_estimate(source_run: Path, noisy: torch.Tensor,
                                                                     tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(source_run, run)
    np.savez(tmp_path / "s.npz", x=noisy.numpy())
    first = predict_stream(run, tmp_path / "s.npz", "eata", batch_size=64)
    assert "validation split" in first.summary["fisher_data"] and "from " not in first.summary["fisher_data"]
    assert FISHER_CACHE in json.loads((run / "run.json").read_text())["files"]  # --overwrite removes it
    second = predict_stream(run, tmp_path / "s.npz", "eata", batch_size=64)
    assert second.summary["fisher_data"].endswith(f"(from {FISHER_CACHE} in the run folder)")
    assert [r["class"] for r in second.rows] == [r["class"] for r in first.rows]
    assert [r["entropy"] for r in second.batches] == [r["entropy"] for r in first.batches]
    # the cached tensors are the estimate predict makes: same clean inputs, batch size and placement
    loaded = load_run(run)
    fresh = make_adapter("eata", loaded.model, resolve_placement(loaded.model, "auto", "auto"), 10)
    assert isinstance(fresh, EataAdapter)
    clean, _ = clean_inputs(loaded.config, loaded.spec, fresh.options.fisher_samples)
    assert clean is not None
    with fresh.active():
        fresh.estimate_fisher(clean, 64)
    cached = load_tensors(run / FISHER_CACHE)
    assert fresh.fisher is not None and len(cached) == len(fresh.fisher) == len(fresh.params)
    for i, f in enumerate(fresh.fisher):
        assert torch.allclose(cached[f"fisher.{i}"], f, rtol=1e-3, atol=1e-12)


def test_eata_fisher_cache_is_redone_when_the_run_or_the_batch_changes(source_run: Path, noisy: torch.Tensor,
                                                                       tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(source_run, run)
    np.savez(tmp_path / "s.npz", x=noisy.numpy())
    predict_stream(run, tmp_path / "s.npz", "eata", batch_size=64)
    other_batch = predict_stream(run, tmp_path / "s.npz", "eata", batch_size=32)
    assert "from " not in other_batch.summary["fisher_data"]  # batch statistics differ: estimated again
    weights = load_tensors(run / "model.safetensors")
    weights["head.bias"] = weights["head.bias"] + 0.5  # the run's weights change: the cache no longer applies
    save_tensors(run / "model.safetensors", weights, metadata={"format": "pt"})
    assert "from " not in predict_stream(run, tmp_path / "s.npz", "eata", batch_size=32).summary["fisher_data"]
    assert "from " in predict_stream(run, tmp_path / "s.npz", "eata", batch_size=32).summary["fisher_data"]
    (run / FISHER_CACHE).write_bytes(b"torn")  # a damaged cache file is estimated again, never an error
    assert "from " not in predict_stream(run, tmp_path / "s.npz", "eata", batch_size=32).summary["fisher_data"]
