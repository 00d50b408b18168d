"""DacModel: the Descript Audio Codec generator (encoder, residual vector quantizer, decoder).

The computation follows the official `descript-audio-codec` 1.0.0 operation for operation, so that codes are
identical and audio agrees to float rounding; module names and the state-dict layout are those of the
Transformers port, so safetensors checkpoints load both ways. Where the official code misbehaves (decoders
with odd strides returning 8 samples short, `n_quantizers` ignored in training, unvalidated input) the
behaviour is fixed and the fix documented on the method concerned.
"""

import contextlib
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .batching import is_right_padded
from .configuration_dac import DacConfig
from .weight_norm import fold_weight_norm, read_weight_norm_checkpoint
from .windowing import convolution_layers

__all__ = [
    "DacDecoderOutput",
    "DacEncoderOutput",
    "DacModel",
    "DacOutput",
    "DacPreTrainedModel",
]


@dataclass
class DacEncoderOutput(ModelOutput):
    r"""
    Output of [`DacModel.encode`].

    Args:
        loss (`torch.FloatTensor` of shape `()`):
            `commitment_loss_weight * commitment_loss + codebook_loss_weight * codebook_loss`.
        quantized_representation (`torch.FloatTensor` of shape `(batch_size, hidden_size, frames)`):
            Sum of the codebooks' contributions: what the decoder takes.
        audio_codes (`torch.LongTensor` of shape `(batch_size, n_quantizers, frames)`):
            Codebook indices, codebook 0 the coarsest.
        projected_latents (`torch.FloatTensor` of shape `(batch_size, n_quantizers * codebook_dim, frames)`):
            The encoder latent projected into each codebook's space, before quantization.
        commitment_loss (`torch.FloatTensor` of shape `()`):
            MSE between the projected latents and their (detached) codebook entries, summed over codebooks.
        codebook_loss (`torch.FloatTensor` of shape `()`):
            MSE between the codebook entries and the (detached) projected latents, summed over codebooks.
        audio_codes_mask (`torch.LongTensor` of shape `(batch_size, frames)`, *optional*):
            1 for frames that hold audio, 0 for frames made only of padding; returned when a `padding_mask`
            was given.
    """

    loss: torch.FloatTensor | None = None
    quantized_representation: torch.FloatTensor | None = None
    audio_codes: torch.LongTensor | None = None
    projected_latents: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    audio_codes_mask: torch.LongTensor | None = None


@dataclass
class DacDecoderOutput(ModelOutput):
    r"""
    Output of [`DacModel.decode`].

    Args:
        audio_values (`torch.FloatTensor` of shape `(batch_size, 1, frames * hop_length)`):
            The decoded waveform in [-1, 1].
    """

    audio_values: torch.FloatTensor | None = None


@dataclass
class DacOutput(ModelOutput):
    r"""
    Output of [`DacModel.forward`]: an encode followed by a decode.

    Args:
        loss (`torch.FloatTensor` of shape `()`):
            Weighted commitment and codebook losses, as in [`DacEncoderOutput`].
        audio_values (`torch.FloatTensor` of shape `(batch_size, 1, sequence_length)`):
            The reconstruction, cropped to the input length.
        quantized_representation (`torch.FloatTensor` of shape `(batch_size, hidden_size, frames)`):
            Decoder input.
        audio_codes (`torch.LongTensor` of shape `(batch_size, n_quantizers, frames)`):
            Codebook indices.
        projected_latents (`torch.FloatTensor` of shape `(batch_size, n_quantizers * codebook_dim, frames)`):
            Per-codebook latents before quantization.
        commitment_loss (`torch.FloatTensor` of shape `()`):
            Unweighted commitment loss.
        codebook_loss (`torch.FloatTensor` of shape `()`):
            Unweighted codebook loss.
        audio_codes_mask (`torch.LongTensor` of shape `(batch_size, frames)`, *optional*):
            Frame mask derived from `padding_mask`, when one was given.
    """

    loss: torch.FloatTensor | None = None
    audio_values: torch.FloatTensor | None = None
    quantized_representation: torch.FloatTensor | None = None
    audio_codes: torch.LongTensor | None = None
    projected_latents: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    audio_codes_mask: torch.LongTensor | None = None


class DacSnake1d(nn.Module):
    """Snake activation `x + sin(alpha * x) ** 2 / (alpha + 1e-9)` with a learned `alpha` per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, hidden_states: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """`hidden_states` is `(batch, channels, frames)`, or `(batch, frames, channels)` with `channels_last`."""
        alpha = self.alpha.view(1, 1, -1) if channels_last else self.alpha
        if torch.is_grad_enabled() and (hidden_states.requires_grad or alpha.requires_grad):
            return hidden_states + (alpha + 1e-9).reciprocal() * torch.sin(alpha * hidden_states).pow(2)
        # Without autograd: the same operations in the same order (so bit-identical results), done in place in
        # one new buffer instead of five. On CPU every large new tensor costs page faults, so this is ~3x faster.
        snake = hidden_states * alpha
        snake.sin_().square_()
        return snake.mul_((alpha + 1e-9).reciprocal()).add_(hidden_states)


class DacPointwiseConv1d(nn.Conv1d):
    """A 1x1 convolution whose output can be added onto a residual in the same operation."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=1)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if residual is None:
            return super().forward(hidden_states)
        # With autograd, or under autocast (a bf16 product added to the fp32 skip path), the official order.
        if (
            torch.is_grad_enabled()
            or (residual.device.type != "meta" and torch.is_autocast_enabled(residual.device.type))
            or hidden_states.dtype != residual.dtype
        ):
            return residual + super().forward(hidden_states)
        # Inference: one batched matrix product accumulated onto the residual. On CPU, oneDNN runs most 1x1
        # convolutions of DAC up to 1.9x slower than the same product (docs/benchmarks.md).
        weight = self.weight[:, :, 0].expand(hidden_states.shape[0], -1, -1)
        return torch.baddbmm(residual, weight, hidden_states).add_(self.bias[:, None])


class DacResidualUnit(nn.Module):
    """Snake, dilated 7-tap convolution, Snake, 1x1 convolution, plus the input."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.snake1 = DacSnake1d(channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=7, dilation=dilation, padding=3 * dilation)
        self.snake2 = DacSnake1d(channels)
        self.conv2 = DacPointwiseConv1d(channels, channels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        activated = self.snake2(self.conv1(self.snake1(hidden_states)))
        crop = (hidden_states.shape[-1] - activated.shape[-1]) // 2
        if crop > 0:
            hidden_states = hidden_states[..., crop:-crop]
        return self.conv2(activated, hidden_states)

    @property
    def keeps_length(self) -> bool:
        """Whether the dilated convolution's padding makes the output as long as the input (it does unless changed:
        decoding official files made without padding sets it to 0, and the unit then crops its input)."""
        return 2 * self.conv1.padding[0] == self.conv1.dilation[0] * (self.conv1.kernel_size[0] - 1)

    def channels_last_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The two convolutions' weights for `forward_window`, as channels-last images (see `_channels_last_image`)."""
        return _channels_last_image(self.conv1.weight), _channels_last_image(self.conv2.weight)

    def forward_window(
        self, hidden_states: torch.Tensor, at_start: bool, at_end: bool, weights: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """
        The unit on a window `(batch, frames, channels)` of a longer sequence, for a unit that `keeps_length`, with
        `weights` from `channels_last_weights()`. The dilated convolution pads zeros only at the sequence's real
        ends (`at_start`, `at_end`); on any other side the output is `conv1.padding` frames shorter than the
        window, and equal there (up to float rounding) to the unit's output over the whole sequence.
        """
        padding = self.conv1.padding[0]
        activated = self.snake1(hidden_states, channels_last=True)
        if at_start or at_end:
            activated = F.pad(activated, (0, 0, padding if at_start else 0, padding if at_end else 0))
        activated = _channels_last_conv(activated, weights[0], self.conv1.bias, dilation=self.conv1.dilation[0])
        activated = _channels_last_conv(self.snake2(activated, channels_last=True), weights[1], self.conv2.bias)
        kept_start, kept_stop = (0 if at_start else padding), hidden_states.shape[1] - (0 if at_end else padding)
        residual = hidden_states[:, kept_start:kept_stop]
        # Under autocast the bf16 product is added onto the fp32 skip path, in fp32, as the untiled path does.
        return activated.add_(residual) if activated.dtype == residual.dtype else residual + activated


class DacTransposedConv1d(nn.ConvTranspose1d):
    """The decoder's upsampling convolution: kernel twice the stride. It can also compute a window of its output."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__(
            in_channels, out_channels, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
        )

    def output_length(self, input_length: int) -> int:
        return (input_length + 1) * self.stride[0] - 2 * self.padding[0]

    def forward_window(
        self,
        hidden_states: torch.Tensor,
        start: int,
        stop: int,
        weight: torch.Tensor,
        activation: DacSnake1d | None = None,
    ) -> torch.Tensor:
        """
        Output frames `start:stop` of `forward(activation(hidden_states))`, channels last `(batch, stop - start,
        channels)`, computed from the input frames they need only, with `weight` from
        `_channels_last_image(self.weight)` (equal up to float rounding).
        """
        stride, padding, input_length = self.stride[0], self.padding[0], hidden_states.shape[-1]
        first_frame, last_frame = (start + padding) // stride, (stop - 1 + padding) // stride
        # Output frame `q * stride + phase - padding` reads input frames q - 1 and q.
        read_start, read_stop = first_frame - 1, last_frame + 1
        window = hidden_states[..., max(0, read_start) : min(input_length, read_stop)].transpose(1, 2)
        if activation is not None:
            window = activation(window, channels_last=True)
        if read_start < 0 or read_stop > input_length:  # no input there: zeros
            window = F.pad(window, (0, 0, max(0, -read_start), max(0, read_stop - input_length)))
        # Cropping `stride` frames at each end drops the ones that would also need frames outside the window.
        upsampled = _channels_last_conv(
            window.contiguous(), weight, self.bias, stride=stride, padding=stride, transposed=True
        )
        offset = first_frame * stride - padding  # the output frame `upsampled` begins with
        return upsampled[:, start - offset : stop - offset]


# On CPU, inference runs the residual units of long sequences tile by tile along time, so that the activations
# between their layers stay in cache instead of going through memory, and channels last, where oneDNN's
# convolutions run faster than on (batch, channels, frames) (docs/benchmarks.md, "Time tiles").
TIME_TILE_FRAMES = 8192


def _channels_last_image(weight: torch.Tensor) -> torch.Tensor:
    """A convolution weight `(out, in, kernel)` as a channels-last 2D weight `(out, in, 1, kernel)`."""
    return weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def _channels_last_conv(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    dilation: int = 1,
    stride: int = 1,
    padding: int = 0,
    transposed: bool = False,
) -> torch.Tensor:
    """
    A 1D convolution (or, `transposed`, a transposed convolution) on a contiguous channels-last sequence
    `(batch, frames, channels)`, with a weight from `_channels_last_image`: the sequence is viewed, without a copy,
    as a channels-last image of height 1.
    """
    image = hidden_states.transpose(1, 2).unsqueeze(2)
    if transposed:
        output = F.conv_transpose2d(image, weight, bias, stride=(1, stride), padding=(0, padding))
    else:
        output = F.conv2d(image, weight, bias, stride=(1, stride), padding=(0, padding), dilation=(1, dilation))
    return output.squeeze(2).transpose(1, 2).contiguous()


def _runs_in_time_tiles(
    hidden_states: torch.Tensor, units: tuple[DacResidualUnit, ...], length: int | None = None
) -> bool:
    """
    Whether a block tiles: CPU inference outside `torch.compile`, on over one tile (`length`, else the input's),
    with units that keep the length.
    """
    return (
        all(unit.keeps_length for unit in units)
        and hidden_states.device.type == "cpu"
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and (hidden_states.shape[-1] if length is None else length) > TIME_TILE_FRAMES
    )


def _residual_units_in_time_tiles(
    units: tuple[DacResidualUnit, ...],
    read_window: Callable[[int, int], torch.Tensor],
    length: int,
    activation: DacSnake1d | None = None,
    padding: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """
    `units` one after the other, then `activation`, on a sequence of `length` frames whose frames `start:stop`
    `read_window(start, stop)` returns channels last, `(batch, stop - start, channels)`, into a channels-last
    result `(batch, padding[0] + length + padding[1], channels)` with `padding` frames of zeros at its ends. It
    runs in as few tiles of one length as keep each within `TIME_TILE_FRAMES` output frames; the last tile ends
    at the sequence's end and overlaps the one before by less than the number of tiles. Each tile reads its input
    with a margin of the units' summed padding on each side (less where the sequence ends), so the result equals
    the untiled one up to float rounding.
    """
    margin = sum(unit.conv1.padding[0] for unit in units)
    weights = [unit.channels_last_weights() for unit in units]
    output = None
    tile_frames = math.ceil(length / math.ceil(length / TIME_TILE_FRAMES))
    for start in [*range(0, length - tile_frames, tile_frames), length - tile_frames]:
        stop = start + tile_frames
        window_start, window_stop = max(0, start - margin), min(length, stop + margin)
        at_start, at_end = window_start == 0, window_stop == length
        window = read_window(window_start, window_stop)
        for unit, unit_weights in zip(units, weights):
            window = unit.forward_window(window, at_start, at_end, unit_weights)
        # The units shrank the window by `margin` on each side that is not a sequence end.
        first = window_start if at_start else window_start + margin
        window = window[:, start - first : stop - first]
        if activation is not None:
            window = activation(window, channels_last=True)
        if output is None:
            output = window.new_empty(window.shape[0], padding[0] + length + padding[1], window.shape[2])
            output[:, : padding[0]] = 0
            output[:, padding[0] + length :] = 0
        output[:, padding[0] + start : padding[0] + stop] = window
    return output


class DacEncoderBlock(nn.Module):
    """Three residual units at `channels // 2`, then a strided convolution up to `channels`."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.res_unit1 = DacResidualUnit(channels // 2, dilation=1)
        self.res_unit2 = DacResidualUnit(channels // 2, dilation=3)
        self.res_unit3 = DacResidualUnit(channels // 2, dilation=9)
        self.snake1 = DacSnake1d(channels // 2)
        self.conv1 = nn.Conv1d(
            channels // 2, channels, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        units = (self.res_unit1, self.res_unit2, self.res_unit3)
        if _runs_in_time_tiles(hidden_states, units):
            # A weight-norm model computes each weight once, not once per tile.
            with parametrize.cached():
                return self._forward_in_time_tiles(hidden_states, units)
        hidden_states = self.res_unit3(self.res_unit2(self.res_unit1(hidden_states)))
        return self.conv1(self.snake1(hidden_states))

    def _forward_in_time_tiles(self, hidden_states: torch.Tensor, units: tuple[DacResidualUnit, ...]) -> torch.Tensor:
        """
        `forward` with the residual units in time tiles, channels last: the tiles write into a sequence that
        already holds the strided convolution's zero padding, rounded up to whole strides, so that the strided
        convolution reads it in place. The result is `(batch, channels, frames)` stored channels last.
        """
        length, stride, padding = hidden_states.shape[-1], self.conv1.stride[0], self.conv1.padding[0]
        padded = _residual_units_in_time_tiles(
            units,
            lambda start, stop: hidden_states[..., start:stop].transpose(1, 2).contiguous(),  # a view if stored so
            length,
            self.snake1,
            padding=(padding, padding + -(length + 2 * padding) % stride),
        )
        weight = _channels_last_image(self.conv1.weight)
        downsampled = _channels_last_conv(padded, weight, self.conv1.bias, stride=stride)
        frames = (length + 2 * padding - self.conv1.kernel_size[0]) // stride + 1
        return downsampled[:, :frames].transpose(1, 2)


class DacDecoderBlock(nn.Module):
    """A transposed convolution upsampling by `stride` from `in_channels` to `out_channels`, then three residual units."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.snake1 = DacSnake1d(in_channels)
        self.conv_t1 = DacTransposedConv1d(in_channels, out_channels, stride)
        self.res_unit1 = DacResidualUnit(out_channels, dilation=1)
        self.res_unit2 = DacResidualUnit(out_channels, dilation=3)
        self.res_unit3 = DacResidualUnit(out_channels, dilation=9)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        units = (self.res_unit1, self.res_unit2, self.res_unit3)
        length = self.conv_t1.output_length(hidden_states.shape[-1])
        if _runs_in_time_tiles(hidden_states, units, length):
            # Each tile activates and upsamples only the frames it needs: neither the activation nor the full-rate
            # output of `conv_t1` goes to memory.
            with parametrize.cached():
                weight = _channels_last_image(self.conv_t1.weight)
                upsampled = _residual_units_in_time_tiles(
                    units,
                    lambda start, stop: self.conv_t1.forward_window(hidden_states, start, stop, weight, self.snake1),
                    length,
                )
                return upsampled.transpose(1, 2)  # stored channels last, where the next block's tiles read it
        return self.res_unit3(self.res_unit2(self.res_unit1(self.conv_t1(self.snake1(hidden_states)))))


class DacEncoder(nn.Module):
    """Waveform `(batch, 1, samples)` to latent `(batch, hidden_size, samples / hop_length)`."""

    def __init__(self, config: DacConfig):
        super().__init__()
        self.conv1 = nn.Conv1d(1, config.encoder_hidden_size, kernel_size=7, padding=3)
        self.block = nn.ModuleList(
            DacEncoderBlock(config.encoder_hidden_size * 2**index, stride)
            for index, stride in enumerate(config.downsampling_ratios, start=1)
        )
        width = config.encoder_hidden_size * 2 ** len(config.downsampling_ratios)
        self.snake1 = DacSnake1d(width)
        self.conv2 = nn.Conv1d(width, config.hidden_size, kernel_size=3, padding=1)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv1(input_values)
        for block in self.block:
            hidden_states = block(hidden_states)
        # Time tiles leave their output stored channels last; the latent leaves in the usual layout.
        return self.conv2(self.snake1(hidden_states)).contiguous()


class DacDecoder(nn.Module):
    """Latent `(batch, hidden_size, frames)` to waveform `(batch, 1, samples)` in [-1, 1]."""

    def __init__(self, config: DacConfig):
        super().__init__()
        width = config.decoder_hidden_size
        self.conv1 = nn.Conv1d(config.hidden_size, width, kernel_size=7, padding=3)
        self.block = nn.ModuleList(
            DacDecoderBlock(width // 2**index, width // 2 ** (index + 1), stride)
            for index, stride in enumerate(config.upsampling_ratios)
        )
        output_width = width // 2 ** len(config.upsampling_ratios)
        self.snake1 = DacSnake1d(output_width)
        self.conv2 = nn.Conv1d(output_width, 1, kernel_size=7, padding=3)
        self.tanh = nn.Tanh()

    def forward(self, quantized_representation: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv1(quantized_representation)
        for block in self.block:
            hidden_states = block(hidden_states)
        activated = self.snake1(hidden_states)
        if activated.transpose(1, 2).is_contiguous():  # stored channels last by time tiles: oneDNN's fast layout
            conv2 = self.conv2
            output = _channels_last_conv(
                activated.transpose(1, 2), _channels_last_image(conv2.weight), conv2.bias, padding=conv2.padding[0]
            )
            return self.tanh(output.transpose(1, 2))
        return self.tanh(self.conv2(activated))


class DacVectorQuantize(nn.Module):
    """One factorised codebook: project to `codebook_dim`, find the nearest L2-normalised entry, project back."""

    def __init__(self, config: DacConfig):
        super().__init__()
        self.in_proj = nn.Conv1d(config.hidden_size, config.codebook_dim, kernel_size=1)
        self.out_proj = nn.Conv1d(config.codebook_dim, config.hidden_size, kernel_size=1)
        self.codebook = nn.Embedding(config.codebook_size, config.codebook_dim)

    def forward(self, residual: torch.Tensor):
        """
        Args:
            residual (`torch.FloatTensor` of shape `(batch_size, hidden_size, frames)`): what is left to quantize.

        Returns:
            `tuple` of the quantized contribution `(batch_size, hidden_size, frames)`, the per-item commitment and
            codebook losses `(batch_size,)`, the codes `(batch_size, frames)` and the projected latent
            `(batch_size, codebook_dim, frames)`.
        """
        projected_latents = self.in_proj(residual)
        codes = self.nearest_codes(projected_latents)
        codebook_vectors = self.lookup(codes)
        commitment_loss = F.mse_loss(projected_latents, codebook_vectors.detach(), reduction="none").mean([1, 2])
        codebook_loss = F.mse_loss(codebook_vectors, projected_latents.detach(), reduction="none").mean([1, 2])
        # Straight-through estimator, written as in the official code so eval outputs match it bit for bit.
        codebook_vectors = projected_latents + (codebook_vectors - projected_latents).detach()
        return self.out_proj(codebook_vectors), commitment_loss, codebook_loss, codes, projected_latents

    def nearest_codes(self, projected_latents: torch.Tensor) -> torch.LongTensor:
        """Index of the closest codebook row by cosine similarity, `(batch, codebook_dim, frames) -> (batch, frames)`."""
        batch_size, codebook_dim, frames = projected_latents.shape
        latents = F.normalize(projected_latents.transpose(1, 2).reshape(batch_size * frames, codebook_dim))
        codebook = F.normalize(self.codebook.weight)
        distances = (
            latents.pow(2).sum(1, keepdim=True)
            - 2 * latents @ codebook.t()
            + codebook.pow(2).sum(1, keepdim=True).t()
        )
        return (-distances).max(1)[1].reshape(batch_size, frames)

    def lookup(self, codes: torch.LongTensor) -> torch.Tensor:
        """Raw (un-normalised) codebook rows, `(batch, frames) -> (batch, codebook_dim, frames)`."""
        return F.embedding(codes.long(), self.codebook.weight).transpose(1, 2)


class DacResidualVectorQuantizer(nn.Module):
    """`n_codebooks` vector quantizers applied in turn to what the previous ones left, with quantizer dropout."""

    def __init__(self, config: DacConfig):
        super().__init__()
        self.n_codebooks = config.n_codebooks
        self.quantizer_dropout = config.quantizer_dropout
        self.quantizers = nn.ModuleList(DacVectorQuantize(config) for _ in range(config.n_codebooks))

    def forward(self, latents: torch.Tensor, n_quantizers: int | None = None):
        """
        Args:
            latents (`torch.FloatTensor` of shape `(batch_size, hidden_size, frames)`): encoder output.
            n_quantizers (`int`, *optional*): codebooks to use, all when `None` (see [`DacModel.encode`]).

        Returns:
            `tuple` of the quantized representation, codes `(batch_size, K, frames)`, projected latents
            `(batch_size, K * codebook_dim, frames)`, commitment loss and codebook loss (scalars). K is
            `n_quantizers` in eval and `n_codebooks` in training.
        """
        n_quantizers = self.n_codebooks if n_quantizers is None else n_quantizers
        batch_size = latents.shape[0]
        if self.training:
            # Released recipe: the first int(batch * p) items get 1..n codebooks at random, the rest all of them.
            items_quantizers = torch.full((batch_size,), n_quantizers)
            dropped = int(batch_size * self.quantizer_dropout)
            items_quantizers[:dropped] = torch.randint(1, n_quantizers + 1, (batch_size,))[:dropped]
            items_quantizers = items_quantizers.to(latents.device)
            n_used = self.n_codebooks
        else:
            n_used = n_quantizers

        quantized_representation = 0
        commitment_loss = 0
        codebook_loss = 0
        residual = latents
        audio_codes, projected_latents = [], []
        for index, quantizer in enumerate(self.quantizers[:n_used]):
            contribution, commitment_i, codebook_i, codes_i, projected_i = quantizer(residual)
            residual = residual - contribution
            if self.training:
                mask = index < items_quantizers
                contribution = contribution * mask[:, None, None]
                commitment_i = commitment_i * mask
                codebook_i = codebook_i * mask
            quantized_representation = quantized_representation + contribution
            commitment_loss = commitment_loss + commitment_i.mean()
            codebook_loss = codebook_loss + codebook_i.mean()
            audio_codes.append(codes_i)
            projected_latents.append(projected_i)

        return (
            quantized_representation,
            torch.stack(audio_codes, dim=1),
            torch.cat(projected_latents, dim=1),
            commitment_loss,
            codebook_loss,
        )

    def from_codes(self, audio_codes: torch.LongTensor) -> torch.Tensor:
        """Quantized representation `(batch, hidden_size, frames)` from codes `(batch, K, frames)`, K <= n_codebooks."""
        quantized_representation = 0.0
        for index in range(audio_codes.shape[1]):
            quantizer = self.quantizers[index]
            quantized_representation = quantized_representation + quantizer.out_proj(
                quantizer.lookup(audio_codes[:, index])
            )
        return quantized_representation


class DacPreTrainedModel(PreTrainedModel):
    """Weight initialisation, weight-norm handling and checkpoint saving shared by DAC models."""

    config_class = DacConfig
    config: DacConfig
    base_model_prefix = "dac"
    main_input_name = "input_values"
    _no_split_modules = ["DacResidualUnit"]
    # `from_pretrained(..., dtype=torch.bfloat16)` keeps the quantizer in fp32: its nearest-code search and residual
    # subtractions change far fewer codes in fp32 (measured in docs/benchmarks.md) and cost nothing.
    _keep_in_fp32_modules_strict = ["quantizer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        # The official code's trunc-normal init never reaches weight-normed convolutions (it writes to a derived
        # tensor), so what trained the released models is PyTorch's default init with zero Conv1d biases.
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)) and not parametrize.is_parametrized(module):
            module.reset_parameters()
            if isinstance(module, nn.Conv1d):
                init.zeros_(module.bias)
        elif isinstance(module, DacSnake1d):
            init.ones_(module.alpha)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=1.0)

    @property
    def has_weight_norm(self) -> bool:
        """Whether the convolutions currently train as magnitude `g` and direction `v`."""
        return any(parametrize.is_parametrized(conv, "weight") for conv in convolution_layers(self))

    def apply_weight_norm(self):
        """
        Re-parametrise every convolution as `g * v / ||v||` (torch parametrizations), as the official model trains.

        The current plain weights give `v = weight` and `g = ||weight||` (norm over all dims but 0), so the
        function the model computes is unchanged. Call this before training; it is a no-op if already applied.
        """
        for conv in convolution_layers(self):
            if not parametrize.is_parametrized(conv, "weight"):
                weight_norm(conv, name="weight", dim=0)

    def remove_weight_norm(self):
        """Fold `g` and `v` back into plain weights (what inference and checkpoints use); a no-op if not applied."""
        for conv in convolution_layers(self):
            if parametrize.is_parametrized(conv, "weight"):
                parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)

    def folded_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict with plain `weight`s in place of weight norm's `g` and `v`, whichever form is active."""
        state_dict = {}
        for name, tensor in self.state_dict().items():
            if ".parametrizations.weight.original" not in name:
                state_dict[name] = tensor
            elif name.endswith("original0"):
                module_name = name.split(".parametrizations.")[0]
                state_dict[f"{module_name}.weight"] = self.get_submodule(module_name).weight.detach()
        return state_dict

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """
        As [`~transformers.PreTrainedModel.from_pretrained`], also accepting checkpoints saved with weight norm
        active (`weight_g`/`weight_v`, or parametrizations' `original0`/`original1`, as `transformers.DacModel`
        writes after `apply_weight_norm()`), in safetensors or `pytorch_model.bin` files (read with
        `weights_only=True`), single or sharded, or given as `state_dict=`: their weights are folded on load, and
        every other argument (`dtype`, `device_map`, config overrides, ...) works as for plain checkpoints.
        """
        if kwargs.get("state_dict") is not None:  # given in memory: folded if it holds weight norm
            kwargs["state_dict"] = fold_weight_norm(kwargs["state_dict"])
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        state_dict = read_weight_norm_checkpoint(pretrained_model_name_or_path, kwargs)
        if state_dict is None:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        kwargs["config"] = kwargs.get("config") or pretrained_model_name_or_path
        loaded = super().from_pretrained(None, *model_args, state_dict=fold_weight_norm(state_dict), **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # a tuple with `output_loading_info=True`
        model.name_or_path = model.config.name_or_path = str(pretrained_model_name_or_path)
        return loaded

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As [`~transformers.PreTrainedModel.save_pretrained`], always writing folded (plain) weights."""
        if self.has_weight_norm and kwargs.get("state_dict") is None:
            kwargs["state_dict"] = self.folded_state_dict()
        return super().save_pretrained(save_directory, *args, **kwargs)


def _without_autocast(device_type: str):
    """
    Autocast turned off, for the quantizer: like `_keep_in_fp32_modules_strict` at inference, bf16 mixed-precision
    training then keeps its projections and nearest-code search in the parameters' precision.
    """
    if device_type == "meta" or not torch.is_autocast_enabled(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def parameter_dtype(module: nn.Module) -> torch.dtype:
    """Dtype of a module's parameters: inputs are cast to it, so a bf16 model takes fp32 audio and vice versa."""
    return next(module.parameters()).dtype


class DacModel(DacPreTrainedModel):
    """
    The DAC codec: `encode` turns audio `(batch, 1, samples)` into codes `(batch, n_quantizers, frames)`,
    `decode` turns codes (or a quantized representation) back into audio of `frames * hop_length` samples.

    Example:

    ```python
    >>> import torch
    >>> from modeling_dac import DacConfig, DacModel
    >>> model = DacModel(DacConfig(encoder_hidden_size=8, decoder_hidden_size=64, n_codebooks=4)).eval()
    >>> audio = torch.randn(2, 1, 4096) * 0.1
    >>> codes = model.encode(audio, n_quantizers=3).audio_codes
    >>> codes.shape
    torch.Size([2, 3, 8])
    >>> model.decode(audio_codes=codes).audio_values.shape
    torch.Size([2, 1, 4096])
    ```
    """

    def __init__(self, config: DacConfig):
        super().__init__(config)
        self.encoder = DacEncoder(config)
        self.quantizer = DacResidualVectorQuantizer(config)
        self.decoder = DacDecoder(config)
        self.post_init()

    def get_encoded_length(self, lengths: torch.Tensor | int) -> torch.Tensor | int:
        """Code frames produced for audio of `lengths` samples: `ceil(lengths / hop_length)`."""
        hop_length = self.config.hop_length
        if isinstance(lengths, torch.Tensor):
            return torch.div(lengths + hop_length - 1, hop_length, rounding_mode="floor")
        return -(-int(lengths) // hop_length)

    def get_audio_codes_mask(self, padding_mask: torch.Tensor) -> torch.Tensor:
        """
        Frame mask `(batch, ceil(samples / hop_length))`, int64, from a right-padded sample mask `(batch, samples)`
        of any dtype: a frame is 1 when any of its `hop_length` samples is real audio.
        """
        if padding_mask.ndim != 2:
            raise ValueError(f"`padding_mask` must have shape (batch, samples), got {tuple(padding_mask.shape)}.")
        lengths = self.get_encoded_length(padding_mask.long().sum(-1))
        frames = self.get_encoded_length(padding_mask.shape[-1])
        frame_index = torch.arange(frames, device=padding_mask.device)
        return (frame_index[None, :] < lengths[:, None]).long()

    def _check_input_values(self, input_values: torch.Tensor, padding_mask: torch.Tensor | None):
        if not isinstance(input_values, torch.Tensor):
            raise ValueError(f"`input_values` must be a torch.Tensor, got {type(input_values).__name__}.")
        if input_values.ndim != 3 or input_values.shape[1] != 1:
            raise ValueError(
                f"`input_values` must have shape (batch, 1, samples), got {tuple(input_values.shape)}; "
                "fold stereo channels into the batch, or use DacFeatureExtractor."
            )
        if not input_values.is_floating_point():
            raise ValueError(f"`input_values` must be a float tensor in [-1, 1], got dtype {input_values.dtype}.")
        if input_values.shape[-1] == 0:
            raise ValueError("`input_values` is empty (0 samples).")
        if not torch.isfinite(input_values).all():
            raise ValueError("`input_values` contains NaN or Inf.")
        if padding_mask is not None and not isinstance(padding_mask, torch.Tensor):
            hint = (
                "; pass the number of codebooks by name, `n_quantizers=...` (the Transformers port takes it second)"
                if isinstance(padding_mask, int)
                else ""
            )
            raise ValueError(
                f"`padding_mask` must be a torch.Tensor of shape (batch, samples), got {type(padding_mask).__name__}"
                f"{hint}."
            )
        if padding_mask is not None and padding_mask.shape != (input_values.shape[0], input_values.shape[-1]):
            raise ValueError(
                f"`padding_mask` must have shape (batch, samples) = {(input_values.shape[0], input_values.shape[-1])}, "
                f"got {tuple(padding_mask.shape)}."
            )
        if padding_mask is not None and not is_right_padded(padding_mask):
            raise ValueError(
                "`padding_mask` must be right-padded: in each row, ones (real samples) followed by zeros (padding); "
                "pad at the end of each clip, as DacFeatureExtractor does."
            )

    def _check_n_quantizers(self, n_quantizers) -> int | None:
        """`n_quantizers` as a Python int (numpy integers and 0-d integer tensors are accepted), or None."""
        if n_quantizers is None:
            return None
        is_bool_or_array = isinstance(n_quantizers, bool) or (
            isinstance(n_quantizers, torch.Tensor) and (n_quantizers.ndim or n_quantizers.dtype == torch.bool)
        )
        try:
            value = None if is_bool_or_array else operator.index(n_quantizers)
        except TypeError:
            value = None
        if value is None:
            raise ValueError(f"`n_quantizers` must be an int or None, got {n_quantizers!r}.")
        if not 1 <= value <= self.config.n_codebooks:
            raise ValueError(
                f"`n_quantizers` must be between 1 and n_codebooks={self.config.n_codebooks}, got {value}."
            )
        return value

    def encode(
        self,
        input_values: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        n_quantizers: int | None = None,
        return_dict: bool | None = None,
    ) -> DacEncoderOutput | tuple:
        r"""
        Encode audio into codes.

        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, 1, sequence_length)`):
                Mono audio at `config.sampling_rate`, in [-1, 1]. It is right-padded with zeros to a multiple of
                `hop_length`, as the official `preprocess` does, giving `ceil(sequence_length / hop_length)` frames.
            padding_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 for real samples, 0 for padding (as returned by `DacFeatureExtractor`). Padded samples are set to
                zero and the output carries `audio_codes_mask`.
            n_quantizers (`int`, *optional*):
                Number of codebooks to use, from 1 to `n_codebooks` (all when `None`). In eval mode the output has
                exactly this many codebooks. In train mode all `n_codebooks` codes are computed and returned, and
                `n_quantizers` caps how many codebooks each item uses: items chosen by quantizer dropout draw their
                count from 1..n_quantizers, the others use n_quantizers. (The official code silently ignores the
                argument in training; with `None` the behaviour here is the official one.)
            return_dict (`bool`, *optional*): return a [`DacEncoderOutput`] (default) or a tuple.
        """
        self._check_input_values(input_values, padding_mask)
        n_quantizers = self._check_n_quantizers(n_quantizers)
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        if padding_mask is not None:
            input_values = input_values * padding_mask[:, None, :].to(input_values.dtype)
        length = input_values.shape[-1]
        input_values = F.pad(input_values, (0, self.get_encoded_length(length) * self.config.hop_length - length))

        latents = self.encoder(input_values.to(parameter_dtype(self.encoder)))
        with _without_autocast(latents.device.type):
            quantized_representation, audio_codes, projected_latents, commitment_loss, codebook_loss = self.quantizer(
                latents.to(parameter_dtype(self.quantizer)), n_quantizers
            )
        loss = (
            self.config.commitment_loss_weight * commitment_loss + self.config.codebook_loss_weight * codebook_loss
        )
        output = DacEncoderOutput(
            loss=loss,
            quantized_representation=quantized_representation,
            audio_codes=audio_codes,
            projected_latents=projected_latents,
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
            audio_codes_mask=None if padding_mask is None else self.get_audio_codes_mask(padding_mask),
        )
        return output if return_dict else output.to_tuple()

    def decode(
        self,
        quantized_representation: torch.Tensor | None = None,
        audio_codes: torch.LongTensor | None = None,
        return_dict: bool | None = None,
    ) -> DacDecoderOutput | tuple:
        r"""
        Decode codes, or a quantized representation, into audio of exactly `frames * hop_length` samples.

        Args:
            quantized_representation (`torch.FloatTensor` of shape `(batch_size, hidden_size, frames)`, *optional*):
                Decoder input, e.g. from [`DacModel.encode`].
            audio_codes (`torch.LongTensor` of shape `(batch_size, K, frames)`, *optional*):
                Codes of the first K codebooks, 1 <= K <= n_codebooks, of any integer dtype (the int16 codes that
                `tokenize_dataset` stores decode as they are); an alternative to `quantized_representation`.
            return_dict (`bool`, *optional*): return a [`DacDecoderOutput`] (default) or a tuple.

        The official decoder computes `hop_length * frames - 8` samples when a stride is odd (the 16 and 24 kHz
        models: a transposed convolution with stride 5 yields `5 * L - 1` samples). Here the decoder runs exactly
        the official computation, so those samples agree with it, and the 8 missing final samples are filled with
        zeros (silence, 0.3 ms at 24 kHz), so that every config returns `frames * hop_length` samples.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if audio_codes is not None and quantized_representation is not None:
            raise ValueError("Pass either `quantized_representation` or `audio_codes` to `decode`, not both.")
        if audio_codes is not None:
            self._check_audio_codes(audio_codes)
            with _without_autocast(audio_codes.device.type):
                quantized_representation = self.quantizer.from_codes(audio_codes)
        elif quantized_representation is None:
            raise ValueError("Pass either `quantized_representation` or `audio_codes` to `decode`.")
        elif quantized_representation.ndim != 3 or quantized_representation.shape[1] != self.config.hidden_size:
            raise ValueError(
                f"`quantized_representation` must have shape (batch, hidden_size={self.config.hidden_size}, frames), "
                f"got {tuple(quantized_representation.shape)}."
            )

        audio_values = self.decoder(quantized_representation.to(parameter_dtype(self.decoder)))
        expected_length = quantized_representation.shape[-1] * self.config.hop_length
        audio_values = F.pad(audio_values, (0, expected_length - audio_values.shape[-1]))
        output = DacDecoderOutput(audio_values=audio_values)
        return output if return_dict else output.to_tuple()

    def _check_audio_codes(self, audio_codes: torch.Tensor):
        if not isinstance(audio_codes, torch.Tensor) or audio_codes.is_floating_point() or audio_codes.is_complex():
            raise ValueError("`audio_codes` must be an integer torch.Tensor of shape (batch, n_codebooks, frames).")
        if audio_codes.ndim != 3 or not 1 <= audio_codes.shape[1] <= self.config.n_codebooks:
            raise ValueError(
                f"`audio_codes` must have shape (batch, K, frames) with 1 <= K <= n_codebooks="
                f"{self.config.n_codebooks}, got {tuple(audio_codes.shape)}."
            )
        if audio_codes.shape[-1] == 0:
            raise ValueError("`audio_codes` hold no frames.")
        if not audio_codes.numel():
            return
        # As int64: torch has no min/max for uint16 and uint32, and uint8 would wrap codebook_size around.
        lowest, highest = int(audio_codes.long().min()), int(audio_codes.long().max())
        if lowest < 0 or highest >= self.config.codebook_size:
            raise ValueError(
                f"`audio_codes` must lie in [0, codebook_size={self.config.codebook_size}), got values in "
                f"[{lowest}, {highest}]."
            )

    def forward(
        self,
        input_values: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        n_quantizers: int | None = None,
        return_dict: bool | None = None,
    ) -> DacOutput | tuple:
        r"""
        Encode and decode: the reconstruction is cropped to the input length, and padded samples (where
        `padding_mask` is 0) are set to zero. Arguments as in [`DacModel.encode`].
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        encoded = self.encode(input_values, padding_mask=padding_mask, n_quantizers=n_quantizers, return_dict=True)
        decoded = self.decode(encoded.quantized_representation, return_dict=True)
        audio_values = decoded.audio_values[..., : input_values.shape[-1]]
        if padding_mask is not None:
            audio_values = audio_values * padding_mask[:, None, :].to(audio_values.dtype)
        output = DacOutput(
            loss=encoded.loss,
            audio_values=audio_values,
            quantized_representation=encoded.quantized_representation,
            audio_codes=encoded.audio_codes,
            projected_latents=encoded.projected_latents,
            commitment_loss=encoded.commitment_loss,
            codebook_loss=encoded.codebook_loss,
            audio_codes_mask=encoded.audio_codes_mask,
        )
        return output if return_dict else output.to_tuple()

    def compile_for_inference(self, **compile_options) -> "DacModel":
        """
        Compile the encoder and the decoder in place with `torch.compile` (opt-in): fused Snake activations and
        fewer memory passes. Shapes are compiled as dynamic, yet a new batch size or a length far from those seen
        still compiles again (docs/fast_inference.md: keep shapes steady). Parameter names, and so
        checkpoints, are unchanged. The first call compiles (minutes on a small CPU); the speed and the (float
        rounding) differences it brings are measured in docs/benchmarks.md. Keyword arguments override the
        `torch.compile` options, e.g. `mode="max-autotune"` or `backend="aot_eager"`. Returns the model.
        """
        options = {"dynamic": True, **compile_options}
        self.encoder.compile(**options)
        self.decoder.compile(**options)
        return self

    def compress(self, audio, sampling_rate: int, **options):
        """
        Compress a recording of any length into a [`DacFile`]: audio `(channels, samples)` or `(samples,)` at
        `sampling_rate`. Options and behaviour: [`modeling_dac.compression.compress`].
        """
        from .compression import compress

        return compress(self, audio, sampling_rate, **options)

    def decompress(self, dac_file, **options):
        """
        Audio `(channels, samples)` at the original sample rate from a [`DacFile`] (or a path to one).
        Options and behaviour: [`modeling_dac.compression.decompress`].
        """
        from .compression import decompress

        return decompress(self, dac_file, **options)
