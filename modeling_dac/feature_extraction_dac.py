"""DacFeatureExtractor: audio arrays in, the model's `input_values` and `padding_mask` out."""

import math

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import logging

from . import audio
from .validation import check_positive_integer

logger = logging.get_logger(__name__)

__all__ = ["DacFeatureExtractor"]


class DacFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Prepares one clip or a batch of clips for [`DacModel`]: converts to float32 in [-1, 1], checks (or
    resamples to) the model's sample rate, handles channels, and right-pads the batch with zeros to a common
    length that is a multiple of `hop_length`.

    Args:
        feature_size (`int`, defaults to 1): channels per model input (DAC is mono).
        sampling_rate (`int`, defaults to 44100): the model's sample rate in Hz.
        padding_value (`float`, defaults to 0.0): value of padded samples.
        hop_length (`int`, defaults to 512): samples per code frame; padded lengths are multiples of it.

    Call arguments:
        raw_audio: a clip or a list of clips; a clip is a numpy array, torch tensor or (nested) list,
            float (used as is) or integer PCM (int16 and int32 are scaled to [-1, 1], uint8 is centred at 128).
            1-D clips are mono; 2-D clips are multichannel with channels on `channel_axis`.
        sampling_rate: sample rate of `raw_audio`. A rate other than the model's is an error unless
            `resample=True`, which converts with soxr (high quality).
        channel_axis (`int`, defaults to 0): the channel axis of 2-D clips: 0 for `(channels, samples)` as in
            torch, -1 for `(samples, channels)` as soundfile returns.
        multichannel (`"fold"` or `"mean"`, defaults to `"fold"`): `"fold"` codes every channel separately, as
            the official DAC does, putting clip i's channels as consecutive batch rows in order; `"mean"`
            averages the channels into one mono row per clip.
        padding (`True`/`"longest"` or `"max_length"`), max_length, truncation: as in Transformers; lengths
            are then rounded up to a multiple of `hop_length`.
        return_tensors (`"pt"` or `"np"`, defaults to `"pt"`).

    Returns:
        [`BatchFeature`] with `input_values` `(batch, 1, samples)` float32 and `padding_mask` `(batch, samples)`
        int64 (1 real, 0 padding); `model(**features)` accepts it directly.

    Example:

    ```python
    >>> import numpy as np
    >>> from modeling_dac import DacFeatureExtractor
    >>> extractor = DacFeatureExtractor(sampling_rate=16000, hop_length=320)
    >>> clips = [np.zeros(1000, dtype=np.float32), (np.ones((2, 700)) * 1000).astype(np.int16)]
    >>> features = extractor(clips, sampling_rate=16000)
    >>> features["input_values"].shape, features["padding_mask"].sum(-1).tolist()
    (torch.Size([3, 1, 1280]), [1000, 700, 700])
    ```
    """

    model_input_names = ["input_values", "padding_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 44100,
        padding_value: float = 0.0,
        hop_length: int = 512,
        **kwargs,
    ):
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.hop_length = hop_length

    @classmethod
    def from_model_config(cls, config) -> "DacFeatureExtractor":
        """The extractor matching a `DacConfig` (its sample rate and hop length)."""
        return cls(sampling_rate=config.sampling_rate, hop_length=config.hop_length)

    def __call__(
        self,
        raw_audio,
        sampling_rate: int | None = None,
        channel_axis: int = 0,
        multichannel: str = "fold",
        resample: bool = False,
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
        return_tensors: str = "pt",
    ) -> BatchFeature:
        if multichannel not in ("fold", "mean"):
            raise ValueError(f"`multichannel` must be 'fold' or 'mean', got {multichannel!r}.")
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"`return_tensors` must be 'pt' or 'np', got {return_tensors!r}.")
        if channel_axis not in (0, 1, -1, -2):
            raise ValueError(f"`channel_axis` must be 0 or -1 (the axis of a 2-D clip), got {channel_axis!r}.")
        if sampling_rate is None:
            logger.warning(
                f"No `sampling_rate` given to DacFeatureExtractor; assuming the model's {self.sampling_rate} Hz. "
                "Pass it to catch silent sample-rate mistakes."
            )
            sampling_rate = self.sampling_rate
        sampling_rate = check_positive_integer(sampling_rate, "sampling_rate", "in Hz", whole_floats=True)
        if sampling_rate != self.sampling_rate and not resample:
            raise ValueError(
                f"The audio is at {sampling_rate} Hz but the model expects {self.sampling_rate} Hz. "
                "Resample it first, or pass `resample=True` to resample with soxr."
            )

        rows = []
        for index, clip in enumerate(self._as_clip_list(raw_audio)):
            channels = self._clip_channels(clip, index, channel_axis)
            if multichannel == "mean":
                channels = channels.mean(axis=0, keepdims=True)
            if sampling_rate != self.sampling_rate:
                channels = audio.resample(channels, sampling_rate, self.sampling_rate)
            rows.extend(channels)

        return self._padded_features(rows, padding, max_length, truncation, None, return_tensors)

    def pad(
        self,
        processed_features,
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_tensors: str = "pt",
    ) -> BatchFeature:
        """Batch features this extractor made one clip at a time (e.g. in `datasets.map`), as a collator does.

        ``processed_features`` is a `BatchFeature` or dict whose ``input_values`` lists the clips, or a list of such
        dicts (what `DataCollatorWithPadding` passes). Each entry's ``input_values`` is ``(samples,)``,
        ``(rows, samples)`` or ``(rows, 1, samples)``; its ``padding_mask``, when present, marks the real samples,
        so earlier padding is dropped first. The result equals calling the extractor on the whole batch at once:
        ``input_values`` ``(batch, 1, samples)`` and ``padding_mask`` ``(batch, samples)``, with lengths rounded up
        to a multiple of ``hop_length`` (and of ``pad_to_multiple_of`` when given). Other keys (a `label`, or a
        column `datasets.map` kept) come along, one value per row (an entry folded into several rows repeats its
        values), as a tensor where the values make one, else as a list.
        """
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"`return_tensors` must be 'pt' or 'np', got {return_tensors!r}.")
        if pad_to_multiple_of is not None:
            check_positive_integer(pad_to_multiple_of, "pad_to_multiple_of")
        if isinstance(processed_features, (list, tuple)):
            entries = list(processed_features)
        elif "input_values" in processed_features:
            count = len(processed_features["input_values"])
            uneven = {key: len(values) for key, values in processed_features.items() if len(values) != count}
            if uneven:
                raise ValueError(f"`pad` got {count} `input_values` but {uneven} values of other keys.")
            entries = [{key: values[index] for key, values in processed_features.items()} for index in range(count)]
        else:
            raise ValueError("`pad` needs `input_values`: pass the extractor's output or a list of its outputs.")
        rows_per_entry = [self._entry_rows(entry, index) for index, entry in enumerate(entries)]
        if not entries:
            raise ValueError("`pad` got no clips.")
        others = {key: [] for key in entries[0] if key not in self.model_input_names}
        for index, (entry, rows) in enumerate(zip(entries, rows_per_entry)):
            if set(entry) - set(self.model_input_names) != others.keys():
                raise ValueError(f"Entry {index} of `pad` has keys {sorted(entry)}; entry 0 has {sorted(entries[0])}.")
            for key in others:
                others[key].extend([entry[key]] * len(rows))
        rows = [row for entry_rows in rows_per_entry for row in entry_rows]
        features = self._padded_features(rows, padding, max_length, truncation, pad_to_multiple_of, return_tensors)
        for key, values in others.items():
            try:
                features[key] = BatchFeature({key: values}).convert_to_tensors(return_tensors)[key]
            except ValueError:  # strings, ragged lists: left as they are
                features[key] = values
        return features

    @staticmethod
    def _entry_rows(entry, index: int) -> list[np.ndarray]:
        """The real samples of one `pad` entry's rows, with the padding its `padding_mask` marks removed."""
        if not hasattr(entry, "keys") or "input_values" not in entry:
            raise ValueError(f"Entry {index} of `pad` has no `input_values`.")
        values = entry["input_values"]
        values = values.detach().cpu().float().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        if not np.issubdtype(values.dtype, np.floating):
            raise ValueError(
                f"Entry {index} of `pad` holds {values.dtype} samples; `pad` takes this extractor's float output. "
                "Call the extractor itself on raw (e.g. integer PCM) audio."
            )
        if values.ndim == 3 and values.shape[1] == 1:
            values = values[:, 0]
        elif values.ndim == 1:
            values = values[None]
        elif values.ndim != 2:
            raise ValueError(
                f"Entry {index} of `pad` has `input_values` of shape {values.shape}; expected (samples,), "
                "(rows, samples) or (rows, 1, samples)."
            )
        mask = entry.get("padding_mask")
        if mask is None:
            return list(values.astype(np.float32))
        mask = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)
        if mask.size != values.size:
            raise ValueError(
                f"Entry {index} of `pad` has a `padding_mask` of shape {mask.shape} for `input_values` of shape "
                f"{values.shape}."
            )
        mask = mask.reshape(values.shape)
        return [row[: int(row_mask.sum())].astype(np.float32) for row, row_mask in zip(values, mask)]

    def _padded_features(
        self, rows: list[np.ndarray], padding, max_length, truncation, pad_to_multiple_of, return_tensors
    ) -> BatchFeature:
        input_values, padding_mask = self._pad_rows(rows, padding, max_length, truncation, pad_to_multiple_of)
        features = BatchFeature({"input_values": input_values[:, None, :], "padding_mask": padding_mask})
        return features.convert_to_tensors(return_tensors)

    @staticmethod
    def _as_clip_list(raw_audio) -> list:
        if isinstance(raw_audio, (list, tuple)) and raw_audio and not np.isscalar(raw_audio[0]):
            return list(raw_audio)
        return [raw_audio]

    @staticmethod
    def _clip_channels(clip, index: int, channel_axis: int) -> np.ndarray:
        """One clip as float32 `(channels, samples)`, with the checks that name the offending clip."""
        if isinstance(clip, torch.Tensor):
            clip = clip.detach().cpu()
            # numpy has no bfloat16; every floating tensor becomes float32 anyway.
            clip = (clip.float() if clip.is_floating_point() else clip).numpy()
        try:
            clip = audio.to_float_audio(np.asarray(clip))
        except ValueError as error:
            raise ValueError(f"Clip {index}: {error}") from error
        if clip.ndim == 1:
            clip = clip[None, :]
        elif clip.ndim == 2:
            clip = np.moveaxis(clip, channel_axis, 0)
            if audio.looks_transposed(clip):
                raise ValueError(
                    f"Clip {index} has shape {clip.shape} after taking axis {channel_axis} as channels: "
                    f"{clip.shape[0]} channels of {clip.shape[1]} samples. Pass `channel_axis=-1` for "
                    "(samples, channels) arrays such as soundfile returns."
                )
        else:
            raise ValueError(
                f"Clip {index} has {clip.ndim} dimensions; expected (samples,) or a 2-D multichannel array."
            )
        if clip.shape[-1] == 0 or clip.shape[0] == 0:
            raise ValueError(f"Clip {index} is empty.")
        if not np.isfinite(clip).all():
            raise ValueError(f"Clip {index} contains NaN or Inf.")
        return clip

    def _pad_rows(
        self, rows: list[np.ndarray], padding, max_length, truncation, pad_to_multiple_of
    ) -> tuple[np.ndarray, np.ndarray]:
        # Not named `_pad`: `SequenceFeatureExtractor` has a hook of that name with another signature.
        if max_length is not None:
            check_positive_integer(max_length, "max_length", "number of samples")
        if padding in (True, "longest"):
            target = max(len(row) for row in rows)
        elif padding == "max_length":
            if max_length is None:
                raise ValueError("`padding='max_length'` needs `max_length`.")
            target = max_length
        else:
            raise ValueError(f"`padding` must be True, 'longest' or 'max_length', got {padding!r}.")
        if truncation:
            if max_length is None:
                raise ValueError("`truncation=True` needs `max_length`.")
            rows = [row[:max_length] for row in rows]
            target = min(target, max_length)
        elif any(len(row) > target for row in rows):
            raise ValueError(f"A clip is longer than max_length={max_length}; pass `truncation=True` to cut it.")

        multiple = math.lcm(self.hop_length, pad_to_multiple_of or 1)
        target = -(-target // multiple) * multiple
        input_values = np.full((len(rows), target), self.padding_value, dtype=np.float32)
        padding_mask = np.zeros((len(rows), target), dtype=np.int64)
        for index, row in enumerate(rows):
            input_values[index, : len(row)] = row
            padding_mask[index, : len(row)] = 1
        return input_values, padding_mask
