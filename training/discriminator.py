"""The DAC discriminator: multi-period plus multi-band multi-scale complex-STFT discriminators (SPEC section 6).

It exists only for training, so it always keeps its weight norm (`g * v / ||v||`), also in saved checkpoints:
`DacDiscriminator.from_pretrained(path)` gives back exactly what was trained, ready to continue.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

__all__ = [
    "DacDiscriminator",
    "DacDiscriminatorConfig",
    "DacDiscriminatorOutput",
    "DacMultiBandDiscriminator",
    "DacPeriodDiscriminator",
]


class DacDiscriminatorConfig(PretrainedConfig):
    r"""
    Configuration of a [`DacDiscriminator`]. The defaults are the released recipe (about 42.5M parameters).

    Args:
        periods (`list[int]`, defaults to `[2, 3, 5, 7, 11]`):
            One period discriminator per period.
        period_channels (`list[int]`, defaults to `[32, 128, 512, 1024, 1024]`):
            Output channels of the period discriminators' convolutions; all but the last stride 3 in time.
        fft_sizes (`list[int]`, defaults to `[2048, 1024, 512]`):
            One complex-STFT discriminator per window length (hop a quarter of it).
        band_edges (`list[float]`, defaults to `[0.0, 0.1, 0.25, 0.5, 0.75, 1.0]`):
            Frequency band boundaries as fractions of the STFT bins; each band has its own convolution stack.
        band_channels (`int`, defaults to 32):
            Channels of the STFT discriminators' convolutions.
        sampling_rate (`int`, defaults to 44100):
            Sample rate of the audio it judges, in Hz (recorded for reference; the layers do not depend on it).
    """

    model_type = "dac_discriminator"

    def __init__(
        self,
        periods: list[int] | tuple[int, ...] = (2, 3, 5, 7, 11),
        period_channels: list[int] | tuple[int, ...] = (32, 128, 512, 1024, 1024),
        fft_sizes: list[int] | tuple[int, ...] = (2048, 1024, 512),
        band_edges: list[float] | tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0),
        band_channels: int = 32,
        sampling_rate: int = 44100,
        **kwargs,
    ):
        self.periods = [int(period) for period in periods]
        self.period_channels = [int(channels) for channels in period_channels]
        self.fft_sizes = [int(size) for size in fft_sizes]
        self.band_edges = [float(edge) for edge in band_edges]
        self.band_channels = int(band_channels)
        self.sampling_rate = int(sampling_rate)
        self._validate()
        super().__init__(**kwargs)

    def _validate(self) -> None:
        if not self.periods and not self.fft_sizes:
            raise ValueError("The discriminator needs at least one entry in `periods` or `fft_sizes`.")
        if any(period < 2 for period in self.periods):
            raise ValueError(f"`periods` must be integers >= 2, got {self.periods}.")
        if self.periods and (not self.period_channels or any(c < 1 for c in self.period_channels)):
            raise ValueError(f"`period_channels` must be a non-empty list of positive integers, got {self.period_channels}.")
        if any(size < 16 or size % 4 for size in self.fft_sizes):
            raise ValueError(f"`fft_sizes` must be multiples of 4 and at least 16 (hop = size / 4), got {self.fft_sizes}.")
        edges = self.band_edges
        if len(edges) < 2 or edges[0] != 0.0 or edges[-1] != 1.0 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"`band_edges` must rise strictly from 0.0 to 1.0, got {edges}.")
        if self.band_channels < 1:
            raise ValueError(f"`band_channels` must be a positive integer, got {self.band_channels}.")


@dataclass
class DacDiscriminatorOutput(ModelOutput):
    r"""
    Output of [`DacDiscriminator`], one entry per sub-discriminator (periods first, then STFT window lengths).

    Args:
        logits (`list[torch.FloatTensor]`):
            The last layer's map of each sub-discriminator: `(batch, 1, frames, period)` for a period
            discriminator, `(batch, 1, stft_frames, reduced_bins)` for an STFT discriminator.
        feature_maps (`list[list[torch.FloatTensor]]`):
            Every hidden layer's output (after its LeakyReLU) of each sub-discriminator, for feature matching.
    """

    logits: list[torch.FloatTensor] | None = None
    feature_maps: list[list[torch.FloatTensor]] | None = None


def _weight_normed_conv2d(*args, **kwargs) -> nn.Conv2d:
    return weight_norm(nn.Conv2d(*args, **kwargs), name="weight", dim=0)


def _runs_in_bfloat16_on_cpu(hidden_states: torch.Tensor) -> bool:
    if hidden_states.device.type != "cpu":
        return False
    autocast_bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    return autocast_bf16 or hidden_states.dtype == torch.bfloat16


def _band_convolution(conv: nn.Conv2d, hidden_states: torch.Tensor) -> torch.Tensor:
    """
    `conv(hidden_states)`, in float32 for a convolution strided along at most 2 bins that would run in bf16 on a
    CPU: there oneDNN's bf16 convolution (torch 2.13 on an AMX Xeon) returns garbage for such inputs (errors up to
    1e37, or NaN), which the lowest band of a short window (128 samples: 6 bins) reaches after two strided layers.
    """
    if conv.stride[1] == 1 or hidden_states.shape[-1] > 2 or not _runs_in_bfloat16_on_cpu(hidden_states):
        return conv(hidden_states)
    with torch.autocast("cpu", enabled=False):
        output = F.conv2d(
            hidden_states.float(), conv.weight.float(), conv.bias.float(), conv.stride, conv.padding, conv.dilation
        )
    return output.to(hidden_states.dtype)


class DacPeriodDiscriminator(nn.Module):
    """Judges the waveform folded into `(samples / period, period)`: 2D convolutions along time only."""

    def __init__(self, period: int, channels: list[int]):
        super().__init__()
        self.period = period
        in_channels = [1] + channels[:-1]
        strides = [3] * (len(channels) - 1) + [1]
        self.convs = nn.ModuleList(
            _weight_normed_conv2d(c_in, c_out, kernel_size=(5, 1), stride=(stride, 1), padding=(2, 0))
            for c_in, c_out, stride in zip(in_channels, channels, strides)
        )
        self.conv_post = _weight_normed_conv2d(channels[-1], 1, kernel_size=(3, 1), padding=(1, 0))

    @property
    def minimum_length(self) -> int:
        """Length in samples from which it takes every length: it reflect-pads by up to a whole period."""
        return self.period + 1

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # As released: always pads, by a whole period when the length already is a multiple of it.
        padding = self.period - audio.shape[-1] % self.period
        hidden_states = F.pad(audio, (0, padding), mode="reflect")
        batch_size, channels, length = hidden_states.shape
        hidden_states = hidden_states.view(batch_size, channels, length // self.period, self.period)
        feature_maps = []
        for conv in self.convs:
            hidden_states = F.leaky_relu(conv(hidden_states), 0.1)
            feature_maps.append(hidden_states)
        return self.conv_post(hidden_states), feature_maps


class DacMultiBandDiscriminator(nn.Module):
    """Judges the complex STFT (real and imaginary parts as two channels), one convolution stack per band."""

    def __init__(self, fft_size: int, band_edges: list[float], channels: int):
        super().__init__()
        self.fft_size = fft_size
        self.hop_length = fft_size // 4
        n_bins = fft_size // 2 + 1
        self.bands = [(int(low * n_bins), int(high * n_bins)) for low, high in zip(band_edges, band_edges[1:])]

        def band_stack() -> nn.ModuleList:
            return nn.ModuleList(
                [
                    _weight_normed_conv2d(2, channels, (3, 9), (1, 1), padding=(1, 4)),
                    _weight_normed_conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4)),
                    _weight_normed_conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4)),
                    _weight_normed_conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4)),
                    _weight_normed_conv2d(channels, channels, (3, 3), (1, 1), padding=(1, 1)),
                ]
            )

        self.band_convs = nn.ModuleList(band_stack() for _ in self.bands)
        self.conv_post = _weight_normed_conv2d(channels, 1, (3, 3), (1, 1), padding=(1, 1))

    @property
    def minimum_length(self) -> int:
        """
        Length in samples from which it takes every length: `spectrogram` reflect-pads `length` samples by
        `(fft_size - hop) / 2` plus what makes a whole number of hops, which must be less than `length`.
        """
        side_padding, hop = (self.fft_size - self.hop_length) // 2, self.hop_length
        return 1 + max(length for length in range(1, side_padding + hop) if side_padding + -length % hop >= length)

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """`(batch, 1, samples)` -> `(batch, 2, ceil(samples / hop), bins)`, frames aligned like a strided conv."""
        length = audio.shape[-1]
        right_padding = -length % self.hop_length
        side_padding = (self.fft_size - self.hop_length) // 2
        padded = F.pad(audio, (side_padding, side_padding + right_padding), mode="reflect")
        stft = torch.stft(
            padded.reshape(-1, padded.shape[-1]),
            n_fft=self.fft_size,
            hop_length=self.hop_length,
            window=torch.hann_window(self.fft_size, periodic=True, dtype=padded.dtype, device=padded.device),
            center=True,
            return_complex=True,
        )
        # The two frames at each end only see padding.
        stft = stft[..., 2:-2]
        return torch.view_as_real(stft).permute(0, 3, 2, 1)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spectrogram = self.spectrogram(audio.float()).to(audio.dtype)
        feature_maps, band_outputs = [], []
        for (low, high), stack in zip(self.bands, self.band_convs):
            hidden_states = spectrogram[..., low:high]
            for conv in stack:
                hidden_states = F.leaky_relu(_band_convolution(conv, hidden_states), 0.1)
                feature_maps.append(hidden_states)
            band_outputs.append(hidden_states)
        return self.conv_post(torch.cat(band_outputs, dim=-1)), feature_maps


class DacDiscriminator(PreTrainedModel):
    """
    The released DAC discriminator: period discriminators (2, 3, 5, 7, 11) and complex-STFT discriminators
    (2048, 1024, 512) over five frequency bands. Input audio `(batch, 1, samples)` is DC-removed and peak-normalised
    to 0.8 first, so the judgement does not depend on the level.

    Example:

    ```python
    >>> import torch
    >>> from training.discriminator import DacDiscriminator, DacDiscriminatorConfig
    >>> discriminator = DacDiscriminator(DacDiscriminatorConfig(period_channels=[4, 8], fft_sizes=[128], band_channels=4))
    >>> output = discriminator(torch.randn(2, 1, 4000))
    >>> len(output.logits), output.logits[0].shape
    (6, torch.Size([2, 1, 667, 2]))
    ```
    """

    config_class = DacDiscriminatorConfig
    config: DacDiscriminatorConfig
    base_model_prefix = "discriminator"
    main_input_name = "audio"

    def __init__(self, config: DacDiscriminatorConfig):
        super().__init__(config)
        self.discriminators = nn.ModuleList(
            [DacPeriodDiscriminator(period, config.period_channels) for period in config.periods]
            + [DacMultiBandDiscriminator(size, config.band_edges, config.band_channels) for size in config.fft_sizes]
        )
        self.post_init()

    def _init_weights(self, module: nn.Module):
        # PyTorch's default convolution init, as the released discriminator: nothing to override.
        pass

    @property
    def minimum_length(self) -> int:
        """Length in samples from which it takes every length of audio (longer than the longest reflect padding)."""
        return max(discriminator.minimum_length for discriminator in self.discriminators)

    @staticmethod
    def normalize(audio: torch.Tensor) -> torch.Tensor:
        """Remove the DC offset and scale each item's peak to 0.8."""
        audio = audio - audio.mean(dim=-1, keepdim=True)
        return 0.8 * audio / (audio.abs().amax(dim=-1, keepdim=True) + 1e-9)

    def forward(self, audio: torch.Tensor) -> DacDiscriminatorOutput:
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"The discriminator takes mono audio of shape (batch, 1, samples), got {tuple(audio.shape)}.")
        audio = self.normalize(audio)
        logits, feature_maps = [], []
        for discriminator in self.discriminators:
            logit_map, hidden_maps = discriminator(audio)
            logits.append(logit_map)
            feature_maps.append(hidden_maps)
        return DacDiscriminatorOutput(logits=logits, feature_maps=feature_maps)
