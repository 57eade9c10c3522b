"""audio_cnn: the mel filterbank and log-mel front end against NumPy formulas, the model contract,
a run's save/load round trip, and a small pretrain-then-transfer that learns across voices."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.errors import ConfigError
from transferkit.models import MODELS, ModelSpec, build_model
from transferkit.models.audio import LogMel, hz_to_mel, mel_filterbank

CLASSES = [str(i) for i in range(10)]


def _htk_mel(f: float) -> float:
    return 2595.0 * math.log10(1.0 + f / 700.0)


def _reference_filterbank(n_fft: int, n_mels: int, rate: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangles written out bin by bin, from the HTK definition (no vectorisation shared with the library)."""
    lo, hi = _htk_mel(f_min), _htk_mel(f_max)
    edges = [700.0 * (10 ** ((lo + (hi - lo) * i / (n_mels + 1)) / 2595.0) - 1.0) for i in range(n_mels + 2)]
    fb = np.zeros((n_fft // 2 + 1, n_mels))
    for k in range(n_fft // 2 + 1):
        f = k * rate / n_fft
        for m in range(n_mels):
            left, centre, right = edges[m], edges[m + 1], edges[m + 2]
            if left <= f <= centre:
                fb[k, m] = (f - left) / (centre - left)
            elif centre < f <= right:
                fb[k, m] = (right - f) / (right - centre)
    return fb


def test_mel_scale_published_value() -> None:
    assert float(hz_to_mel(1000.0)) == pytest.approx(1000.0, abs=0.1)  # HTK: 1 kHz is about 1000 mel


@pytest.mark.parametrize(("n_fft", "n_mels", "f_min", "f_max"), [(512, 40, 20.0, 8000.0), (400, 23, 0.0, 4000.0)])
def test_mel_filterbank_matches_the_formula(n_fft: int, n_mels: int, f_min: float, f_max: float) -> None:
    ours = mel_filterbank(n_fft, n_mels, 16_000, f_min, f_max)
    np.testing.assert_allclose(ours, _reference_filterbank(n_fft, n_mels, 16_000, f_min, f_max), atol=1e-6)
    assert ours.shape == (n_fft // 2 + 1, n_mels) and (ours.max(axis=0) > 0.5).all()  # no empty band


def test_mel_filterbank_rejects_a_range_beyond_nyquist() -> None:
    with pytest.raises(ConfigError, match="mel range 20-9000 Hz"):
        mel_filterbank(512, 40, 16_000, 20.0, 9000.0)


def test_log_mel_matches_numpy_framing_and_fft() -> None:
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((2, 4000))).astype(np.float32)
    n_fft, win, hop, eps = 512, 400, 160, 1e-6
    front = LogMel(n_mels=40)
    with torch.no_grad():
        ours = front(torch.from_numpy(x)).numpy()
    window = np.zeros(n_fft)  # periodic Hann of 400 samples, centred in the 512-point frame
    window[(n_fft - win) // 2 : (n_fft - win) // 2 + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    padded = np.pad(x.astype(np.float64), [(0, 0), (n_fft // 2, n_fft // 2)])
    frames = np.stack([padded[:, i * hop : i * hop + n_fft] for i in range(1 + 4000 // hop)], axis=1)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # [N, frames, bins]
    logmel = np.log(power @ _reference_filterbank(n_fft, 40, 16_000, 20.0, 8000.0) + eps).transpose(0, 2, 1)
    logmel -= logmel.mean(axis=(1, 2), keepdims=True)
    assert ours.shape == (2, 40, 26)
    np.testing.assert_allclose(ours, logmel, atol=2e-3)


def test_log_mel_ignores_gain_and_stays_float32_under_autocast() -> None:
    x = 0.1 * torch.randn(2, 3200)
    front = LogMel()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = front(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(front(4 * x), front(x), atol=1e-3, rtol=1e-3)


def test_audio_cnn_contract() -> None:
    assert "audio_cnn" in MODELS
    spec = ModelSpec("audio_cnn", (16_000,), list(CLASSES), {"width": "8", "hidden": "32"}, modality="")
    model = build_model(spec, seed=0)
    assert spec.kwargs == {"width": 8, "hidden": 32} and spec.modality == "audio"
    x = 0.1 * torch.randn(3, 16_000)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (3, 32) and model(x).shape == (3, 10)
        torch.testing.assert_close(model(x), model.forward_head(feats))
    names = [n for n, _ in model.layer_groups()]
    assert names == ["frontend", "conv1", "conv2", "conv3", "conv4", "fc", "head"]
    assert not list(model.groups["frontend"].parameters()) and not model.groups["frontend"].state_dict()
    counted = [id(p) for _, g in model.layer_groups() for p in g.parameters()]
    assert len(counted) == len(set(counted)) and set(counted) == {id(p) for p in model.parameters()}
    model.reset_head(["yes", "no"])
    assert model(x).shape == (3, 2) and ModelSpec.from_json(model.spec.to_json()) == model.spec
    again = build_model(ModelSpec("audio_cnn", (16_000,), list(CLASSES), {"width": 8, "hidden": 32}), seed=0)
    reference = build_model(ModelSpec("audio_cnn", (16_000,), list(CLASSES), {"width": 8, "hidden": 32}), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), reference.state_dict().values()))


def test_audio_cnn_rejects_image_input() -> None:
    with pytest.raises(ConfigError, match=r"audio_cnn needs waveform input \(samples,\), got shape \(1, 28, 28\)"):
        build_model(ModelSpec("audio_cnn", (1, 28, 28), list(CLASSES)))


def test_run_save_load_round_trip(tmp_path: Path) -> None:
    """A pretrained run on real (synthesised) speech reloads with the same outputs on raw waveforms."""
    out = tmp_path / "src"
    res = transferkit.pretrain("spoken-digits:voices=A,per_voice=2", "audio_cnn", out, seed=0, epochs=1,
                               model_kwargs={"width": 8}, precision="fp32", progress="off")
    loaded = transferkit.load_run(out)
    assert loaded.spec.modality == "audio" and loaded.spec.input_shape == (16_000,)
    x = torch.from_numpy(transferkit.data.load_dataset("spoken-digits:voices=B,per_voice=1", model=loaded.spec).x[:8])
    res.model.eval(), loaded.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), res.model(x))


@pytest.mark.slow
def test_pretrain_on_voices_a_then_transfer_to_voices_b_learns(tmp_path: Path) -> None:
    """Source: 6 male English voices; target: 5 foreign-accented female voices, 10 shots per class."""
    torch.set_num_threads(1)
    out = tmp_path / "src"
    src = transferkit.pretrain("spoken-digits:voices=A,per_voice=6", "audio_cnn", out, seed=0, epochs=12,
                               precision="fp32", progress="off")
    assert src.metrics["source"]["accuracy"] > 0.6
    res = transferkit.transfer(out, "spoken-digits:voices=B,per_voice=6", strategy="lp_ft", shots=10, seed=0,
                               epochs=10, precision="fp32", progress="off")
    assert res.metrics["target"]["accuracy"] > 0.4  # chance is 0.1
