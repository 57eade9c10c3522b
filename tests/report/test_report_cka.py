"""Linear CKA against two independent NumPy formulations (feature space and kernel HSIC), its
invariances, and the per-layer views built on it (layer CKA, relative weight change)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from transferkit.evaluation.cka import layer_cka, linear_cka, weight_change
from transferkit.models import ModelSpec, TransferModel, build_model

CLASSES = [str(i) for i in range(10)]


def cka_features(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. 2019, eq. (5), written out directly on centred feature matrices."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    num = np.linalg.norm(y.T @ x, "fro") ** 2
    return float(num / (np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro")))


def cka_hsic(x: np.ndarray, y: np.ndarray) -> float:
    """The same quantity as normalised HSIC of linear kernels: HSIC(K, L) = tr(K H L H) / (n-1)^2."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    kx, ky = x @ x.T, y @ y.T

    def hsic(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.trace(a @ h @ b @ h)) / (n - 1) ** 2

    return hsic(kx, ky) / math.sqrt(hsic(kx, kx) * hsic(ky, ky))


def _orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize(("n", "d1", "d2"), [(200, 12, 7), (30, 50, 80), (64, 64, 3)], ids=["N>D", "N<D", "N=D"])
def test_matches_direct_numpy_formula_and_hsic(n: int, d1: int, d2: int) -> None:
    rng = np.random.default_rng(n + d1)
    x = rng.normal(size=(n, d1))
    y = np.tanh(x @ rng.normal(size=(d1, d2))) + 0.5 * rng.normal(size=(n, d2))  # related, not identical
    got = linear_cka(x, y)
    assert got == pytest.approx(cka_features(x, y), rel=1e-9, abs=1e-12)
    assert got == pytest.approx(cka_hsic(x, y), rel=1e-9, abs=1e-12)
    assert 0.05 < got < 0.999


def test_self_similarity_is_one_and_torch_inputs_work() -> None:
    rng = np.random.default_rng(0)
    for shape in [(100, 5), (20, 300), (16, 3, 4, 4)]:
        x = rng.normal(size=shape)
        assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
        t = torch.from_numpy(x).float()
        assert linear_cka(t, t) == pytest.approx(1.0, abs=1e-6)


def test_invariant_to_orthogonal_transform_and_isotropic_scaling() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 10))
    y = x @ rng.normal(size=(10, 6)) + rng.normal(size=(80, 6))
    base = linear_cka(x, y)
    q = _orthogonal(10, rng)
    assert linear_cka(x @ q, y) == pytest.approx(base, rel=1e-9)
    assert linear_cka(3.7 * x, 0.02 * y) == pytest.approx(base, rel=1e-9)
    assert linear_cka(x + 5.0, y - 2.0) == pytest.approx(base, rel=1e-9)  # centring removes offsets
    assert linear_cka(y, x) == pytest.approx(base, rel=1e-9)  # symmetric
    # ... but not invariant to an arbitrary (non-orthogonal) invertible map, unlike CCA
    stretch = np.diag(np.geomspace(1, 100, 10))
    assert abs(linear_cka(x @ stretch, y) - base) > 1e-3


def test_unrelated_representations_score_low() -> None:
    rng = np.random.default_rng(2)
    assert linear_cka(rng.normal(size=(2000, 5)), rng.normal(size=(2000, 5))) < 0.02


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(np.zeros((5, 2)), np.zeros((6, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        linear_cka(np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        linear_cka(np.ones(4), np.ones(4))
    assert math.isnan(linear_cka(np.ones((10, 3)), np.random.default_rng(0).normal(size=(10, 3))))  # constant


def _tiny(seed: int = 0) -> TransferModel:
    return build_model(ModelSpec("small_cnn", (1, 28, 28), list(CLASSES), {"width": 4, "hidden": 16}), seed)


def test_weight_change_zero_for_identical_models_and_exact_for_a_known_shift() -> None:
    a = _tiny()
    b = copy.deepcopy(a)
    assert weight_change(a, b) == {"conv1": 0.0, "conv2": 0.0, "fc": 0.0, "head": 0.0}
    delta = torch.randn_like(b.groups["fc"][2].weight) * 0.01
    with torch.no_grad():
        b.groups["fc"][2].weight += delta
    moved = b.groups["fc"][2].weight.detach().double() - a.groups["fc"][2].weight.detach().double()  # delta in fp32
    fc_params = list(a.groups["fc"].parameters())
    expected = float(moved.norm() / torch.cat([p.detach().double().flatten() for p in fc_params]).norm())
    assert expected == pytest.approx(float(delta.norm() / torch.cat([p.detach().flatten() for p in fc_params]).norm()),
                                     rel=1e-4)
    got = weight_change(a, b)
    assert got["fc"] == pytest.approx(expected, rel=1e-9)
    assert got["conv1"] == got["conv2"] == got["head"] == 0.0
    b.reset_head(["x", "y"])  # a head for other classes cannot be compared weight by weight
    assert math.isnan(weight_change(a, b)["head"])


def test_layer_cka_of_a_model_with_itself_is_one_everywhere_and_hooks_are_removed() -> None:
    a = _tiny(0)
    x = torch.rand(40, 1, 28, 28)
    same = layer_cka(a, copy.deepcopy(a), x, batch_size=16)
    assert list(same) == ["conv1", "conv2", "fc", "head"]
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in same.values())
    assert all(not m._forward_hooks for m in a.modules())
    other = layer_cka(a, _tiny(1), x)  # independent initialisations: less similar
    assert all(0.0 <= v < 0.999 for v in other.values())


def test_layer_cka_matches_linear_cka_on_hand_collected_activations() -> None:
    a, b = _tiny(0), _tiny(3)
    x = torch.rand(32, 1, 28, 28)
    got = layer_cka(a, b, x)
    a.eval()
    b.eval()
    with torch.no_grad():
        ha, hb = a.groups["conv1"](x), b.groups["conv1"](x)
        fa, fb = a.forward_features(x), b.forward_features(x)
    expected = cka_features(ha.flatten(1).double().numpy(), hb.flatten(1).double().numpy())
    assert got["conv1"] == pytest.approx(expected, rel=1e-5)
    assert got["fc"] == pytest.approx(cka_hsic(fa.double().numpy(), fb.double().numpy()), rel=1e-5)


def test_models_with_other_groups_are_rejected() -> None:
    other = build_model(ModelSpec("mlp", (1, 28, 28), list(CLASSES), {"hidden": 8}), 0)
    with pytest.raises(ValueError, match="different layer groups"):
        weight_change(_tiny(), other)
    with pytest.raises(ValueError, match="different layer groups"):
        layer_cka(_tiny(), other, torch.rand(4, 1, 28, 28))


@pytest.fixture(scope="module")
def minilm_pair() -> tuple[TransferModel, TransferModel]:
    """MiniLM and a copy whose last layer is perturbed (a stand-in for a fine-tuned encoder)."""
    from transferkit.models import from_pretrained

    a = from_pretrained("minilm").eval()
    b = copy.deepcopy(a)
    with torch.no_grad():
        for p in b.groups["layer5"].parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    return a, b


def _tweets(n: int) -> torch.Tensor:
    from transferkit.data import load_dataset
    from transferkit.models.text import tokenize

    return torch.from_numpy(tokenize(load_dataset("vader-tweets").x[:n]))


def test_layer_cka_on_text_of_many_lengths_does_not_depend_on_the_batching(
        minilm_pair: tuple[TransferModel, TransferModel]) -> None:
    """Real tweets, more than one encoder chunk: each chunk is trimmed to its longest text, so the
    flattened token states of two batches had different widths (issue 17 item 4: RuntimeError: Sizes
    of tensors must match). A layer's states are now averaged over each text's tokens."""
    a, b = minilm_pair
    x = _tweets(80)
    assert len(set(x[:, 1].sum(1).tolist())) > 10  # many lengths
    by_8 = layer_cka(a, b, x, batch_size=8)
    by_256 = layer_cka(a, b, x, batch_size=256)
    assert list(by_8) == [n for n, _ in a.layer_groups()]
    for g in ("embeddings", "layer0", "layer4"):
        assert by_8[g] == pytest.approx(1.0, abs=1e-9)  # unchanged groups
    assert 0.3 < by_8["layer5"] < 0.9999
    for g in by_8:
        if g != "head":  # the source encoder has a 0-class head: no representation, nan
            assert by_8[g] == pytest.approx(by_256[g], abs=1e-9)


def test_text_activations_are_each_texts_own_mean_token_state(minilm_pair: tuple[TransferModel, TransferModel]) -> None:
    """The pooled layer output of a text in a batch equals that of the text run alone (no padding)."""
    from transferkit.evaluation.cka import group_activations

    a, _ = minilm_pair
    x = _tweets(40)
    together = group_activations(a, x, 64)["layer2"]
    for i in (0, 7, 33):
        alone = group_activations(a, x[i : i + 1], 1)["layer2"]
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-4, atol=1e-5)
