"""Compress recordings into `.dac` files and back: arrays in memory, or files of any length block by block.

`compress` and `decompress` work on arrays (`DacModel.compress` / `DacModel.decompress` call them);
`compress_file` and `decompress_file` stream from and to disk so memory does not grow with the length. Both
fold channels into the model's batch, resample to the model's rate and back with soxr, optionally normalise
the input to -16 LUFS (storing its loudness in the `.dac` file, restored on decoding), and run the model over
overlapping windows (`modeling_dac.windowing`), so the codes equal a whole-file `model.encode` and the audio a
whole-file `model.decode`.
"""

import contextlib
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic import atomic_write_path
from .audio import LoudnessMeter, loudness_gain, resample, soundfile_format, to_float_audio, warn_if_clipped
from .dac_file import DacFile, DacFileMetadata
from .modeling_dac import parameter_dtype
from .streaming import DacStreamingEncoder
from .validation import check_positive_integer
from .windowing import convolution_layers, decode_long, encode_long, inference_context, iter_decode_long

__all__ = ["TARGET_LOUDNESS", "compress", "compress_file", "decompress", "decompress_file"]

TARGET_LOUDNESS = -16.0
"""LUFS the input is normalised to when `normalize_loudness=True` (as the official DAC does)."""

_BLOCK_SECONDS = 10.0  # audio read or written per step by the file functions


def _loudness(audio: np.ndarray, sampling_rate: int) -> float:
    """
    Integrated loudness (LUFS) of `(channels, samples)` audio with the block-wise meter, so that the array
    and file functions measure the same value to the last bit.
    """
    meter = LoudnessMeter(sampling_rate, audio.shape[0])
    meter.update(audio)
    return meter.integrated_loudness()


def _as_audio(audio) -> np.ndarray:
    """Float32 `(channels, samples)` from a numpy array or tensor, float or integer PCM."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        audio = (audio.float() if audio.is_floating_point() else audio).numpy()  # numpy has no bfloat16
    if not isinstance(audio, np.ndarray):
        raise ValueError(f"`audio` must be a numpy array or a torch.Tensor, got {type(audio).__name__}.")
    audio = to_float_audio(audio)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise ValueError(f"`audio` must have shape (channels, samples) or (samples,), got {audio.shape}.")
    if audio.shape[1] == 0:
        raise ValueError("`audio` is empty (0 samples).")
    if audio.shape[0] > audio.shape[1]:
        raise ValueError(
            f"`audio` of shape {audio.shape} has more channels than samples; pass (channels, samples) "
            f"(transpose a (samples, channels) array)."
        )
    if not np.isfinite(audio).all():
        raise ValueError("`audio` contains NaN or Inf.")
    return audio


def _warn_beyond_full_scale(peak: float, name) -> None:
    """Warn that audio peaking above 1, which the model does not reproduce, is encoded without normalisation."""
    if peak > 1.0:
        warnings.warn(
            f"{name} peaks at {peak:.3g} ({20 * math.log10(peak):+.1f} dBFS), beyond full scale: the model "
            "reproduces audio within [-1, 1], and louder audio decodes quieter and distorted. Encode it with "
            "normalize_loudness=True (dac encode --normalize-loudness), or scale it into [-1, 1] first.",
            stacklevel=3,
        )


def _model_name(model: nn.Module) -> str | None:
    """What the model was loaded from, for the .dac metadata: a hub id, or a local directory's name."""
    name = str(getattr(model.config, "name_or_path", "") or "").rstrip("/")
    return (os.path.basename(name) if os.path.isdir(name) else name) or None


def compress(
    model: nn.Module,
    audio,
    sampling_rate: int,
    n_quantizers: int | None = None,
    normalize_loudness: bool = False,
    window_duration: float | None = None,
    batch_size: int = 1,
    show_progress: bool = False,
) -> DacFile:
    """
    Compress a recording of any length into a `DacFile`.

    Args:
        model: a `DacModel` (runs in eval mode).
        audio (`np.ndarray` or `torch.Tensor` of shape `(channels, samples)` or `(samples,)`):
            float audio in [-1, 1] or integer PCM (int8/16/32, uint8); each channel is encoded separately. Float
            audio peaking above 1 is encoded as it is, with a warning, unless `normalize_loudness` scales it.
        sampling_rate: rate of `audio` in Hz; it is resampled (soxr) to the model's rate if different.
        n_quantizers: codebooks to keep, all when `None`.
        normalize_loudness: scale the input to -16 LUFS first (lowered if the peak would exceed 1), and store
            its loudness in the file so `decompress` restores it.
        window_duration: seconds per window (`None`: chosen by memory; see `modeling_dac.windowing`).
        batch_size: windows encoded together in one model call.
        show_progress: show a tqdm progress bar.

    Returns:
        A `DacFile` with codes `(channels, K, frames)`, `frames = ceil(samples at the model rate / hop_length)`,
        equal to `model.encode` of the whole (resampled, normalised) clip.
    """
    audio = _as_audio(audio)
    sampling_rate = check_positive_integer(sampling_rate, "sampling_rate", "in Hz")
    original_length = audio.shape[1]
    peak, loudness = float(np.abs(audio).max()), None
    if normalize_loudness:
        measured = _loudness(audio, sampling_rate)
        if np.isfinite(measured):
            loudness = measured
            gain = loudness_gain(measured, TARGET_LOUDNESS, peak)
            audio = (audio * gain).astype(np.float32)
    if loudness is None:  # else the gain brought the peak within [-1, 1]
        _warn_beyond_full_scale(peak, "the audio")
    audio = resample(audio, sampling_rate, model.config.sampling_rate)
    codes = encode_long(model, audio, n_quantizers, window_duration, batch_size, show_progress)
    return DacFile.from_codes(
        codes.numpy(),
        model.config,
        sample_rate=sampling_rate,
        original_length=original_length,
        loudness=loudness,
        model_name=_model_name(model),
    )


def _load_checked(model: nn.Module, dac_file) -> DacFile:
    if isinstance(dac_file, (str, os.PathLike)):
        dac_file = DacFile.load(dac_file)
    if not isinstance(dac_file, DacFile):
        raise ValueError(f"expected a DacFile or a path to a .dac file, got {type(dac_file).__name__}.")
    dac_file.check_compatible(model.config)
    metadata, frames = dac_file.metadata, dac_file.codes.shape[-1]
    if not metadata.padding and metadata.chunk_length is None:
        raise ValueError("the .dac file was encoded without convolution padding but records no chunk_length.")
    # Decoded audio is cut to `original_length`; one frame of slack covers the rounding of the resampling.
    covered = math.ceil((frames + 1) * model.config.hop_length * metadata.sample_rate / model.config.sampling_rate)
    if metadata.original_length > covered:
        raise ValueError(
            f"the .dac file is corrupt: it claims {metadata.original_length} samples at {metadata.sample_rate} Hz, "
            f"but its {frames} code frames decode to at most {covered}."
        )
    return dac_file


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Cut `(channels, samples)` to `length` samples, or pad with zeros (resampling may round one short)."""
    return np.pad(audio[:, :length], ((0, 0), (0, max(0, length - audio.shape[1]))))


def _unpadded_length(convolutions: list[nn.Module], length: int) -> int:
    """Output length of `convolutions` run in order with padding 0 on `length` inputs (< 1: no output)."""
    for layer in convolutions:
        reach = layer.dilation[0] * (layer.kernel_size[0] - 1)
        if isinstance(layer, nn.ConvTranspose1d):
            length = (length - 1) * layer.stride[0] + reach + 1
        else:
            length = (length - reach - 1) // layer.stride[0] + 1
        if length < 1:
            return 0
    return length


def _official_order(metadata: DacFileMetadata) -> bool:
    """Whether a file decodes in the official order: official files, and any encoded in unpadded chunks."""
    return metadata.official_dac_version is not None or not metadata.padding


def _decode_official(
    model: nn.Module, dac_file: DacFile, window_duration: float | None, batch_size: int, show_progress: bool
) -> np.ndarray:
    """
    Audio `(channels, original_length)` of an official descript-audio-codec 1.0.0 file, decoded in its order:
    decoded whole at the model's rate (chunk by chunk without convolution padding for chunked files), scaled to
    the stored loudness, which the official encoder measured at the model's rate, then resampled and cut.

    One gain serves all channels, as the loudness was measured over all of them. The official `decompress`
    instead scales each channel alone to that loudness, which makes equal stereo channels about 3 dB louder than
    the input and changes the balance between channels; mono files decode identically.
    """
    metadata = dac_file.metadata
    if metadata.padding:
        audio = decode_long(model, dac_file.codes, window_duration, batch_size, show_progress).numpy()
    else:
        audio = _decode_official_chunks(model, dac_file, show_progress)
    if metadata.loudness is not None:
        audio = audio * loudness_gain(_loudness(audio, model.config.sampling_rate), metadata.loudness)
    audio = resample(audio.astype(np.float32), model.config.sampling_rate, metadata.sample_rate)
    return _fit_length(audio, metadata.original_length).astype(np.float32)


def _decode_official_chunks(model: nn.Module, dac_file: DacFile, show_progress: bool) -> np.ndarray:
    """
    Audio `(channels, samples)` at the model's rate of an official file encoded in chunks without convolution
    padding: each `chunk_length` frames through the decoder with every convolution's padding set to 0, as
    descript-audio-codec 1.0.0's `decompress` does, concatenated.
    """
    from tqdm.auto import tqdm

    metadata, codes = dac_file.metadata, torch.from_numpy(dac_file.codes)
    convolutions = convolution_layers(model.decoder)
    if _unpadded_length(convolutions, metadata.chunk_length) < 1:
        raise ValueError(
            f"the official .dac file's chunks of chunk_length={metadata.chunk_length} frames are too short for "
            f"this model's decoder without padding: it was not encoded by a model with this architecture."
        )
    paddings = [layer.padding for layer in convolutions]
    pieces = []
    try:
        for layer in convolutions:
            layer.padding = (0,)
        with inference_context(model):
            for first in tqdm(range(0, codes.shape[-1], metadata.chunk_length), disable=not show_progress, leave=False):
                chunk = codes[..., first : first + metadata.chunk_length].to(model.device)
                latents = model.quantizer.from_codes(chunk).to(parameter_dtype(model.decoder))
                pieces.append(model.decoder(latents)[:, 0].float().cpu().numpy())
    finally:
        for layer, padding in zip(convolutions, paddings):
            layer.padding = padding
    return np.concatenate(pieces, axis=-1)


def decompress(
    model: nn.Module,
    dac_file,
    window_duration: float | None = None,
    batch_size: int = 1,
    show_progress: bool = False,
) -> np.ndarray:
    """
    Float32 audio `(channels, original_length)` at the original sample rate from a `DacFile` or a path to one.

    The file is first checked against the model (`DacFile.check_compatible`: a clear ValueError if the model
    cannot decode it). The codes are decoded window by window (equal to a whole-file `model.decode`),
    resampled to the original rate, cut to the original length and, if the file stores an input loudness,
    scaled to it. That gain has no peak limit (as in the official DAC): a loud input encoded with
    `normalize_loudness` can come back with samples beyond [-1, 1], returned as they are. Official
    descript-audio-codec files are decoded in the official order (see `_decode_official`). Other arguments as
    in `compress`.
    """
    dac_file = _load_checked(model, dac_file)
    metadata = dac_file.metadata
    if _official_order(metadata):
        return _decode_official(model, dac_file, window_duration, batch_size, show_progress)
    audio = decode_long(model, dac_file.codes, window_duration, batch_size, show_progress).numpy()
    audio = _fit_length(resample(audio, model.config.sampling_rate, metadata.sample_rate), metadata.original_length)
    if metadata.loudness is not None:
        audio = audio * loudness_gain(_loudness(audio, metadata.sample_rate), metadata.loudness)
    return audio.astype(np.float32)


def _sound_file(path: Path, mode: str, name: Path | None = None, **options):
    """soundfile.SoundFile, with a ValueError naming `name` (default `path`) and, for writing, what was asked."""
    import soundfile

    try:
        return soundfile.SoundFile(str(path), mode, **options)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        if mode == "r":
            raise ValueError(f"Cannot read audio file {name or path}: {error}") from error
        asked = f"{options.get('channels')} channel(s) at {options.get('samplerate')} Hz as {options.get('format')}"
        raise ValueError(f"Cannot write audio file {name or path} ({asked}): {error}") from error


def _read_blocks(source, block_frames: int) -> Iterator[np.ndarray]:
    """Float32 `(channels, samples)` blocks of an open `soundfile.SoundFile`, from its start."""
    source.seek(0)
    for block in source.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
        yield np.ascontiguousarray(block.T)


class _StreamResampler:
    """soxr's streaming resampler on `(channels, samples)` blocks; the identity when the rates are equal."""

    def __init__(self, input_rate: int, output_rate: int, channels: int):
        import soxr

        self.channels = channels
        self._stream = (
            None
            if input_rate == output_rate
            else soxr.ResampleStream(input_rate, output_rate, channels, dtype="float32", quality="HQ")
        )

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return block
        return np.ascontiguousarray(self._stream.resample_chunk(np.ascontiguousarray(block.T), last=last).T)

    def flush(self) -> np.ndarray:
        return self(np.zeros((self.channels, 0), dtype=np.float32), last=True)


def compress_file(
    model: nn.Module,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    n_quantizers: int | None = None,
    normalize_loudness: bool = False,
    window_duration: float | None = None,
    batch_size: int = 1,
    show_progress: bool = False,
) -> DacFile:
    """
    Compress an audio file of any length (any format soundfile reads) into a `.dac` file, reading it block by
    block so memory does not grow with its length (the codes, a few kB per second, are held until written).
    The result equals `compress` of the whole file. With `normalize_loudness` the file is read twice: once to
    measure its loudness and peak, once to encode. The `.dac` file is written atomically; the `DacFile` is
    returned. Arguments as in `compress`.
    """
    input_path = Path(input_path)
    config = model.config
    with _sound_file(input_path, "r") as source:
        sampling_rate, channels = source.samplerate, source.channels
        block_frames = max(1, int(_BLOCK_SECONDS * sampling_rate))
        gain, loudness, peak = 1.0, None, 0.0
        if normalize_loudness:
            meter = LoudnessMeter(sampling_rate, channels)
            for block in _read_blocks(source, block_frames):
                meter.update(block)
                peak = max(peak, float(np.abs(block).max()))
            measured = meter.integrated_loudness()
            if np.isfinite(measured):
                loudness, gain = measured, loudness_gain(measured, TARGET_LOUDNESS, peak)

        from tqdm.auto import tqdm

        encoder = DacStreamingEncoder(model, n_quantizers, window_duration, batch_size)
        resampler = _StreamResampler(sampling_rate, config.sampling_rate, channels)
        codes, original_length = [], 0
        with tqdm(
            total=source.frames / sampling_rate,
            unit="s",
            desc=f"Encoding {input_path.name}",
            disable=not show_progress,
            leave=False,
        ) as progress:
            for block in _read_blocks(source, block_frames):
                original_length += block.shape[1]
                if not np.isfinite(block).all():
                    raise ValueError(f"Audio file {input_path} contains NaN or Inf samples.")
                if not normalize_loudness:  # else measured above
                    peak = max(peak, float(np.abs(block).max()))
                new_codes = encoder.push(resampler(block * np.float32(gain) if gain != 1.0 else block))
                codes.append(new_codes.int())  # half the memory of int64 while the file is read
                progress.update(block.shape[1] / sampling_rate)
        if original_length == 0:
            raise ValueError(f"Audio file {input_path} holds no samples.")
        codes.append(encoder.push(resampler.flush()).int())
        codes.append(encoder.flush().int())
    audio_codes = torch.cat(codes, dim=-1)
    if not audio_codes.shape[-1]:
        raise ValueError(
            f"Audio file {input_path} is too short to encode: its {original_length} sample(s) at {sampling_rate} Hz "
            f"are less than one sample at the model's {config.sampling_rate} Hz."
        )
    if loudness is None:  # else the gain brought the peak within [-1, 1]
        _warn_beyond_full_scale(peak, f"Audio file {input_path}")
    dac_file = DacFile.from_codes(
        audio_codes.numpy(),
        config,
        sample_rate=sampling_rate,
        original_length=original_length,
        loudness=loudness,
        model_name=_model_name(model),
    )
    dac_file.save(output_path)
    return dac_file


def _decoded_blocks(
    model: nn.Module, dac_file: DacFile, window_duration: float | None, batch_size: int, show_progress: bool
) -> Iterator[np.ndarray]:
    """The decoded audio `(channels, samples)` in blocks at the original rate, `original_length` in all."""
    metadata = dac_file.metadata
    if _official_order(metadata):  # decoded whole (the file is already checked against the model)
        yield _decode_official(model, dac_file, window_duration, batch_size, show_progress)
        return
    resampler = _StreamResampler(model.config.sampling_rate, metadata.sample_rate, metadata.channels)
    remaining = metadata.original_length
    decoded = iter_decode_long(model, dac_file.codes, window_duration, batch_size, show_progress)
    for block in (resampler(audio.numpy()) for audio in decoded):
        yield block[:, :remaining]
        remaining -= min(remaining, block.shape[1])
    tail = _fit_length(resampler.flush(), remaining)
    if tail.shape[1]:
        yield tail


def decompress_file(
    model: nn.Module,
    dac_file,
    output_path: str | os.PathLike,
    window_duration: float | None = None,
    batch_size: int = 1,
    show_progress: bool = False,
    subtype: str | None = None,
) -> Path:
    """
    Decompress a `.dac` file (or a `DacFile`) into an audio file, decoding and writing block by block so
    memory does not grow with the length; the result equals `decompress`. The format follows the extension of
    `output_path` (wav, flac, ogg, ...); `subtype` is soundfile's (e.g. "PCM_24", "FLOAT"; `None`: the format's
    default, 16-bit PCM for wav). When the file stores an input loudness, the audio goes first to a temporary
    float file beside the output while its loudness is measured, then is scaled into the output. Samples beyond
    [-1, 1] (see `decompress`) are clipped by integer subtypes, with one warning naming the file, the share of
    samples clipped and the peak; "FLOAT" keeps them. The output is written atomically; its path is returned.
    Other arguments as in `compress`.
    """
    output_path = Path(output_path)
    output_format = soundfile_format(output_path)
    dac_file = _load_checked(model, dac_file)
    metadata = dac_file.metadata
    blocks = _decoded_blocks(model, dac_file, window_duration, batch_size, show_progress)
    sink_options = dict(
        samplerate=metadata.sample_rate, channels=metadata.channels, format=output_format, subtype=subtype
    )
    if metadata.loudness is not None and not _official_order(metadata):  # else it comes out scaled
        blocks = _scaled_to_loudness(blocks, metadata, output_path)
    clipped, peak = 0, 0.0
    # Closed on any error, Ctrl-C included, so that the scaling's scratch file goes at once.
    with atomic_write_path(output_path) as temporary, contextlib.closing(blocks):
        with _sound_file(temporary, "w", name=output_path, **sink_options) as sink:
            for block in blocks:
                sink.write(block.T)
                magnitude = np.abs(block)
                clipped += int(np.count_nonzero(magnitude > 1.0))
                peak = max(peak, float(magnitude.max(initial=0.0)))
    warn_if_clipped(output_path, clipped, metadata.original_length * metadata.channels, peak, sink.subtype)
    return output_path


def _scaled_to_loudness(
    blocks: Iterator[np.ndarray], metadata: DacFileMetadata, output_path: Path
) -> Iterator[np.ndarray]:
    """
    `blocks` scaled to the file's stored loudness: they are written to a temporary float file beside
    `output_path` while their loudness is measured, then read back scaled. The temporary file is removed in
    any case.
    """
    sampling_rate, channels = metadata.sample_rate, metadata.channels
    handle, scratch = tempfile.mkstemp(dir=output_path.parent, prefix=f".{output_path.name}.", suffix=".tmp")
    os.close(handle)
    scratch = Path(scratch)
    try:
        meter = LoudnessMeter(sampling_rate, channels)
        with _sound_file(
            scratch, "w", samplerate=sampling_rate, channels=channels, format="W64", subtype="FLOAT"
        ) as unscaled:
            for block in blocks:
                meter.update(block)
                unscaled.write(block.T)
        gain = np.float32(loudness_gain(meter.integrated_loudness(), metadata.loudness))
        with _sound_file(scratch, "r") as unscaled:
            for block in _read_blocks(unscaled, int(_BLOCK_SECONDS * sampling_rate)):
                yield block * gain
    finally:
        scratch.unlink(missing_ok=True)
