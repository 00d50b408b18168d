"""Streaming DAC: an encoder that takes audio and a decoder that takes codes in chunks of any size.

Each emits its outputs as soon as they are determined, that is as soon as the right-hand context of their
receptive field has arrived, and keeps only the context the next outputs need, so memory stays bounded
however long the stream runs. Their concatenated outputs equal the offline results (`model.encode` of the
whole audio, `model.decode` of all the codes) because they run the same windows as `modeling_dac.windowing`,
just planned as the input arrives. Latency, fixed by the model's receptive field:

- `DacStreamingEncoder`: code frame `j` (samples `[j * hop, (j + 1) * hop)`) is returned by the `push` that
  brings the stream to `(j + 1 + context.right) * hop` samples; `latency_samples = context.right * hop` after
  the frame's last sample (8 frames, 92.9 ms for the 44.1 kHz model).
- `DacStreamingDecoder`: the `hop` samples of frame `j` are returned by the `push` that brings the stream to
  `j + 1 + context.right` frames; `latency_frames = context.right` (10 frames, 116.1 ms at 44.1 kHz).

`flush()` ends the stream and returns the rest, computed with the same end padding as the offline pass.
"""

import math

import torch
from torch import nn

from .windowing import (
    DacReceptiveField,
    as_channels_first,
    decode_windows,
    decoder_context,
    encode_windows,
    encoder_context,
    plan_windows,
    window_frames,
)
from .validation import check_positive_integer

__all__ = ["DacStreamingDecoder", "DacStreamingEncoder"]


class _DacStream:
    """
    Buffering and window planning shared by the streaming encoder and decoder. Inputs are measured in units
    (audio samples, or code frames) of which `units_per_frame` make one code frame.
    """

    _input_name: str
    _trailing_dims: int

    def __init__(
        self,
        model: nn.Module,
        context: DacReceptiveField,
        units_per_frame: int,
        window_duration: float | None,
        batch_size: int,
    ):
        self.model = model
        self.context = context
        self._units_per_frame = units_per_frame
        self._window_duration = window_duration
        self._batch_size = check_positive_integer(batch_size, "batch_size")
        window_frames(model.config, context, window_duration)  # reject a too short window now, not mid-stream
        self._frames_per_window = None
        self._leading_shape = None  # the chunks' shape before the time axis, fixed by the first chunk
        self._buffer = None  # inputs from unit `_buffer_start` on, with `_pending` chunks not yet joined to it
        self._buffer_start = 0
        self._pending = []
        self._received = 0
        self._next_frame = 0
        self._finished = False

    def _check_chunk(self, chunk) -> torch.Tensor:
        raise NotImplementedError

    def _run(self, windows, read) -> list[torch.Tensor]:
        raise NotImplementedError

    def _empty(self) -> torch.Tensor:
        raise NotImplementedError

    def _as_chunk(self, chunk) -> torch.Tensor:
        if self._finished:
            raise ValueError("this stream was flushed; start a new one for more input.")
        tensor = as_channels_first(chunk, f"{self._input_name} chunk", self._trailing_dims)
        if self._leading_shape is not None and tensor.shape[:-1] != self._leading_shape:
            raise ValueError(
                f"{self._input_name} chunk has shape {tuple(tensor.shape)}, but the stream's first chunk had "
                f"{tuple(self._leading_shape)} before the time axis."
            )
        return self._check_chunk(tensor.cpu())

    @property
    def buffered(self) -> int:
        """Inputs held for outputs still to come: audio samples per channel (encoder) or code frames (decoder)."""
        held = 0 if self._buffer is None else self._buffer.shape[-1]
        return held + sum(chunk.shape[-1] for chunk in self._pending)

    @property
    def _channels(self) -> int:
        return 0 if self._leading_shape is None else self._leading_shape[0]

    def _push(self, chunk) -> torch.Tensor:
        chunk = self._as_chunk(chunk)
        if self._leading_shape is None:
            self._leading_shape = chunk.shape[:-1]
            items = chunk.shape[0] * self._batch_size
            self._frames_per_window = window_frames(self.model.config, self.context, self._window_duration, items)
        self._pending.append(chunk)
        self._received += chunk.shape[-1]
        complete_frames = self._received // self._units_per_frame
        return self._emit(complete_frames - self.context.right, complete_frames)

    def _flush(self) -> torch.Tensor:
        if self._finished:
            raise ValueError("this stream was already flushed.")
        self._finished = True
        if self._received == 0:
            return self._empty()
        total_frames = math.ceil(self._received / self._units_per_frame)
        outputs = self._emit(total_frames, total_frames)
        self._buffer = None  # no later window will read it
        return outputs

    def _emit(self, ready_frames: int, total_frames: int) -> torch.Tensor:
        if ready_frames <= self._next_frame:
            return self._empty()
        self._buffer = torch.cat(([self._buffer] if self._buffer is not None else []) + self._pending, dim=-1)
        self._pending = []
        units, start = self._units_per_frame, self._buffer_start

        def read(first: int, stop: int) -> torch.Tensor:
            return self._buffer[..., first * units - start : stop * units - start]

        windows = plan_windows(self._next_frame, ready_frames, total_frames, self._frames_per_window, self.context)
        outputs = self._run(windows, read)
        self._next_frame = ready_frames
        # Keep only what later windows can reach: `context.left` frames before the next frame to emit.
        keep_from = max(0, (ready_frames - self.context.left) * units)
        self._buffer = self._buffer[..., keep_from - start :].clone()
        self._buffer_start = keep_from
        return torch.cat(outputs, dim=-1)


class DacStreamingEncoder(_DacStream):
    """
    Encode audio that arrives in chunks of any size (one sample to minutes) into the codes `model.encode` would
    give for the whole stream.

    Args:
        model: a `DacModel`; it runs in eval mode during each call.
        n_quantizers: codebooks to use, all when `None`.
        window_duration: longest window one model call sees, in seconds (`None`: chosen by memory, see
            `modeling_dac.windowing.window_frames`); a long chunk is encoded in several windows.
        batch_size: windows encoded together in one model call.

    `push(chunk)` takes float audio `(channels, samples)` (or `(samples,)` for mono; the channel count is fixed
    by the first chunk) at `model.config.sampling_rate` and returns the codes `(channels, K, frames)` that the
    stream so far determines, possibly 0 frames. `flush()` returns the remaining frames; after it the stream
    takes no more input. Frame `j` is returned once `(j + 1 + context.right) * hop_length` samples have been
    pushed: `latency_samples` after its last sample.

    Example:

    ```python
    >>> import torch
    >>> from modeling_dac import DacConfig, DacModel
    >>> from modeling_dac.streaming import DacStreamingEncoder
    >>> model = DacModel(DacConfig(encoder_hidden_size=4, decoder_hidden_size=32, n_codebooks=4)).eval()
    >>> audio = torch.randn(1, 44100) * 0.1
    >>> encoder = DacStreamingEncoder(model)
    >>> chunks = [encoder.push(audio[:, start : start + 1000]) for start in range(0, 44100, 1000)]
    >>> codes = torch.cat(chunks + [encoder.flush()], dim=-1)
    >>> torch.equal(codes, model.encode(audio[None]).audio_codes)
    True
    ```
    """

    _input_name = "audio"
    _trailing_dims = 1

    def __init__(
        self,
        model: nn.Module,
        n_quantizers: int | None = None,
        window_duration: float | None = None,
        batch_size: int = 1,
    ):
        n_quantizers = model._check_n_quantizers(n_quantizers)
        super().__init__(model, encoder_context(model.config), model.config.hop_length, window_duration, batch_size)
        self.n_quantizers = n_quantizers
        self.latency_samples = self.context.right * model.config.hop_length

    @property
    def latency_seconds(self) -> float:
        """`latency_samples` in seconds."""
        return self.latency_samples / self.model.config.sampling_rate

    def push(self, chunk) -> torch.LongTensor:
        """Add audio `(channels, samples)` or `(samples,)`; return the codes `(channels, K, frames)` now determined."""
        return self._push(chunk)

    def flush(self) -> torch.LongTensor:
        """End the stream and return its remaining codes `(channels, K, frames)`."""
        return self._flush()

    def _check_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        if not chunk.is_floating_point():
            raise ValueError(f"audio chunks must hold float samples in [-1, 1], got dtype {chunk.dtype}.")
        if not torch.isfinite(chunk).all():
            raise ValueError("an audio chunk contains NaN or Inf.")
        return chunk.float()

    def _run(self, windows, read) -> list[torch.Tensor]:
        return [codes for _, codes in encode_windows(self.model, windows, read, self.n_quantizers, self._batch_size)]

    def _empty(self) -> torch.LongTensor:
        codebooks = self.n_quantizers or self.model.config.n_codebooks
        return torch.empty(self._channels, codebooks, 0, dtype=torch.long)


class DacStreamingDecoder(_DacStream):
    """
    Decode codes that arrive in chunks of any number of frames into the audio `model.decode` would give for
    all of them.

    Args:
        model: a `DacModel`; it runs in eval mode during each call.
        window_duration: longest window one model call sees, in seconds (`None`: chosen by memory).
        batch_size: windows decoded together in one model call.

    `push(codes)` takes integer codes `(channels, K, frames)` (or `(K, frames)` for mono; channels and K are
    fixed by the first chunk) and returns the float32 audio `(channels, samples)` now determined, a multiple of
    `hop_length` samples (possibly 0). `flush()` returns the rest; in all `frames * hop_length` samples per
    channel. The samples of frame `j` are returned once `j + 1 + latency_frames` frames have been pushed.
    """

    _input_name = "codes"
    _trailing_dims = 2

    def __init__(self, model: nn.Module, window_duration: float | None = None, batch_size: int = 1):
        super().__init__(model, decoder_context(model.config), 1, window_duration, batch_size)
        self.latency_frames = self.context.right

    @property
    def latency_seconds(self) -> float:
        """`latency_frames` in seconds."""
        return self.latency_frames / self.model.config.frame_rate

    def push(self, codes) -> torch.Tensor:
        """Add codes `(channels, K, frames)` or `(K, frames)`; return the audio `(channels, samples)` now determined."""
        return self._push(codes)

    def flush(self) -> torch.Tensor:
        """End the stream and return its remaining audio `(channels, samples)`."""
        return self._flush()

    def _check_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        if chunk.is_floating_point() or chunk.is_complex() or chunk.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got dtype {chunk.dtype}.")
        chunk = chunk.long()  # torch compares small integer types with wrapped scalars and lacks min for uint16/32
        config = self.model.config
        if not 1 <= chunk.shape[1] <= config.n_codebooks:
            raise ValueError(f"codes must have 1 to {config.n_codebooks} codebooks, got {chunk.shape[1]}.")
        if chunk.numel() and (chunk.min() < 0 or chunk.max() >= config.codebook_size):
            low, high = int(chunk.min()), int(chunk.max())
            raise ValueError(f"codes must lie in [0, {config.codebook_size}), got values in [{low}, {high}].")
        return chunk

    def _run(self, windows, read) -> list[torch.Tensor]:
        return [audio for _, audio in decode_windows(self.model, windows, read, self._batch_size)]

    def _empty(self) -> torch.Tensor:
        return torch.empty(self._channels, 0)
