"""Audio data: the ``spoken-digits`` dataset (espeak-ng), a WAV-folder reader, resampling, fixed length.

Every waveform leaves this module as float32 mono at :data:`SAMPLE_RATE` (16 kHz), values in
about ``[-1, 1]``; a dataset's ``x`` is ``[N, T]`` with ``modality="audio"``.

``spoken-digits`` speaks the words "zero" .. "nine" (classes ``"0"`` .. ``"9"``) with espeak-ng
voices from the ``espeakng-loader`` package (GPL-3; called through ``ctypes`` in a child process,
never copied). The voice groups are the domains (see :data:`VOICE_GROUPS`): ``A`` native English
male voices, ``B`` foreign-accented female voices, ``C`` native English female voices; ``all``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import struct
import subprocess
import sys
import wave
import zlib
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from transferkit.data.base import SKIP_HINT, ArrayDataset, report_skipped
from transferkit.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transferkit.models.base import ModelSpec

#: The sample rate of every waveform this module returns (and the audio models take).
SAMPLE_RATE = 16_000
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: Domains of ``spoken-digits``: espeak-ng ``language+variant`` voices.
#:
#: - ``A``: native English, male variants m1-m7 (US, British, RP, Scottish, New York accents).
#: - ``B``: the English words read by German, French, Spanish, Italian and Dutch voices with
#:   female variants f1-f5: each language's own letter-to-sound rules give strongly accented
#:   English, plus the speaker-sex shift: the strong shift (docs/AUDIO.md measures it).
#: - ``C``: native English, female variants f1-f5 (Caribbean, Lancaster, West Midlands, British,
#:   US): the speaker-sex shift alone, a milder one.
VOICE_GROUPS: dict[str, tuple[str, ...]] = {
    "A": ("en-us+m1", "en-us+m3", "en+m2", "en-gb-x-rp+m4", "en-gb-scotland+m6", "en-us-nyc+m7"),
    "B": ("de+f1", "fr+f2", "es+f3", "it+f4", "nl+f5"),
    "C": ("en-029+f1", "en-gb-x-gbclan+f2", "en-gb-x-gbcwmd+f3", "en+f4", "en-us+f5"),
}
VOICE_GROUPS["all"] = VOICE_GROUPS["A"] + VOICE_GROUPS["B"] + VOICE_GROUPS["C"]

#: Bump when the synthesis or post-processing changes: it is part of the cache key.
_VERSION = 4


def _reason(err: BaseException) -> str:
    return (" ".join(str(err).split()) or type(err).__name__)[:200]


# --------------------------------------------------------------------------- signal helpers


@lru_cache(maxsize=16)
def _filter_bank(orig_sr: int, new_sr: int, zero_crossings: int, rolloff: float, beta: float) -> tuple[np.ndarray, int, int, int]:
    g = math.gcd(orig_sr, new_sr)
    up, down = new_sr // g, orig_sr // g
    fc = rolloff * min(1.0, new_sr / orig_sr)  # cut-off as a fraction of the input Nyquist
    half = math.ceil(zero_crossings / fc)  # taps either side, in input samples
    frac = np.arange(up)[:, None] * down % up / up  # fractional position of each output phase
    tau = frac + (half - 1) - np.arange(2 * half)[None, :]  # distance to each tap, input samples
    window = np.i0(beta * np.sqrt(np.clip(1 - (tau / half) ** 2, 0, None))) / np.i0(beta)
    bank = fc * np.sinc(fc * tau) * window * (np.abs(tau) < half)
    return bank.astype(np.float32), up, down, half


def resample(x: np.ndarray, orig_sr: int, new_sr: int, *, zero_crossings: int = 16, rolloff: float = 0.945,
             beta: float = 8.6) -> np.ndarray:
    """Band-limited resampling along the last axis (Kaiser-windowed sinc interpolation).

    Output sample ``j`` sits at input position ``t_j = j * orig_sr / new_sr`` and is
    ``y[j] = sum_k x[k] h(t_j - k)`` with ``h(t) = fc sinc(fc t) w(t)``, ``fc = rolloff *
    min(1, new_sr / orig_sr)`` (anti-aliasing when downsampling) and ``w`` a Kaiser window of
    half-width ``ceil(zero_crossings / fc)`` input samples (Smith, "Digital Audio Resampling";
    the same design as ``resampy`` / ``torchaudio``'s sinc_interp_kaiser). With ``orig_sr /
    new_sr = down / up`` in lowest terms there are only ``up`` distinct filter phases; they are
    computed once per rate pair.

    Shape: ``[..., n]`` -> ``[..., ceil(n * new_sr / orig_sr)]``, float32.
    """
    x = np.asarray(x, dtype=np.float32)
    if orig_sr <= 0 or new_sr <= 0:
        raise ConfigError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return x.copy()
    if x.ndim > 1:  # row by row: the [chunk, taps] gather stays small whatever the batch
        rows = [resample(r, orig_sr, new_sr, zero_crossings=zero_crossings, rolloff=rolloff, beta=beta)
                for r in x.reshape(-1, x.shape[-1])]
        return np.stack(rows).reshape(*x.shape[:-1], -1) if rows else np.empty((*x.shape[:-1], 0), np.float32)
    bank, up, down, half = _filter_bank(int(orig_sr), int(new_sr), zero_crossings, rolloff, beta)
    n = len(x)
    n_out = -(-n * up // down)
    padded = np.pad(x, (half, half + 1))
    out = np.empty(n_out, dtype=np.float32)
    taps = np.arange(2 * half)
    for start in range(0, n_out, 8192):  # chunks bound the [chunk, taps] gather
        j = np.arange(start, min(n_out, start + 8192))
        base = j * down // up  # floor(t_j); taps run base-half+1 .. base+half (+half of padding)
        out[j] = (padded[base[:, None] + 1 + taps[None, :]] * bank[j % up]).sum(-1)
    return out


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Waveforms ``[N, T0]`` to ``[N, length]``: shorter ones are zero-padded at the end, longer ones
    keep the ``length``-sample window with the most energy (so the spoken part survives)."""
    if length < 1:
        raise ConfigError(f"audio length must be at least 1 sample, got {length}")
    x = np.asarray(x, dtype=np.float32)
    n, t0 = x.shape
    if t0 == length:
        return x
    if t0 < length:
        return np.pad(x, [(0, 0), (0, length - t0)])
    energy = np.concatenate([np.zeros((n, 1)), np.cumsum(x.astype(np.float64) ** 2, axis=1)], axis=1)
    start = np.argmax(energy[:, length:] - energy[:, :-length], axis=1)
    return np.stack([x[i, s : s + length] for i, s in enumerate(start)])


# --------------------------------------------------------------------------- WAV files


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A PCM ``.wav`` file (8-bit unsigned, 16/24/32-bit signed; any channels) as float32 mono in ``[-1, 1]``.

    Channels are averaged. Returns ``(samples [n], sample_rate)``. A corrupt, truncated, empty or
    non-PCM file raises a one-line :class:`DataError` naming it.
    """
    p = Path(path)
    try:
        with wave.open(str(p), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            data = w.readframes(frames)
    except (wave.Error, EOFError, OSError, struct.error, ValueError, RuntimeError) as err:  # RuntimeError: a bad RIFF chunk
        raise DataError(f"{p}: cannot read WAV file ({_reason(err)}; only PCM WAV is supported)") from None
    if frames == 0 or channels == 0:
        raise DataError(f"{p}: WAV file has no audio samples")
    frame_bytes = channels * width
    if len(data) < frames * frame_bytes:
        raise DataError(f"{p}: truncated WAV file ({len(data) // frame_bytes} of {frames} frames present)")
    if width == 1:
        samples = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        samples = (np.where(value >= 1 << 23, value - (1 << 24), value) / float(1 << 23)).astype(np.float32)
    elif width == 4:
        samples = (np.frombuffer(data, dtype="<i4").astype(np.float64) / 2.0**31).astype(np.float32)
    else:
        raise DataError(f"{p}: unsupported WAV sample width of {width} bytes")
    return samples.reshape(-1, channels).mean(axis=1), rate


def _wav_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() == ".wav")


def is_wav_folder(path: Path) -> bool:
    """Whether ``path`` holds ``.wav`` files, directly or in its (non-hidden) sub-folders."""
    if _wav_files(path):
        return True
    return any(_wav_files(sub) for sub in path.iterdir() if sub.is_dir() and not sub.name.startswith("."))


def _read_clips(files: list[Path], root: Path, skip_bad_files: bool) -> list[np.ndarray | None]:
    """Each file as a 16 kHz clip; an unreadable one raises (with the skip hint) or, skipping, is ``None``
    and listed."""
    clips: list[np.ndarray | None] = []
    bad: list[tuple[Path, str]] = []
    for file in files:
        try:
            samples, rate = read_wav(file)
        except DataError as err:
            if not skip_bad_files:
                raise DataError(f"{err}; {SKIP_HINT}") from None
            bad.append((file, str(err).removeprefix(f"{file}: ")))
            clips.append(None)
            continue
        clips.append(resample(samples, rate, SAMPLE_RATE))
    if bad:
        report_skipped(root, bad, "unreadable file", "(--skip-bad-files)")
    return clips


def load_wav_folder(path: str | Path, *, labels_required: bool = True, skip_bad_files: bool = False) -> ArrayDataset:
    """``.wav`` files in one sub-folder per class (class names = sorted sub-folder names).

    Each file is read by :func:`read_wav` (mono), resampled to 16 kHz (:func:`resample`) and the
    clips are zero-padded at the end to the longest one (an audio model's preparer then fits them
    to its own length). With ``labels_required=False`` a flat folder of ``.wav`` files loads
    unlabelled (``y=None``). An unreadable file stops the load with a one-line error, unless
    ``skip_bad_files`` (then it is left out and listed; ``meta["files"]`` names the files read).
    """
    root = Path(path)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        if not labels_required and _wav_files(root):
            subdirs = [root]
        else:
            raise DataError(f"{root}: .wav files must be in one sub-folder per class")
    files: list[Path] = []
    labels: list[int] = []
    for label, sub in enumerate(subdirs):
        found = _wav_files(sub)
        if not found:
            raise DataError(f"{sub}: empty class folder (no .wav files)")
        files += found
        labels += [label] * len(found)
    read = _read_clips(files, root, skip_bad_files)
    kept = [i for i, c in enumerate(read) if c is not None]
    if not kept:
        raise DataError(f"{root}: none of its {len(files)} .wav files could be read")
    clips = [c for c in read if c is not None]
    labels = [labels[i] for i in kept]
    for c in sorted(set(range(len(subdirs))) - set(labels)):
        raise DataError(f"{subdirs[c]}: no readable .wav files left in this class folder (all were skipped)")
    x = np.zeros((len(clips), max(len(c) for c in clips)), dtype=np.float32)
    for i, clip in enumerate(clips):
        x[i, : len(clip)] = clip
    meta: dict[str, object] = {"sample_rate": SAMPLE_RATE, "files": [str(files[i]) for i in kept]}
    if subdirs == [root]:
        return ArrayDataset(x=x, y=None, class_names=[], name=str(root), modality="audio", meta=meta)
    return ArrayDataset(x=x, y=np.array(labels, dtype=np.int64), class_names=[p.name for p in subdirs],
                        name=str(root), modality="audio", meta=meta)


# --------------------------------------------------------------------------- espeak-ng synthesis

# Runs in a fresh interpreter per voice: espeak-ng keeps internal state between utterances (its
# pitch "flutter" phase, noise generator), so one process per voice with a fixed utterance order
# is what makes the waveforms a function of the generation parameters alone.
_WORKER = r"""
import ctypes, json, struct, sys
import espeakng_loader
job = json.load(sys.stdin)
lib = ctypes.CDLL(espeakng_loader.get_library_path())
lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
rate = lib.espeak_Initialize(1, 0, espeakng_loader.get_data_path().encode(), 0)  # AUDIO_OUTPUT_RETRIEVAL
if rate <= 0:
    sys.exit("espeak_Initialize failed")
chunks = []
@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
def collect(wav, n, events):
    if n > 0 and wav:
        chunks.append(ctypes.string_at(wav, 2 * n))
    return 0
lib.espeak_SetSynthCallback(collect)
class Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p)]
lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(Voice)
lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                             ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
if hasattr(lib, "espeak_ng_SetRandSeed"):
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed(job["seed"])
voice = job["voice"]
if lib.espeak_SetVoiceByName(voice.encode()) != 0:
    sys.exit(f"espeak-ng has no voice {voice!r}")
ident = (lib.espeak_GetCurrentVoice().contents.identifier or b"").decode().lower()
if "+" in voice and not ident.endswith("+" + voice.split("+", 1)[1].lower()):
    sys.exit(f"espeak-ng has no variant for voice {voice!r} (got {ident!r})")
out = sys.stdout.buffer
out.write(struct.pack("<i", rate))
for text, wpm, pitch, prange in job["items"]:
    chunks.clear()
    for param, value in ((1, wpm), (3, pitch), (4, prange)):  # espeakRATE, espeakPITCH, espeakRANGE
        lib.espeak_SetParameter(param, value, 0)
    data = text.encode()
    if lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None) != 0 or lib.espeak_Synchronize() != 0:
        sys.exit(f"espeak-ng failed on {text!r}")
    pcm = b"".join(chunks)
    out.write(struct.pack("<i", len(pcm) // 2))
    out.write(pcm)
out.flush()
"""


def _synthesise(voice: str, items: list[tuple[str, int, int, int]], seed: int) -> tuple[int, list[np.ndarray]]:
    """Speak ``items`` (text, words/min, pitch 0-100, pitch range 0-100) in one fresh espeak-ng process."""
    if importlib.util.find_spec("espeakng_loader") is None:
        raise DataError("spoken-digits needs the espeakng-loader package (pip install espeakng-loader)")
    job = json.dumps({"voice": voice, "seed": seed, "items": items}).encode()
    try:
        done = subprocess.run([sys.executable, "-c", _WORKER], input=job, capture_output=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DataError(f"spoken-digits: espeak-ng synthesis for voice {voice} failed ({_reason(err)})") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise DataError(f"spoken-digits: espeak-ng synthesis for voice {voice} failed ({tail[0][:200]})")
    buf = done.stdout
    (rate,) = struct.unpack_from("<i", buf, 0)
    pos, waves = 4, []
    for _ in items:
        (n,) = struct.unpack_from("<i", buf, pos)
        waves.append(np.frombuffer(buf, dtype="<i2", count=n, offset=pos + 4))
        pos += 4 + 2 * n
    return rate, waves


def _trim_silence(x: np.ndarray, threshold: float = 0.01, margin: int = 160) -> np.ndarray:
    loud = np.flatnonzero(np.abs(x) > threshold * max(float(np.abs(x).max()), 1e-9))
    if len(loud) == 0:
        return x
    return x[max(0, loud[0] - margin) : loud[-1] + margin + 1]


def _render_voice(voice: str, seed: int, per_voice: int, length: int) -> np.ndarray:
    """``[10 * per_voice, length]`` float32: each word ``per_voice`` times, word-major.

    Each rendition draws a rate of 120-240 words/min, pitch 25-75 and pitch range 20-90 (espeak-ng
    units), then is trimmed of silence, resampled to 16 kHz, scaled to a peak of 0.9 times a
    gain of -12..0 dB, placed at a random offset and mixed with white noise at 0-20 dB SNR (rescaled to
    a peak of at most 0.99 where the noise pushes it past 1).
    """
    rng = np.random.default_rng([seed, zlib.crc32(voice.encode())])
    items = [(w, int(rng.integers(120, 241)), int(rng.integers(25, 76)), int(rng.integers(20, 91)))
             for w in WORDS for _ in range(per_voice)]
    rate, waves = _synthesise(voice, items, seed)
    x = np.zeros((len(items), length), dtype=np.float32)
    for i, pcm in enumerate(waves):
        wav = resample(_trim_silence(pcm.astype(np.float32) / 32768.0), rate, SAMPLE_RATE)
        wav = wav * (0.9 * 10 ** (rng.uniform(-12, 0) / 20) / max(float(np.abs(wav).max()), 1e-9))
        if len(wav) > length:
            cut = (len(wav) - length) // 2
            wav = wav[cut : cut + length]
        off = int(rng.integers(0, length - len(wav) + 1))
        x[i, off : off + len(wav)] = wav
        rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
        sigma = rms / 10 ** (rng.uniform(0, 20) / 20)
        x[i] += (rng.standard_normal(length) * sigma).astype(np.float32)
        x[i] /= max(1.0, float(np.abs(x[i]).max()) / 0.99)  # loud noise: rescale rather than clip
    return x


def cache_dir() -> Path:
    """Where synthesised data is kept: ``$TRANSFERKIT_CACHE/spoken-digits`` or ``~/.cache/transferkit/spoken-digits``."""
    root = os.environ.get("TRANSFERKIT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "transferkit") / "spoken-digits"


@lru_cache(maxsize=32)
def _voice_waveforms(voice: str, seed: int, per_voice: int, length: int) -> np.ndarray:
    """One voice's renditions, read from the disk cache or synthesised and cached.

    The cache holds 16-bit PCM (half the size of float32; the quantisation step, -96 dB of full
    scale, is far below the added noise), written atomically; the waveforms returned are always
    the dequantised ones, so a first (synthesising) load and a cached load give identical arrays.
    """
    from transferkit.io import atomic_write_bytes

    path = cache_dir() / f"{voice.replace('+', '_')}-seed{seed}-n{per_voice}-t{length}-v{_VERSION}.npy"
    pcm: np.ndarray | None = None
    if path.is_file():
        try:
            pcm = np.load(path, allow_pickle=False)
            if pcm.shape != (len(WORDS) * per_voice, length) or pcm.dtype != np.int16:
                pcm = None
        except (OSError, ValueError, EOFError):
            pcm = None  # a damaged cache file is regenerated and replaced
    if pcm is None:
        pcm = np.round(np.clip(_render_voice(voice, seed, per_voice, length), -1, 1) * 32767).astype(np.int16)
        buf = io.BytesIO()
        np.save(buf, pcm, allow_pickle=False)
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError:
            pass  # a read-only cache only costs time
    x = pcm.astype(np.float32) / np.float32(32767)
    x.flags.writeable = False
    return x


def spoken_digits(seed: int = 0, voices: str = "A", per_voice: int = 20, seconds: float = 1.0) -> ArrayDataset:
    """The words "zero" .. "nine" spoken by espeak-ng voices, as 16 kHz waveforms ``[N, T]``.

    Args:
        seed: the rate / pitch / gain / offset / noise draws (the same seed gives the same data).
        voices: a group of :data:`VOICE_GROUPS` (``A``, ``B``, ``C``, ``all``): the domain.
        per_voice: renditions of each word per voice (``N = 10 * per_voice * voices``).
        seconds: clip length; words are placed at a random offset inside it.

    Voices are synthesised in parallel child processes on first use and cached on disk
    (:func:`cache_dir`), keyed by voice, seed, ``per_voice``, length and a format version.
    """
    if voices not in VOICE_GROUPS:
        raise ConfigError(f"spoken-digits: voices={voices!r} is not one of {', '.join(VOICE_GROUPS)}")
    if per_voice < 1:
        raise ConfigError(f"spoken-digits: per_voice must be at least 1, got {per_voice}")
    if not 0.5 <= seconds <= 10:
        raise ConfigError(f"spoken-digits: seconds must be between 0.5 and 10, got {seconds}")
    length = round(seconds * SAMPLE_RATE)
    group = VOICE_GROUPS[voices]
    with ThreadPoolExecutor(max_workers=max(1, min(len(group), os.cpu_count() or 1))) as pool:
        parts = list(pool.map(lambda v: _voice_waveforms(v, int(seed), int(per_voice), length), group))
    y = np.tile(np.repeat(np.arange(len(WORDS), dtype=np.int64), per_voice), len(group))
    opts = [f"voices={voices}"] + ([f"per_voice={per_voice}"] if per_voice != 20 else []) + (
        [f"seconds={seconds:g}"] if seconds != 1.0 else [])
    return ArrayDataset(x=np.concatenate(parts), y=y, class_names=[str(i) for i in range(len(WORDS))],
                        name="spoken-digits:" + ",".join(opts), modality="audio",
                        meta={"sample_rate": SAMPLE_RATE, "voices": list(group), "seed": seed})


# --------------------------------------------------------------------------- preparer


def prepare_audio(ds: ArrayDataset, spec: ModelSpec) -> ArrayDataset:
    """Waveforms fitted to an audio model's input ``(T,)`` at 16 kHz (:func:`fit_length`); data
    at another rate (``meta["sample_rate"]``) are resampled first."""
    if ds.modality != "audio":
        raise DataError(f"{ds.name}: {ds.modality} data cannot feed the audio model {spec.name}")
    shape = tuple(spec.input_shape)
    if len(shape) != 1:
        raise DataError(f"audio model {spec.name} has input shape {shape}; expected (samples,)")
    x = ds.x
    rate = int(ds.meta.get("sample_rate", SAMPLE_RATE))  # type: ignore[call-overload]
    if rate != SAMPLE_RATE:
        x = resample(x, rate, SAMPLE_RATE)
    return replace(ds, x=fit_length(x, shape[0]), meta={**ds.meta, "sample_rate": SAMPLE_RATE})


__all__ = ["SAMPLE_RATE", "VOICE_GROUPS", "WORDS", "cache_dir", "fit_length", "is_wav_folder", "load_wav_folder",
           "prepare_audio", "read_wav", "resample", "spoken_digits"]
