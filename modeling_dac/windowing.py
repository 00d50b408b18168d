"""Audio of any length through a DAC model in overlapping windows, with the codes and audio of one whole pass.

Every layer of the DAC encoder and decoder is a convolution, so each code frame depends on a bounded stretch of
audio (and each decoded sample on a bounded run of frames): its receptive field. Here the audio (or the codes)
is cut into windows that start on frame boundaries and overlap by at least that receptive field; the model runs
on each window and only the frames (or samples) whose receptive field lies inside the window are kept. Those
are the values a single pass over the whole file computes: inside a window every intermediate value they
depend on is computed from the same inputs, the first window starts at sample 0 so it sees the zero padding
the whole-file encode sees at the start, and the last window ends at the end of the file so it sees the same
end padding. The codes therefore come out at the model's true frame rate and equal `model.encode` of the whole
file, and decoded audio equals `model.decode` of all the codes (up to float rounding: see docs/long_audio.md),
while memory depends on the window, not on the length.

The same arithmetic (receptive fields, `plan_windows`, `encode_windows`, `decode_windows`) drives the streaming
encoder and decoder in `modeling_dac.streaming`.
"""

import contextlib
import ctypes
import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .audio import looks_transposed
from .configuration_dac import DacConfig
from .validation import check_positive_integer

__all__ = [
    "ACTIVATION_MEMORY_BUDGET",
    "MAX_AUTO_WINDOW_SECONDS",
    "DacEncoderReceptiveField",
    "DacReceptiveField",
    "DacWindow",
    "as_channels_first",
    "convolution_layers",
    "decode_long",
    "decode_windows",
    "decoder_context",
    "encode_long",
    "encode_windows",
    "encoder_context",
    "encoder_receptive_field",
    "eval_mode",
    "inference_context",
    "iter_decode_long",
    "plan_windows",
    "window_frames",
]

ACTIVATION_MEMORY_BUDGET = 2**30
"""Bytes of activations one model call may use when the window length is chosen automatically."""

MAX_AUTO_WINDOW_SECONDS = 30.0
"""Longest window chosen automatically (small models fit long windows in the budget)."""

# Peak activation bytes per sample and channel of the widest full-rate layer, measured: about 36 for the
# 44.1 kHz model (3.96 s windows peak 0.6 GB above the loaded model), up to 60 for narrow models, where other
# layers weigh more (benchmarks/bench_long_audio.py).
_ACTIVATION_BYTES_PER_CHANNEL_SAMPLE = 64


def _find_malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _find_malloc_trim()


def _release_freed_memory() -> None:
    """
    Hand freed heap memory back to the OS (glibc only). After freeing a large tensor glibc raises its mmap
    threshold, so the next windows' activations come from the heap, whose free pages it keeps: without this
    the resident size creeps up window after window (from 1.07 to 1.53 GB over three 30 s windows in one
    measurement).
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@dataclass(frozen=True)
class DacReceptiveField:
    """
    How far beyond its own span one output step looks, on each side.

    For the encoder in audio samples (`encoder_receptive_field`): code frame `j` depends on samples
    `[j * hop - left, (j + 1) * hop - 1 + right]`. As window context (`encoder_context`, `decoder_context`) in
    code frames: frame `j` of the encoder, or the `hop_length` decoded samples of frame `j`, depend only on
    what frames `[j - left, j + right]` of a window hold.
    """

    left: int
    right: int


@dataclass(frozen=True)
class DacEncoderReceptiveField(DacReceptiveField):
    r"""
    The input samples one code frame depends on: frame `f` covers samples `[f * hop_length, (f + 1) * hop_length)`
    and its code depends on samples `f * hop_length - left` to `(f + 1) * hop_length - 1 + right` (inclusive).

    Args:
        left (`int`): samples before the frame's own hop window that reach its code.
        right (`int`): samples after the frame's own hop window that reach its code.
        hop_length (`int`): samples per code frame.
    """

    hop_length: int

    @property
    def size(self) -> int:
        """Samples one code depends on in all."""
        return self.left + self.hop_length + self.right

    def exact_frames(self, length: int) -> int:
        """
        How many leading frames of a clip of `length` samples have their whole receptive field inside the clip
        on the right (`(f + 1) * hop_length - 1 + right < length`): those frames get the same code in a
        right-padded batch as when the clip is encoded alone. The left side never matters, since a clip starts
        the same way in both cases.
        """
        if length < 0:
            raise ValueError(f"`length` must be >= 0, got {length}.")
        return max(0, (length - self.right) // self.hop_length)


@dataclass(frozen=True)
class DacWindow:
    """
    One model call of a windowed pass, in code frames: the model runs on frames `[start, stop)` (audio samples
    `[start * hop, stop * hop)`, cut at the end of the file) and frames `[keep_start, keep_stop)` of its output
    are kept.
    """

    start: int
    stop: int
    keep_start: int
    keep_stop: int


def convolution_layers(module: nn.Module) -> list[nn.Module]:
    """The `Conv1d` and `ConvTranspose1d` layers of `module`, in the order they are registered (and run, in DAC)."""
    return [layer for layer in module.modules() if isinstance(layer, (nn.Conv1d, nn.ConvTranspose1d))]


def _input_span(layer: nn.Module, first: int, last: int) -> tuple[int, int]:
    """Input positions that outputs `first..last` of a convolution read (transposed: those that write them)."""
    kernel_size, stride, padding, dilation = (
        layer.kernel_size[0],
        layer.stride[0],
        layer.padding[0],
        layer.dilation[0],
    )
    reach = dilation * (kernel_size - 1)
    if isinstance(layer, nn.ConvTranspose1d):
        # output t = input i * stride - padding + tap, tap in [0, reach]
        return -(-(first + padding - reach) // stride), (last + padding) // stride
    return first * stride - padding, last * stride - padding + reach


def _receptive_span(module: nn.Module, first: int, last: int) -> tuple[int, int]:
    """
    Input positions that outputs `first..last` of `module` depend on, following its convolutions from the last
    to the first. Valid for the DAC encoder and decoder: their modules are registered in the order they run,
    and the identity path of each residual unit reads a subset of what its centred convolution branch reads.
    """
    for layer in reversed(convolution_layers(module)):
        first, last = _input_span(layer, first, last)
    return first, last


def _meta_module(module_class: type[nn.Module], config: DacConfig) -> nn.Module:
    with torch.device("meta"):
        return module_class(config)


def encoder_receptive_field(config: DacConfig) -> DacEncoderReceptiveField:
    """
    The encoder's receptive field in audio samples beyond a frame's own `hop_length` samples, traced through the
    kernel sizes, dilations, strides and paddings of the encoder that `config` describes. For the released
    44.1 kHz models it is 3,733 samples on each side of the 512-sample hop window; for the 16 and 24 kHz models,
    2,501 left and 2,493 right of the 320-sample window.
    """
    from .modeling_dac import DacEncoder

    first, last = _receptive_span(_meta_module(DacEncoder, config), 0, 0)
    return DacEncoderReceptiveField(left=-first, right=last - (config.hop_length - 1), hop_length=config.hop_length)


def encoder_context(config: DacConfig) -> DacReceptiveField:
    """The encoder's receptive field rounded up to whole code frames: the context each window needs."""
    field = encoder_receptive_field(config)
    hop_length = config.hop_length
    return DacReceptiveField(left=-(-field.left // hop_length), right=-(-field.right // hop_length))


def decoder_context(config: DacConfig) -> DacReceptiveField:
    """Code frames beyond frame `j` that the decoder reads to compute frame `j`'s `hop_length` samples."""
    from .modeling_dac import DacDecoder

    hop_length = config.hop_length
    first, last = _receptive_span(_meta_module(DacDecoder, config), 0, hop_length - 1)
    return DacReceptiveField(left=-first, right=last)


def window_frames(
    config: DacConfig, context: DacReceptiveField, window_duration: float | None = None, items: int = 1
) -> int:
    """
    Frames per window (context included) for `window_duration` seconds.

    `None` picks the longest window, up to `MAX_AUTO_WINDOW_SECONDS`, whose activations for `items` batch
    items stay within `ACTIVATION_MEMORY_BUDGET` by a conservative estimate (about 4 s for the 44.1 kHz
    model, mono), and at least four times the context. A given duration must leave room for at least one
    frame besides the context.
    """
    hop_length = config.hop_length
    minimum = context.left + context.right + 1
    if window_duration is None:
        widest_full_rate_layer = max(
            config.encoder_hidden_size, config.decoder_hidden_size // 2 ** len(config.upsampling_ratios)
        )
        bytes_per_frame = _ACTIVATION_BYTES_PER_CHANNEL_SAMPLE * widest_full_rate_layer * hop_length * items
        longest = math.ceil(MAX_AUTO_WINDOW_SECONDS * config.frame_rate)
        frames = min(ACTIVATION_MEMORY_BUDGET // bytes_per_frame, longest)
        return max(frames, 4 * minimum)
    is_number = isinstance(window_duration, numbers.Real) and not isinstance(window_duration, bool)
    if not is_number or not math.isfinite(window_duration) or window_duration <= 0:
        raise ValueError(f"`window_duration` must be a positive number of seconds or None, got {window_duration!r}.")
    frames = math.ceil(window_duration * config.frame_rate - 1e-9)
    if frames < minimum:
        raise ValueError(
            f"`window_duration`={window_duration} s is {frames} code frames, shorter than the model's receptive "
            f"field: a window needs {context.left} + {context.right} frames of context plus at least one frame, "
            f"so at least {minimum / config.frame_rate:.4f} s ({minimum} frames); more is faster."
        )
    return frames


def plan_windows(
    keep_start: int, keep_stop: int, total_frames: int, frames_per_window: int, context: DacReceptiveField
) -> list[DacWindow]:
    """
    Windows that together keep frames `[keep_start, keep_stop)` of a stream of `total_frames` frames: each keeps
    `frames_per_window - context.left - context.right` frames (the last fewer) and reaches `context` frames
    further on each side, cut at 0 and `total_frames` (there the whole-file pass pads the same way).
    """
    step = frames_per_window - context.left - context.right
    if step < 1:
        raise ValueError(
            f"a window of {frames_per_window} frames leaves no frame besides its {context.left} + "
            f"{context.right} frames of context."
        )
    if not 0 <= keep_start <= keep_stop <= total_frames:
        raise ValueError(f"cannot keep frames [{keep_start}, {keep_stop}) of a stream of {total_frames} frames.")
    return [
        DacWindow(
            start=max(0, first - context.left),
            stop=min(total_frames, min(first + step, keep_stop) + context.right),
            keep_start=first,
            keep_stop=min(first + step, keep_stop),
        )
        for first in range(keep_start, keep_stop, step)
    ]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then every submodule's own mode back (a part the caller froze in eval stays so)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def inference_context(model: nn.Module) -> Iterator[None]:
    """
    Eval mode (no quantizer dropout) and no autograd for the duration, then the model's modes as they were; freed
    memory is handed back to the OS before and after. Held around single model calls only, never across a
    generator's `yield`, so the caller's code between outputs runs with its own grad mode and model mode.
    """
    _release_freed_memory()
    try:
        with eval_mode(model), torch.no_grad():
            yield
    finally:
        _release_freed_memory()


def _batches(
    windows: Iterable[DacWindow], read: Callable[[int, int], torch.Tensor], batch_size: int
) -> Iterator[tuple[list[DacWindow], torch.Tensor]]:
    """Consecutive windows whose inputs have the same shape, up to `batch_size` at a time, stacked."""
    batch_size = check_positive_integer(batch_size, "batch_size")
    group, inputs = [], []
    for window in windows:
        window_input = read(window.start, window.stop)
        if inputs and (len(group) == batch_size or window_input.shape != inputs[0].shape):
            yield group, torch.stack(inputs)
            group, inputs = [], []
        group.append(window)
        inputs.append(window_input)
    if group:
        yield group, torch.stack(inputs)


def encode_windows(
    model: nn.Module,
    windows: Iterable[DacWindow],
    read_audio: Callable[[int, int], torch.Tensor],
    n_quantizers: int | None = None,
    batch_size: int = 1,
) -> Iterator[tuple[DacWindow, torch.LongTensor]]:
    """
    Encode `windows` in order and yield each with the codes `(channels, K, keep_stop - keep_start)` it keeps.

    `read_audio(first, stop)` returns the float audio `(channels, samples)` of frames `[first, stop)`: samples
    `[first * hop, stop * hop)`, fewer when the file ends before. Up to `batch_size` consecutive windows of the
    same length run in one call, their channels folded into the batch. Codes come back on the CPU.
    """
    device, dtype = model.device, model.dtype
    for group, audio in _batches(windows, read_audio, batch_size):
        n_windows, channels, samples = audio.shape
        input_values = audio.reshape(n_windows * channels, 1, samples).to(device=device, dtype=dtype)
        with inference_context(model):
            codes = model.encode(input_values, n_quantizers=n_quantizers, return_dict=True).audio_codes.cpu()
        codes = codes.reshape(n_windows, channels, *codes.shape[1:])
        for window, window_codes in zip(group, codes):
            offset = window.keep_start - window.start
            yield window, window_codes[..., offset : offset + window.keep_stop - window.keep_start]


def decode_windows(
    model: nn.Module,
    windows: Iterable[DacWindow],
    read_codes: Callable[[int, int], torch.Tensor],
    batch_size: int = 1,
) -> Iterator[tuple[DacWindow, torch.Tensor]]:
    """
    Decode `windows` in order and yield each with the float32 audio `(channels, (keep_stop - keep_start) * hop)`
    it keeps. `read_codes(first, stop)` returns the codes `(channels, K, stop - first)` of those frames.
    """
    device, hop_length = model.device, model.config.hop_length
    for group, codes in _batches(windows, read_codes, batch_size):
        n_windows, channels = codes.shape[:2]
        audio_codes = codes.reshape(n_windows * channels, *codes.shape[2:]).to(device=device, dtype=torch.long)
        with inference_context(model):
            audio = model.decode(audio_codes=audio_codes, return_dict=True).audio_values.float().cpu()
        audio = audio.reshape(n_windows, channels, audio.shape[-1])
        for window, window_audio in zip(group, audio):
            offset = (window.keep_start - window.start) * hop_length
            yield window, window_audio[:, offset : offset + (window.keep_stop - window.keep_start) * hop_length]


def as_channels_first(values, name: str, trailing_dims: int) -> torch.Tensor:
    """
    A numpy array or tensor as a tensor with a leading channel axis (added for single-channel input): audio
    `(channels, samples)` with `trailing_dims=1`, codes `(channels, n_codebooks, frames)` with 2. Audio that is
    almost surely `(samples, channels)` is refused rather than coded as thousands of channels.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(values)) if isinstance(values, np.ndarray) else values
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"`{name}` must be a numpy array or a torch.Tensor, got {type(values).__name__}.")
    if tensor.ndim == trailing_dims:
        tensor = tensor[None]
    if tensor.ndim != trailing_dims + 1 or tensor.shape[0] == 0:
        raise ValueError(f"`{name}` has shape {tuple(tensor.shape)}; see the docstring for the shapes accepted.")
    if trailing_dims == 1 and looks_transposed(tensor):
        raise ValueError(
            f"`{name}` has shape {tuple(tensor.shape)}: {tensor.shape[0]} channels of {tensor.shape[1]} samples. "
            "Pass (channels, samples): transpose a (samples, channels) array such as soundfile returns."
        )
    return tensor


def _progress(show_progress: bool, total: int, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="frame", desc=description, disable=not show_progress, leave=False)


def encode_long(
    model: nn.Module,
    audio,
    n_quantizers: int | None = None,
    window_duration: float | None = None,
    batch_size: int = 1,
    show_progress: bool = False,
) -> torch.LongTensor:
    """
    Codes `(channels, K, ceil(samples / hop_length))` of audio of any length, equal to `model.encode` of the
    whole clip, computed window by window (see the module docstring).

    Args:
        model: a `DacModel`; it runs in eval mode (quantizer dropout off) whatever its mode.
        audio (`np.ndarray` or `torch.Tensor` of shape `(channels, samples)` or `(samples,)`):
            float audio at `model.config.sampling_rate`; channels are encoded independently.
        n_quantizers: codebooks to use (K), all when `None`.
        window_duration: seconds per window including its context; `None` chooses by memory
            (`window_frames`). Shorter than the receptive field is an error.
        batch_size: windows encoded together in one model call (each with all its channels).
        show_progress: show a tqdm progress bar over frames.
    """
    audio = as_channels_first(audio, "audio", trailing_dims=1)
    if not audio.is_floating_point():
        raise ValueError(f"`audio` must hold float samples in [-1, 1], got dtype {audio.dtype}.")
    if audio.shape[-1] == 0:
        raise ValueError("`audio` is empty (0 samples).")
    if not torch.isfinite(audio).all():
        raise ValueError("`audio` contains NaN or Inf.")
    n_quantizers = model._check_n_quantizers(n_quantizers)
    batch_size = check_positive_integer(batch_size, "batch_size")
    config, channels = model.config, audio.shape[0]
    hop_length = config.hop_length
    total_frames = model.get_encoded_length(audio.shape[-1])
    context = encoder_context(config)
    frames_per_window = window_frames(config, context, window_duration, items=channels * batch_size)
    windows = plan_windows(0, total_frames, total_frames, frames_per_window, context)

    def read_audio(first: int, stop: int) -> torch.Tensor:
        return audio[:, first * hop_length : stop * hop_length]

    codes = torch.empty(channels, n_quantizers or config.n_codebooks, total_frames, dtype=torch.long)
    with _progress(show_progress, total_frames, "Encoding") as progress:
        for window, window_codes in encode_windows(model, windows, read_audio, n_quantizers, batch_size):
            codes[..., window.keep_start : window.keep_stop] = window_codes
            progress.update(window.keep_stop - window.keep_start)
    return codes


def iter_decode_long(
    model: nn.Module,
    audio_codes,
    window_duration: float | None = None,
    batch_size: int = 1,
    show_progress: bool = False,
) -> Iterator[torch.Tensor]:
    """
    Decode codes `(channels, K, frames)` (or `(K, frames)`) window by window and yield consecutive blocks of
    float32 audio `(channels, samples)`; together they are `model.decode` of all the codes, `frames *
    hop_length` samples per channel. Arguments as in `encode_long`.
    """
    audio_codes = as_channels_first(audio_codes, "audio_codes", trailing_dims=2)
    model._check_audio_codes(audio_codes)  # here, not in the generator: bad codes fail at the call
    batch_size = check_positive_integer(batch_size, "batch_size")
    config, channels, total_frames = model.config, audio_codes.shape[0], audio_codes.shape[-1]
    context = decoder_context(config)
    frames_per_window = window_frames(config, context, window_duration, items=channels * batch_size)
    windows = plan_windows(0, total_frames, total_frames, frames_per_window, context)
    return _decode_planned_windows(model, windows, audio_codes, batch_size, show_progress)


def _decode_planned_windows(
    model: nn.Module, windows: list[DacWindow], audio_codes: torch.Tensor, batch_size: int, show_progress: bool
) -> Iterator[torch.Tensor]:
    """The audio each of `windows` keeps, in order, with a progress bar over the frames."""
    with _progress(show_progress, audio_codes.shape[-1], "Decoding") as progress:
        for window, audio in decode_windows(
            model, windows, lambda first, stop: audio_codes[..., first:stop], batch_size
        ):
            progress.update(window.keep_stop - window.keep_start)
            yield audio


def decode_long(
    model: nn.Module,
    audio_codes,
    window_duration: float | None = None,
    batch_size: int = 1,
    show_progress: bool = False,
) -> torch.Tensor:
    """Float32 audio `(channels, frames * hop_length)` of codes of any length, as `iter_decode_long` in one piece."""
    return torch.cat(list(iter_decode_long(model, audio_codes, window_duration, batch_size, show_progress)), dim=-1)
