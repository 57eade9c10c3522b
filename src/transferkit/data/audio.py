"""Audio data: the ``spoken-digits`` dataset (espeak-ng) and the audio preparer.

WAV files, folders of them, resampling and fixed length live in :mod:`transferkit.data.wav` (and
are re-exported here).

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
import os
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from transferkit.data.base import ArrayDataset
from transferkit.data.wav import SAMPLE_RATE, fit_length, is_wav_folder, load_wav_folder, read_wav, resample
from transferkit.errors import ConfigError, DataError, one_line_reason

if TYPE_CHECKING:
    from transferkit.models.base import ModelSpec

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
        reason = one_line_reason(err)
        raise DataError(f"spoken-digits: espeak-ng synthesis for voice {voice} failed ({reason})") from None
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
    """Where synthesised data is kept: ``$TRANSFERKIT_CACHE/spoken-digits`` or
    ``~/.cache/transferkit/spoken-digits``."""
    root = os.environ.get("TRANSFERKIT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "transferkit") / "spoken-digits"


@lru_cache(maxsize=32)
def voice_waveforms(voice: str, seed: int, per_voice: int, length: int) -> np.ndarray:
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
        parts = list(pool.map(lambda v: voice_waveforms(v, int(seed), int(per_voice), length), group))
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
