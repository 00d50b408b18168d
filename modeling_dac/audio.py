"""Audio I/O, sample formats, resampling and loudness: the one place these live.

Files are read and written with soundfile (wav, flac, ogg, mp3 where libsndfile supports it), resampled
with soxr and measured with pyloudnorm (ITU-R BS.1770, as the official DAC does).
"""

import math
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .atomic import atomic_write_path

__all__ = [
    "AUDIO_EXTENSIONS",
    "LoudnessMeter",
    "integrated_loudness",
    "load_audio",
    "loudness_gain",
    "looks_transposed",
    "normalize_loudness",
    "resample",
    "save_audio",
    "soundfile_format",
    "to_float_audio",
    "warn_if_clipped",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")

_MAX_PLAUSIBLE_CHANNELS = 64

_INTEGER_SCALES = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int8): 128.0}


def to_float_audio(audio: np.ndarray) -> np.ndarray:
    """Float32 samples in [-1, 1] from float or integer PCM (int8/16/32 scaled by their range, uint8 centred)."""
    native = audio.dtype.newbyteorder("=")  # big-endian PCM (e.g. AIFF bytes) has the same scale
    if native in _INTEGER_SCALES:
        return (audio / _INTEGER_SCALES[native]).astype(np.float32)
    if audio.dtype == np.uint8:
        return ((audio.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(audio.dtype, np.floating):
        return audio.astype(np.float32, copy=False)
    raise ValueError(f"unsupported sample type {audio.dtype}; use float, int8, int16, int32 or uint8 PCM.")


def looks_transposed(audio: np.ndarray) -> bool:
    """Whether 2-D ``(channels, samples)`` audio is almost surely ``(samples, channels)``: over 64 "channels" of at
    most 64 samples each."""
    return audio.ndim == 2 and audio.shape[0] > _MAX_PLAUSIBLE_CHANNELS >= audio.shape[1]


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample `(channels, samples)` (or `(samples,)`) float audio with soxr's high-quality filter."""
    import soxr

    if orig_sr == target_sr:
        return audio
    if audio.ndim == 1:
        resampled = soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32)
    else:
        resampled = np.ascontiguousarray(soxr.resample(audio.T, orig_sr, target_sr, quality="HQ").T).astype(np.float32)
    if audio.shape[-1] and not resampled.shape[-1]:
        raise ValueError(
            f"{audio.shape[-1]} sample(s) at {orig_sr} Hz are shorter than one sample at {target_sr} Hz: "
            "the audio is too short to resample."
        )
    return resampled


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


def soundfile_format(path: Path) -> str:
    """soundfile's format name for a file extension (`.aif` is AIFF); a clear error for unknown extensions."""
    import soundfile

    name = {"AIF": "AIFF"}.get(path.suffix.lstrip(".").upper(), path.suffix.lstrip(".").upper())
    if name not in soundfile.available_formats():
        raise ValueError(f"Cannot write {path}: unknown audio format {path.suffix!r}; use one of {AUDIO_EXTENSIONS}.")
    return name


# Sample formats that store values beyond full scale and read them back as such: float PCM and the lossy codecs
# (checked with libsndfile 1.2.2). Every other subtype is integer PCM, or a codec of it, and clips them.
_UNCLIPPED_SUBTYPES = frozenset({"FLOAT", "DOUBLE", "VORBIS", "OPUS", "MPEG_LAYER_III"})


def warn_if_clipped(path: str | os.PathLike, clipped: int, total: int, peak: float, subtype: str) -> None:
    """One warning that `clipped` of the `total` samples written to `path` lay beyond [-1, 1] and that `subtype`
    clipped them (nothing when it is a subtype that keeps them)."""
    if clipped and subtype not in _UNCLIPPED_SUBTYPES:
        warnings.warn(
            f"{path}: {100 * clipped / total:.3g}% of the samples exceed full scale (peak {peak:.3g}, "
            f"{20 * math.log10(peak):+.1f} dBFS) and were clipped to [-1, 1] in its {subtype} samples; a float "
            'WAV keeps them (subtype="FLOAT"; dac decode --format wav --subtype FLOAT).',
            stacklevel=3,
        )


def save_audio(path: str | os.PathLike, audio: np.ndarray, sampling_rate: int, subtype: str | None = None) -> None:
    """
    Write `(channels, samples)` or `(samples,)` float audio atomically; the format follows the extension, and
    `subtype` is soundfile's (`None`: the format's default, 16-bit PCM for wav). Samples beyond [-1, 1] are
    clipped by integer subtypes, with a warning (`warn_if_clipped`).
    """
    import soundfile

    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    frames = audio[:, None] if audio.ndim == 1 else audio.T
    output_format = soundfile_format(path)
    subtype = subtype or soundfile.default_subtype(output_format)
    with atomic_write_path(path) as temporary:
        soundfile.write(temporary, frames, sampling_rate, subtype=subtype, format=output_format)
    magnitude = np.abs(audio)
    clipped, peak = int(np.count_nonzero(magnitude > 1.0)), float(magnitude.max(initial=0.0))
    warn_if_clipped(path, clipped, audio.size, peak, subtype)


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


def loudness_gain(measured: float, target: float, peak: float | None = None) -> float:
    """
    The gain taking audio of integrated loudness `measured` to `target` (LUFS); 1 for silence (`-inf`). Given the
    audio's `peak` (largest absolute sample), it is lowered where needed so that the peak stays within [-1, 1],
    as the official DAC normalises its input.
    """
    if not np.isfinite(measured):
        return 1.0
    gain = 10.0 ** ((target - measured) / 20.0)
    return 1.0 / peak if peak is not None and peak * gain > 1.0 else gain


def normalize_loudness(
    audio: np.ndarray, sampling_rate: int, target_lufs: float = -16.0, limit_peak: bool = False
) -> tuple[np.ndarray, float]:
    """
    Audio scaled to `target_lufs` (less where `limit_peak` keeps it within [-1, 1]), and its loudness before
    scaling; silence is returned unchanged.
    """
    loudness = integrated_loudness(audio, sampling_rate)
    if not np.isfinite(loudness):
        return audio, loudness
    gain = loudness_gain(loudness, target_lufs, float(np.abs(audio).max()) if limit_peak else None)
    return (audio * gain).astype(np.float32), loudness


class LoudnessMeter:
    """
    Integrated loudness of audio that arrives in blocks, in memory independent of its length: the value
    `integrated_loudness` gives for the whole signal (same K-weighting filters, 400 ms gating blocks at 100 ms
    steps, gates and channel weights as pyloudnorm), for files too long to hold in memory. The result does not
    depend on how the audio is cut into blocks, to the last bit.

    Feed `(channels, samples)` blocks to `update`, then read `integrated_loudness()` once at the end.
    """

    _BLOCK_SECONDS = 0.4
    _STEP = 0.25  # of a block: 75% overlap
    _CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # BS.1770: L, R, C, Ls, Rs

    def __init__(self, sampling_rate: int, channels: int):
        import pyloudnorm

        if not 1 <= channels <= len(self._CHANNEL_WEIGHTS):
            raise ValueError(f"loudness is defined for 1 to 5 channels (BS.1770), got {channels}.")
        self.sampling_rate = sampling_rate
        self.channels = channels
        # The meter's own filter stages, so the weighting is exactly pyloudnorm's. `_filters` is private to
        # pyloudnorm: tests/test_compression.py compares this meter with pyloudnorm's, so a change there shows.
        self._filters = list(pyloudnorm.Meter(sampling_rate)._filters.values())
        self._filter_states = [np.zeros((channels, max(len(stage.a), len(stage.b)) - 1)) for stage in self._filters]
        self._samples = 0
        # Energy of the filtered signal between consecutive 100 ms gating-block boundaries, per channel (a block
        # is four consecutive segments), and the filtered samples of the segment not yet complete.
        self._segment_energy: list[np.ndarray] = []
        self._open_segment: list[np.ndarray] = []

    def _boundary(self, index: int) -> int:
        # The block start pyloudnorm computes, float expression included, so the blocks coincide sample for sample.
        return int(self._BLOCK_SECONDS * (index * self._STEP) * self.sampling_rate)

    def _close_segment(self) -> None:
        pieces = np.concatenate(self._open_segment, axis=-1) if self._open_segment else np.zeros((self.channels, 0))
        self._segment_energy.append(np.sum(np.square(pieces), axis=-1))
        self._open_segment = []

    def update(self, audio: np.ndarray) -> None:
        """Add the next `(channels, samples)` block of float audio."""
        import scipy.signal

        audio = np.asarray(audio, dtype=np.float64)
        if audio.ndim != 2 or audio.shape[0] != self.channels:
            raise ValueError(f"expected a ({self.channels}, samples) block, got shape {audio.shape}.")
        if not audio.shape[-1]:  # scipy's lfilter returns an uninitialised state for an empty block
            return
        for index, stage in enumerate(self._filters):
            audio, self._filter_states[index] = scipy.signal.lfilter(
                stage.b, stage.a, audio, axis=-1, zi=self._filter_states[index]
            )
            audio = stage.passband_gain * audio
        position, end = self._samples, self._samples + audio.shape[-1]
        while position < end:
            segment_end = self._boundary(len(self._segment_energy) + 1)
            stop = min(end, segment_end)
            self._open_segment.append(audio[:, position - self._samples : stop - self._samples])
            position = stop
            if position == segment_end:
                self._close_segment()
        self._samples = end

    def integrated_loudness(self) -> float:
        """Integrated loudness in LUFS of everything fed so far; -inf for silence. Call once, at the end."""
        block = int(self._BLOCK_SECONDS * self.sampling_rate)
        if self._samples < block:  # as `integrated_loudness`: short clips are measured zero-padded to one block
            self.update(np.zeros((self.channels, block - self._samples)))
        if self._open_segment:
            self._close_segment()
        duration = self._samples / self.sampling_rate
        n_blocks = int(np.round((duration - self._BLOCK_SECONDS) / (self._BLOCK_SECONDS * self._STEP))) + 1
        segments = np.zeros((n_blocks + 3, self.channels))
        available = min(len(self._segment_energy), n_blocks + 3)
        segments[:available] = self._segment_energy[:available]
        block_energy = (1.0 / (self._BLOCK_SECONDS * self.sampling_rate)) * (
            segments[:-3] + segments[1:-2] + segments[2:-1] + segments[3:]
        )  # (blocks, channels)
        weights = np.array(self._CHANNEL_WEIGHTS[: self.channels])
        with np.errstate(divide="ignore"):
            block_loudness = -0.691 + 10.0 * np.log10(block_energy @ weights)
        loudness = -np.inf
        gate = block_loudness >= -70.0
        for _ in range(2):  # absolute gate, then absolute and relative gates
            if not gate.any():
                return -np.inf
            with np.errstate(divide="ignore"):
                loudness = -0.691 + 10.0 * np.log10(block_energy[gate].mean(axis=0) @ weights)
            gate = (block_loudness > loudness - 10.0) & (block_loudness > -70.0)
        return float(loudness)
