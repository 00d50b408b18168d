"""Audio I/O, sample formats, resampling and loudness: the one place these live.

Files are read and written with soundfile (wav, flac, ogg, mp3 where libsndfile supports it), resampled
with soxr and measured with pyloudnorm (ITU-R BS.1770, as the official DAC does).
"""

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .atomic import atomic_write_path

__all__ = [
    "AUDIO_EXTENSIONS",
    "integrated_loudness",
    "load_audio",
    "normalize_loudness",
    "resample",
    "save_audio",
    "to_float_audio",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")

_INTEGER_SCALES = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int8): 128.0}


def to_float_audio(audio: np.ndarray) -> np.ndarray:
    """Float32 samples in [-1, 1] from float or integer PCM (int8/16/32 scaled by their range, uint8 centred)."""
    if audio.dtype in _INTEGER_SCALES:
        return (audio / _INTEGER_SCALES[audio.dtype]).astype(np.float32)
    if audio.dtype == np.uint8:
        return ((audio.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(audio.dtype, np.floating):
        return audio.astype(np.float32, copy=False)
    raise ValueError(f"unsupported sample type {audio.dtype}; use float, int8, int16, int32 or uint8 PCM.")


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample `(channels, samples)` (or `(samples,)`) float audio with soxr's high-quality filter."""
    import soxr

    if orig_sr == target_sr:
        return audio
    if audio.ndim == 1:
        return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(soxr.resample(audio.T, orig_sr, target_sr, quality="HQ").T).astype(np.float32)


def load_audio(path: str | os.PathLike | BinaryIO) -> tuple[np.ndarray, int]:
    """
    A file, given by path or as a binary file object (such as `io.BytesIO` of encoded bytes), as float32
    `(channels, samples)` and its sample rate.
    """
    import soundfile

    try:
        source = path if hasattr(path, "read") else str(path)
        audio, sampling_rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise ValueError(f"Cannot read audio file {path}: {error}") from error
    if audio.shape[0] == 0:
        raise ValueError(f"Audio file {path} holds no samples.")
    return np.ascontiguousarray(audio.T), sampling_rate


def save_audio(path: str | os.PathLike, audio: np.ndarray, sampling_rate: int) -> None:
    """Write `(channels, samples)` or `(samples,)` float audio atomically; the format follows the extension."""
    import soundfile

    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    frames = audio[:, None] if audio.ndim == 1 else audio.T
    with atomic_write_path(path) as temporary:
        soundfile.write(temporary, frames, sampling_rate, format=path.suffix.lstrip(".").upper() or None)


def integrated_loudness(audio: np.ndarray, sampling_rate: int) -> float:
    """
    Integrated loudness in LUFS (ITU-R BS.1770: 400 ms blocks, 75% overlap, -70 LUFS absolute and -10 LU
    relative gates) of `(channels, samples)` audio. Clips shorter than one 400 ms block are measured after
    zero-padding to one block; digital silence gives -inf.
    """
    import pyloudnorm

    frames = np.asarray(audio, dtype=np.float64).T
    block = int(0.4 * sampling_rate)
    if frames.shape[0] < block:
        frames = np.pad(frames, ((0, block - frames.shape[0]), (0, 0)))
    with np.errstate(divide="ignore"):
        return float(pyloudnorm.Meter(sampling_rate).integrated_loudness(frames))


def normalize_loudness(audio: np.ndarray, sampling_rate: int, target_lufs: float = -16.0) -> tuple[np.ndarray, float]:
    """Audio scaled to `target_lufs`, and its loudness before scaling (silence is returned unchanged)."""
    loudness = integrated_loudness(audio, sampling_rate)
    if not np.isfinite(loudness):
        return audio, loudness
    gain = 10.0 ** ((target_lufs - loudness) / 20.0)
    return (audio * gain).astype(np.float32), loudness
