"""What makes predict --adapt fast without changing what it computes: small_cnn's ReLU after its max-pool, the
gradient layout under channels-last, frozen weights cast to bf16 once, and EATA's Fisher estimate cached in the
run folder."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import sys
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
from transferkit.prediction import FISHER_CACHE, clean_inputs, fisher_key, predict_stream
from transferkit.runs import load_run
from transferkit.testtime import EataAdapter, EataOptions, adapt_stream, affine_parameters, make_adapter
from transferkit.testtime_speed import keep_freed_memory

FP32 = Placement(torch.device("cpu"), False, False)
FP32_CL = Placement(torch.device("cpu"), False, True)
BF16_CL = Placement(torch.device("cpu"), True, True)


@pytest.fixture(scope="module")
def noisy(mnist_ds: ArrayDataset) -> torch.Tensor:
    te = split(mnist_ds, seed=0).test
    return torch.from_numpy(corrupt(te.x[:256], "noise", 4, seed=0))


@pytest.mark.parametrize("frozen_norms", [None, 0])  # the default, and every layer trained (the papers')
def test_channels_last_gradients_arrive_channels_last_and_change_no_value(source_model: TransferModel,
                                                                          noisy: torch.Tensor,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          frozen_norms: int | None) -> None:
    """The flatten before the linear layers sends back a contiguous gradient; under channels-last
    the adapter turns it channels-last before the pooling / ReLU / BatchNorm / conv backward."""

    def run(place: Placement) -> tuple[torch.Tensor, list[torch.Tensor], list[bool]]:
        seen: list[bool] = []

        def watch(module: nn.Module, inputs: object, out: torch.Tensor) -> None:  # runs after the adapter's hook
            if out.requires_grad and out.ndim == 4:
                out.register_hook(lambda g: seen.append(g.is_contiguous(memory_format=torch.channels_last)))

        model = copy.deepcopy(source_model)
        adapter = make_adapter("tent", model, place, 10, testtime.TentOptions(frozen_norms=frozen_norms))
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
    monkeypatch.setattr(testtime, "grad_like_output", lambda *args: None)  # without it: mixed layouts
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
    frozen0 = predict_stream(run, tmp_path / "s.npz", "eata", batch_size=32, options=EataOptions(frozen_norms=0))
    assert "from " not in frozen0.summary["fisher_data"]  # other parameters: their own Fisher
    # the key itself tells the settings apart (on a model whose layers share one width, shapes would not)
    loaded, place = load_run(run), Placement(torch.device("cpu"), False, False)
    assert fisher_key(loaded, [500, 0], 32, place) != fisher_key(loaded, [500, 1], 32, place)
    (run / FISHER_CACHE).write_bytes(b"torn")  # a damaged cache file is estimated again, never an error
    assert "from " not in predict_stream(run, tmp_path / "s.npz", "eata", batch_size=32).summary["fisher_data"]


def relu_before_pool(model: TransferModel) -> TransferModel:
    """``model`` (small_cnn) with each conv block in its order before the change: conv, BN, ReLU, max-pool."""
    old = copy.deepcopy(model)
    for g in ("conv1", "conv2"):
        block = old.groups[g]
        assert [type(m).__name__ for m in block] == ["Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU"]
        block._modules["2"], block._modules["3"] = block._modules["3"], block._modules["2"]
    return old


def test_small_cnn_pool_before_relu_computes_what_relu_before_pool_did(source_run: Path, noisy: torch.Tensor,
                                                                       tmp_path: Path) -> None:
    """Same logits (eval, and tent's batch statistics) and the same tent updates on real digits; weights saved
    by the old order load into a run of the new one."""
    new = load_run(source_run).model
    old = relu_before_pool(new)
    with torch.no_grad():
        assert torch.equal(old.eval()(noisy), new.eval()(noisy))
    got = {}
    for name, model in (("old", copy.deepcopy(old)), ("new", copy.deepcopy(new))):
        adapter = make_adapter("tent", model, FP32, 10, testtime.TentOptions(lr=1e-2, frozen_norms=0))
        logits, _ = adapt_stream(adapter, noisy, 64)  # every layer trained: the backward through both blocks
        got[name] = (logits, [p.detach().clone() for p in adapter.params])
    assert torch.allclose(got["old"][0], got["new"][0], atol=1e-5)
    assert not torch.equal(got["new"][1][0], new.groups["conv1"][1].weight)  # tent moved it
    for a, b in zip(got["old"][1], got["new"][1], strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # a run folder whose weights were saved from the old order loads, strictly, and predicts the same
    run = tmp_path / "run"
    shutil.copytree(source_run, run)
    gen, params = torch.Generator().manual_seed(0), dict(old.named_parameters())  # buffers kept: a perturbed
    trained = {k: v + 0.01 * torch.randn(v.shape, generator=gen) if k in params else v  # running_var could go < 0
               for k, v in old.state_dict().items()}
    old.load_state_dict(trained)
    save_tensors(run / "model.safetensors", {k: v.contiguous() for k, v in old.state_dict().items()},
                 metadata={"format": "pt"})
    with torch.no_grad():
        assert torch.equal(load_run(run).model.eval()(noisy), old.eval()(noisy))


def test_frozen_weights_held_in_bf16_change_no_value_and_are_put_back(source_model: TransferModel,
                                                                      noisy: torch.Tensor,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Under bf16 autocast, casting the frozen conv / linear weights once gives bit-identical logits, entropies
    and adapted parameters to autocast's cast in every batch; after the stream they are fp32 again."""
    before = {k: v.clone() for k, v in source_model.state_dict().items()}
    affine = {n for n, p in source_model.named_parameters() if any(p is q for q in affine_parameters(source_model))}
    assert len(affine) == 4

    def run(method: str, cast: bool) -> tuple[torch.Tensor, list[float], dict[str, torch.Tensor]]:
        model = copy.deepcopy(source_model)
        seen: list[torch.dtype] = []
        name, _, every = method.partition("-")  # tent-all: --adapt-frozen-norms 0
        cls = testtime.TTA_METHODS.get(name).options_type
        adapter = make_adapter(name, model, BF16_CL, 10, cls(frozen_norms=0) if every else cls())
        with adapter.active():
            seen = [model.groups["fc"][2].weight.dtype, model.groups["conv1"][1].weight.dtype]
            logits, recs = [], []
            for i in range(0, len(noisy), 64):
                lg, rec = adapter.step(noisy[i : i + 64])
                logits.append(lg)
                recs.append(rec.entropy)
        assert seen == ([torch.bfloat16, torch.float32] if cast else [torch.float32, torch.float32])
        return torch.cat(logits), recs, model.state_dict()

    for method in ("bn", "tent", "eata", "tent-all", "eata-all"):
        logits, ent, state = run(method, True)
        with monkeypatch.context() as m:
            m.setattr(testtime, "frozen_weights_in_bf16", lambda *args: contextlib.nullcontext())
            ref_logits, ref_ent, ref_state = run(method, False)
        assert torch.equal(logits, ref_logits) and ent == ref_ent, method
        assert {k: v.dtype for k, v in state.items()} == {k: v.dtype for k, v in before.items()}
        for k, v in state.items():
            assert torch.equal(v, ref_state[k]), (method, k)
            if k not in affine:  # the frozen weights: the fp32 tensors as they were
                assert torch.equal(v, before[k]), (method, k)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_sets_glibc_thresholds_once() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert keep_freed_memory() is True and keep_freed_memory() is True
