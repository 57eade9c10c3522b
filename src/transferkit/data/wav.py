"""Waveform files and signal helpers: PCM ``.wav`` reading, folders of ``.wav`` files, resampling, fixed length.

Every waveform leaves this module as float32 mono, values in about ``[-1, 1]``; folders load at
:data:`SAMPLE_RATE` (16 kHz) as ``[N, T]`` with ``modality="audio"``.
"""

from __future__ import annotations

import math
import struct
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np

from transferkit.data.base import SKIP_HINT, ArrayDataset, report_skipped
from transferkit.errors import ConfigError, DataError, one_line_reason

#: The sample rate of every waveform a folder loads at (and the audio models take).
SAMPLE_RATE = 16_000


# --------------------------------------------------------------------------- signal helpers


@lru_cache(maxsize=16)
def _filter_bank(orig_sr: int, new_sr: int, zero_crossings: int, rolloff: float,
                 beta: float) -> tuple[np.ndarray, int, int, int]:
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
    # RuntimeError: a bad RIFF chunk
    except (wave.Error, EOFError, OSError, struct.error, ValueError, RuntimeError) as err:
        raise DataError(f"{p}: cannot read WAV file ({one_line_reason(err)}; only PCM WAV is supported)") from None
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
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() == ".wav")


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


__all__ = ["SAMPLE_RATE", "fit_length", "is_wav_folder", "load_wav_folder", "read_wav", "resample"]
