"""Padded batches: which code frames of a right-padded batch are exact, and cropping outputs per item.

A clip encoded inside a right-padded batch starts exactly as it does alone, so its codes can only differ near
its end, where the encoder's convolutions see the batch's padding instead of their own zero padding. The
receptive field of the encoder, computed from the config, says how far that reaches: docs/batching.md.
"""

from dataclasses import dataclass

import numpy as np
import torch

from . import windowing
from .configuration_dac import DacConfig

__all__ = ["DacEncoderReceptiveField", "encoder_receptive_field", "is_right_padded", "unpad"]


@dataclass(frozen=True)
class DacEncoderReceptiveField(windowing.DacReceptiveField):
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


def encoder_receptive_field(config: DacConfig) -> DacEncoderReceptiveField:
    """
    The receptive field of one code frame, traced through the encoder's convolutions as the model builds them
    from `config` (`modeling_dac.windowing.encoder_receptive_field`), with the hop length. For the released
    44.1 kHz models it is 3,733 samples on each side of the 512-sample hop window; for the 16 and 24 kHz
    models, 2,501 left and 2,493 right of the 320-sample window.
    """
    field = windowing.encoder_receptive_field(config)
    return DacEncoderReceptiveField(left=field.left, right=field.right, hop_length=config.hop_length)


def unpad(values, mask) -> list:
    r"""
    Split a right-padded batch into its items, each cropped on the last axis to its length in `mask`.

    Works for audio and codes alike: `unpad(audio_values, padding_mask)` with `audio_values`
    `(batch, 1, samples)` and `padding_mask` `(batch, samples)` gives `(1, length_i)` items;
    `unpad(audio_codes, audio_codes_mask)` with codes `(batch, n_quantizers, frames)` and the frame mask
    `(batch, frames)` gives `(n_quantizers, frames_i)` items. Torch tensors or numpy arrays; items are views
    of the same kind. A folded multichannel clip is several consecutive items (see docs/feature_extractor.md).

    Args:
        values (`torch.Tensor` or `np.ndarray` of shape `(batch, ..., length)`): the padded batch.
        mask (`torch.Tensor` or `np.ndarray` of shape `(batch, length)`): 1 for real positions, then 0 for
            padding, in each row.
    """
    # As float64 (exact for 0/1): numpy has no bfloat16, and a flipped numpy view has negative strides.
    mask = mask.detach().cpu().double().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask, np.float64)
    mask = np.ascontiguousarray(mask)
    if values.ndim < 2:
        raise ValueError(f"`values` must have shape (batch, ..., length), got {tuple(values.shape)}.")
    if mask.shape != (values.shape[0], values.shape[-1]):
        raise ValueError(
            f"`mask` must have shape (batch, length) = ({values.shape[0]}, {values.shape[-1]}) for values of shape "
            f"{tuple(values.shape)}, got {tuple(mask.shape)}."
        )
    if not is_right_padded(torch.from_numpy(mask)):
        raise ValueError("`mask` must be right-padded: in each row, ones (real positions) followed by zeros.")
    return [item[..., :length] for item, length in zip(values, mask.sum(-1).astype(np.int64).tolist())]


def is_right_padded(mask: torch.Tensor) -> bool:
    """Whether each row of the `(batch, length)` mask is ones (real positions) followed by zeros."""
    if ((mask != 0) & (mask != 1)).any():
        return False
    mask = mask.to(torch.int8)
    return not (mask[:, 1:] > mask[:, :-1]).any()
