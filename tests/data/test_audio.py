"""Audio data: resampling against analytic signals, the WAV reader, spoken-digits synthesis, options."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import audio, load_dataset
from transferkit.data.audio import SAMPLE_RATE, fit_length, load_wav_folder, read_wav, resample, spoken_digits
from transferkit.errors import ConfigError, DataError
from transferkit.models import ModelSpec


def _write_wav(path: Path, samples: np.ndarray, rate: int, width: int = 2) -> None:
    """``samples`` float in [-1, 1], ``[n]`` or ``[n, channels]``, written as PCM with the stdlib writer."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    if width == 1:
        raw = np.clip(np.round(frames * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    elif width == 2:
        raw = np.round(frames * 32767).astype("<i2").tobytes()
    else:
        raw = np.round(frames * (2**31 - 1)).astype("<i4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def _tone(freq: float, rate: int, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)


# --------------------------------------------------------------------------- signal helpers


@pytest.mark.parametrize("orig", [8000, 11025, 22050, 44100, 48000])
def test_resample_reproduces_an_in_band_sine(orig: int) -> None:
    y = resample(_tone(440.0, orig, 1.0), orig, SAMPLE_RATE)
    assert y.shape == (SAMPLE_RATE,) and y.dtype == np.float32
    ref = _tone(440.0, SAMPLE_RATE, 1.0)
    np.testing.assert_allclose(y[200:-200], ref[200:-200], atol=2e-4)  # away from the zero-padded edges


def test_resample_removes_what_the_new_rate_cannot_hold() -> None:
    y = resample(_tone(10_000.0, 44_100, 1.0), 44_100, SAMPLE_RATE)  # above the new 8 kHz Nyquist
    assert np.abs(y[200:-200]).max() < 0.01


def test_resample_agrees_with_scipy_polyphase_in_band() -> None:
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(0)
    x = sum(_tone(f, 22_050, 1.0, a) for f, a in zip(rng.uniform(100, 3000, 5), rng.uniform(0.1, 0.3, 5)))
    ours = resample(x, 22_050, SAMPLE_RATE)
    ref = signal.resample_poly(x, 320, 441)
    np.testing.assert_allclose(ours[300:-300], ref[300:-300], atol=3e-3)


def test_resample_rows_independently() -> None:
    x = np.random.default_rng(1).standard_normal((3, 999)).astype(np.float32)
    batch = resample(x, 22_050, SAMPLE_RATE)
    np.testing.assert_allclose(batch[1], resample(x[1], 22_050, SAMPLE_RATE), atol=1e-6)


def test_fit_length_pads_or_keeps_the_loudest_window() -> None:
    x = np.zeros((2, 100), dtype=np.float32)
    x[0, 70:80] = 1.0
    x[1, 5:10] = 1.0
    out = fit_length(x, 40)
    assert out.shape == (2, 40) and out[0].sum() == 10 and out[1].sum() == 5
    padded = fit_length(x, 130)
    assert padded.shape == (2, 130) and np.array_equal(padded[:, :100], x) and not padded[:, 100:].any()


# --------------------------------------------------------------------------- WAV files


@pytest.mark.parametrize("width", [1, 2, 4])
@pytest.mark.parametrize("channels", [1, 2])
def test_wav_round_trip(tmp_path: Path, width: int, channels: int) -> None:
    left = _tone(300.0, 8000)
    samples = np.stack([left, -0.5 * left], axis=1) if channels == 2 else left
    _write_wav(tmp_path / "a.wav", samples, 8000, width)
    got, rate = read_wav(tmp_path / "a.wav")
    expected = samples.mean(axis=1) if channels == 2 else samples
    assert rate == 8000 and got.shape == (4000,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol={1: 1.6e-2, 2: 1e-4, 4: 1e-6}[width])


def test_wav_24_bit(tmp_path: Path) -> None:
    values = np.array([0, 1, -1, 2**23 - 1, -(2**23)], dtype=np.int64)
    raw = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in values)
    with wave.open(str(tmp_path / "a.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(3), w.setframerate(16000), w.writeframes(raw)
    got, _ = read_wav(tmp_path / "a.wav")
    np.testing.assert_allclose(got, values / 2**23, atol=1e-7)


def test_corrupt_and_truncated_wav_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"this is not a wave file at all")
    with pytest.raises(DataError, match=r"noise\.wav: cannot read WAV file"):
        read_wav(bad)
    _write_wav(tmp_path / "cut.wav", _tone(300.0, 8000), 8000)
    data = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.wav: truncated WAV file \(\d+ of 4000 frames"):
        read_wav(tmp_path / "cut.wav")


def test_wav_folder_labelled_unlabelled_and_dispatch(tmp_path: Path) -> None:
    _write_wav(tmp_path / "yes" / "1.wav", _tone(300.0, 8000, 0.5), 8000)
    _write_wav(tmp_path / "yes" / "2.wav", _tone(300.0, 44_100, 0.25), 44_100, width=1)
    _write_wav(tmp_path / "no" / "1.wav", np.stack([_tone(500.0, 16000, 0.75)] * 2, axis=1), 16000)
    (tmp_path / "no" / "notes.txt").write_text("ignored")
    ds = load_dataset(str(tmp_path))  # load_path dispatches a folder of .wav files here
    assert ds.modality == "audio" and ds.class_names == ["no", "yes"] and ds.y.tolist() == [0, 1, 1]
    assert ds.x.shape == (3, 12_000) and ds.meta["sample_rate"] == SAMPLE_RATE  # the longest clip at 16 kHz
    assert not ds.x[1, 8000:].any() and ds.x[1, :7900].any()  # 0.5 s clip, zero-padded
    spec = ModelSpec("audio_cnn", (16_000,), [str(i) for i in range(10)], modality="audio")
    assert load_dataset(str(tmp_path), model=spec).x.shape == (3, 16_000)
    flat = tmp_path / "yes"
    assert load_dataset(str(flat), labels_required=False).y is None
    with pytest.raises(DataError, match="one sub-folder per class"):
        load_wav_folder(flat)
    (tmp_path / "maybe").mkdir()
    with pytest.raises(DataError, match=r"maybe: empty class folder \(no \.wav files\)"):
        load_wav_folder(tmp_path)


def test_audio_and_image_data_do_not_mix(tmp_path: Path) -> None:
    _write_wav(tmp_path / "a" / "1.wav", _tone(300.0, 8000), 8000)
    _write_wav(tmp_path / "b" / "1.wav", _tone(600.0, 8000), 8000)
    with pytest.raises(DataError, match="audio data cannot feed the image model small_cnn"):
        load_dataset(str(tmp_path), model=ModelSpec("small_cnn", (1, 28, 28), ["a", "b"]))
    spec = ModelSpec("audio_cnn", (16_000,), [str(i) for i in range(10)], modality="audio")
    with pytest.raises(DataError, match="image data cannot feed the audio model audio_cnn"):
        load_dataset("digits8", model=spec)


# --------------------------------------------------------------------------- spoken-digits


def test_spoken_digits_is_deterministic_per_seed_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path))
    audio.voice_waveforms.cache_clear()
    first = spoken_digits(seed=3, voices="B", per_voice=1)
    assert first.x.shape == (50, SAMPLE_RATE) and first.x.dtype == np.float32 and first.modality == "audio"
    assert first.class_names == [str(i) for i in range(10)] and np.bincount(first.y).tolist() == [5] * 10
    assert first.name == "spoken-digits:voices=B,per_voice=1" and 0.1 < np.abs(first.x).max() <= 1.0
    cached = sorted(p.name for p in (tmp_path / "spoken-digits").iterdir())
    assert len(cached) == 5 and all(n.endswith(".npy") for n in cached)
    for f in (tmp_path / "spoken-digits").iterdir():  # synthesised again from scratch: same waveforms
        f.unlink()
    audio.voice_waveforms.cache_clear()
    np.testing.assert_array_equal(spoken_digits(seed=3, voices="B", per_voice=1).x, first.x)
    audio.voice_waveforms.cache_clear()

    def no_synthesis(*args: object) -> None:
        raise AssertionError("the disk cache should have been used")

    monkeypatch.setattr(audio, "_synthesise", no_synthesis)
    np.testing.assert_array_equal(spoken_digits(seed=3, voices="B", per_voice=1).x, first.x)
    audio.voice_waveforms.cache_clear()


def test_spoken_digits_seeds_differ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path))
    a = audio._render_voice("en+f4", 0, 1, SAMPLE_RATE)
    b = audio._render_voice("en+f4", 1, 1, SAMPLE_RATE)
    assert a.shape == b.shape == (10, SAMPLE_RATE) and not np.allclose(a, b)


def test_dataset_options_are_parsed_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path))
    ds = load_dataset("spoken-digits:voices=C, per_voice=1", seed=2)
    assert len(ds) == 50 and ds.meta["voices"] == list(audio.VOICE_GROUPS["C"])
    assert len(load_dataset("fontdigits:per_class=2")) == 20  # any registered loader's keywords
    with pytest.raises(ConfigError, match=r"dataset spoken-digits: unknown option 'voice' \(did you mean 'voices'\?\); "
                                          r"valid options: voices, per_voice, seconds"):
        load_dataset("spoken-digits:voice=B")
    with pytest.raises(ConfigError, match=r"unknown option 'B' \(not key=value\)"):
        load_dataset("spoken-digits:B")
    with pytest.raises(ConfigError, match=r"option per_voice='many' is not a valid int"):
        load_dataset("spoken-digits:per_voice=many")
    with pytest.raises(ConfigError, match=r"voices='Z' is not one of A, B, C, all"):
        load_dataset("spoken-digits:voices=Z")
    with pytest.raises(ConfigError, match="valid options: none"):
        load_dataset("mnist5k:size=3")
