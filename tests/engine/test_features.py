"""The frozen-feature cache: keyed by backbone weights, data and precision; equal to a direct forward."""

from __future__ import annotations

import copy

import pytest
import torch

from transferkit.engine.features import FeatureCache, extract_features, fingerprint
from transferkit.engine.precision import Placement, resolve_placement
from transferkit.models import TransferModel

CPU_FP32 = Placement(torch.device("cpu"), bf16=False, channels_last=False)
Tensors = tuple[torch.Tensor, torch.Tensor]


@pytest.fixture()
def x(mnist_slices: tuple[Tensors, Tensors]) -> torch.Tensor:
    return mnist_slices[1][0][:120]


def test_hit_on_same_weights_and_data(source_model: TransferModel, x: torch.Tensor) -> None:
    cache = FeatureCache()
    a = cache.features(source_model, x, CPU_FP32)
    b = cache.features(source_model, x.clone(), CPU_FP32)
    assert (cache.misses, cache.hits) == (1, 1)
    assert torch.equal(a, b)
    # keyed by content, not identity: a copy of the model with the same weights hits too
    cache.features(copy.deepcopy(source_model), x, CPU_FP32)
    assert cache.hits == 2


def test_miss_when_backbone_weights_change(source_model: TransferModel, x: torch.Tensor) -> None:
    cache = FeatureCache()
    before = cache.features(source_model, x, CPU_FP32)
    with torch.no_grad():
        source_model.groups["fc"][2].weight.mul_(1.1)
    after = cache.features(source_model, x, CPU_FP32)
    assert (cache.misses, cache.hits) == (2, 0)
    assert not torch.equal(before, after)


def test_miss_when_batchnorm_statistics_change(source_model: TransferModel, x: torch.Tensor) -> None:
    cache = FeatureCache()
    cache.features(source_model, x, CPU_FP32)
    with torch.no_grad():
        source_model.groups["conv1"][1].running_mean += 0.1
    cache.features(source_model, x, CPU_FP32)
    assert cache.misses == 2


def test_head_changes_do_not_invalidate(source_model: TransferModel, x: torch.Tensor) -> None:
    cache = FeatureCache()
    cache.features(source_model, x, CPU_FP32)
    source_model.reset_head(["a", "b", "c"])
    cache.features(source_model, x, CPU_FP32)
    assert (cache.misses, cache.hits) == (1, 1)


def test_miss_on_other_data_or_precision(source_model: TransferModel, x: torch.Tensor) -> None:
    cache = FeatureCache()
    cache.features(source_model, x, CPU_FP32)
    x2 = x.clone()
    x2[0, 0, 0, 0] += 0.01
    cache.features(source_model, x2, CPU_FP32)
    cache.features(source_model, x, Placement(torch.device("cpu"), bf16=True, channels_last=False))
    assert (cache.misses, cache.hits) == (3, 0)


def test_lru_eviction(source_model: TransferModel, x: torch.Tensor) -> None:
    cache = FeatureCache(max_entries=2)
    for i in range(3):
        cache.features(source_model, x[i * 10 : (i + 1) * 10], CPU_FP32)
    cache.features(source_model, x[20:30], CPU_FP32)  # newest: still there
    assert cache.hits == 1
    cache.features(source_model, x[0:10], CPU_FP32)  # oldest: evicted
    assert cache.misses == 4


def test_cached_features_equal_a_direct_forward(source_model: TransferModel, x: torch.Tensor) -> None:
    source_model.train()  # the cache must use eval mode (BatchNorm statistics, no dropout) regardless
    state = {k: v.clone() for k, v in source_model.state_dict().items()}
    feats = FeatureCache().features(source_model, x, CPU_FP32)
    assert source_model.training, "the model's mode was not restored"
    for k, v in source_model.state_dict().items():
        assert torch.equal(v, state[k]), f"extracting features changed {k}"
    with torch.no_grad():
        direct = copy.deepcopy(source_model).eval().forward_features(x)
    assert feats.shape == (len(x), source_model.feature_dim)
    assert feats.dtype == torch.float32
    torch.testing.assert_close(feats, direct, rtol=1e-5, atol=1e-6)


def test_default_placement_features_match(source_model: TransferModel, x: torch.Tensor) -> None:
    place = resolve_placement(source_model, "fp32", "auto")
    feats = extract_features(source_model, x, place)
    with torch.no_grad():
        direct = source_model.eval().forward_features(x)
    torch.testing.assert_close(feats, direct, rtol=1e-4, atol=1e-5)


def test_fingerprint_sees_dtype_shape_and_values() -> None:
    t = torch.arange(6, dtype=torch.float32)
    assert fingerprint(t) == fingerprint(t.clone())
    assert fingerprint(t) != fingerprint(t.reshape(2, 3))
    assert fingerprint(t) != fingerprint(t.double())
    t2 = t.clone()
    t2[3] = 3.5
    assert fingerprint(t) != fingerprint(t2)


def test_features_past_the_memory_budget_spill_to_a_memory_mapped_file(tmp_path, source_model, digits_fewshot):  # type: ignore[no-untyped-def]
    from transferkit.engine.features import FeatureCache
    from transferkit.engine.precision import resolve_placement

    (x, _), _ = digits_fewshot
    place = resolve_placement(source_model, "fp32", "off")
    roomy = FeatureCache()
    ram = roomy.features(source_model, x, place)
    assert roomy.spill_dir is None  # no temporary folder is made unless features spill
    small = FeatureCache(memory_budget=1024, spill_dir=tmp_path)
    spilled = small.features(source_model, x, place)
    assert small.spilled == 1 and list(tmp_path.glob("*.npy"))
    assert torch.equal(ram, spilled)
    assert small.features(source_model, x, place) is spilled  # still a cache hit
