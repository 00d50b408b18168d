"""Padded batches: which code frames of a right-padded batch are exact, and cropping outputs per item.

A clip encoded inside a right-padded batch starts exactly as it does alone, so its codes can only differ near
its end, where the encoder's convolutions see the batch's padding instead of their own zero padding. The
receptive field of the encoder, computed from the config, says how far that reaches: docs/batching.md.
"""

import numpy as np
import torch

# Re-exported: the receptive field is what decides which frames of a padded batch are exact.
from .windowing import DacEncoderReceptiveField, encoder_receptive_field

__all__ = ["DacEncoderReceptiveField", "encoder_receptive_field", "is_right_padded", "unpad"]


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
