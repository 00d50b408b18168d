"""Encode the audio column of a Hugging Face dataset into DAC codes for language models.

`tokenize_dataset` maps a `Dataset` or a streaming `IterableDataset` in batches, reading audio with soundfile
(`Audio(decode=False)`, so torchcodec is never needed), resampling to the model's rate with soxr, applying a
stated stereo policy, and storing int16 codes plus their frame count next to the other columns. The batches are
encoded with `encode_clips`, which gives every clip exactly the codes it gets when encoded alone.
`save_tokenized_dataset` and `merge_tokenized_shards` write the result (atomically) for `dac tokenize`,
which also spreads the work over processes with `accelerate launch`. See docs/tokenize.md.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import uuid
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from . import audio as audio_io
from .audio_datasets import audio_storage, read_audio_record
from .batching import encoder_receptive_field
from .feature_extraction_dac import DacFeatureExtractor
from .validation import check_positive_integer

if TYPE_CHECKING:
    from datasets import Dataset, Features, IterableDataset

    from .modeling_dac import DacModel

__all__ = [
    "STEREO_POLICIES",
    "check_new_output_dir",
    "encode_clips",
    "merge_tokenized_shards",
    "remove_interrupted_saves",
    "save_tokenized_dataset",
    "tokenize_dataset",
    "tokenized_features",
]

STEREO_POLICIES = ("mean", "first", "fold")
_TEMPORARY_SUFFIX = ".tmp"
# While skipping, the mapped rows say here why a clip was left out (null for the clips encoded): stored with the
# rows, the reasons survive a map served from datasets' cache.
_SKIPPED_COLUMN = "__tokenize_skipped__"
_MAX_INT16_CODEBOOK_SIZE = 2**15


def _encode_padded(model: DacModel, clips: list[torch.Tensor], n_quantizers: int | None) -> torch.Tensor:
    """Codes ``[batch, n_quantizers, frames]`` of 1-D clips right-padded with zeros to a common length."""
    extractor = DacFeatureExtractor.from_model_config(model.config)
    features = extractor([clip.numpy() for clip in clips], sampling_rate=model.config.sampling_rate)
    features = features.to(model.device)
    return model.encode(**features, n_quantizers=n_quantizers, return_dict=True).audio_codes


@torch.inference_mode()
def encode_clips(
    model: DacModel, clips: Sequence[np.ndarray | torch.Tensor], n_quantizers: int | None = None
) -> list[torch.LongTensor]:
    """Encode mono clips of any lengths in a few batched calls, each clip getting exactly its codes when alone.

    In a right-padded batch a clip's last frames see the batch's padding where, alone, the encoder's
    convolutions see their own zero padding, so they may get other codes (see `modeling_dac.batching`). Here
    those frames come from a second batched call instead: every clip's last ``W`` frames (``W`` from the
    encoder's receptive field: 17 frames for the 44.1 kHz models) are encoded as a window cut at a frame
    boundary, so the clip ends exactly as it does alone and the window's first frames, which miss their left
    context, are not used. Clips shorter than ``W`` frames are encoded whole, batched with clips of the same
    frame count. The result equals ``model.encode(clip[None, None]).audio_codes[0]`` for every clip (the
    arithmetic is the same, up to float summation order, which codes, being argmins, do not see in practice).

    Args:
        model: a `DacModel` in eval mode.
        clips: 1-D float audio at ``model.config.sampling_rate``, numpy arrays or tensors.
        n_quantizers: codebooks to return, 1 to ``n_codebooks`` (all when ``None``).

    Returns:
        One ``[n_quantizers, ceil(len(clip) / hop_length)]`` int64 tensor per clip, on the model's device.
    """
    if model.training:
        raise ValueError("encode_clips needs the model in eval mode (call model.eval()); training mode drops codebooks")
    tensors = []
    for index, clip in enumerate(clips):
        clip = torch.as_tensor(clip, dtype=torch.float32).detach().cpu()
        if clip.ndim != 1 or clip.numel() == 0:
            raise ValueError(f"clip {index} must be non-empty 1-D (mono) audio, got shape {tuple(clip.shape)}")
        tensors.append(clip)
    hop = model.config.hop_length
    receptive_field = encoder_receptive_field(model.config)
    left_frames = math.ceil(receptive_field.left / hop)
    # A clip's last frame not covered by the padded batch is at most ceil(right / hop) + 1 frames from its end.
    window_frames = left_frames + math.ceil(receptive_field.right / hop) + 1
    frame_counts = [math.ceil(clip.numel() / hop) for clip in tensors]

    codes: list[torch.Tensor | None] = [None] * len(tensors)
    long_clips = [index for index, frames in enumerate(frame_counts) if frames >= window_frames]
    if long_clips:
        heads = _encode_padded(model, [tensors[index] for index in long_clips], n_quantizers)
        window_starts = [frame_counts[index] - window_frames for index in long_clips]
        windows = [tensors[index][start * hop :] for index, start in zip(long_clips, window_starts)]
        tails = _encode_padded(model, windows, n_quantizers)
        for row, (index, start) in enumerate(zip(long_clips, window_starts)):
            exact = receptive_field.exact_frames(tensors[index].numel())
            codes[index] = torch.cat([heads[row, :, :exact], tails[row, :, exact - start :]], dim=-1)
    short_by_frames = defaultdict(list)
    for index, frames in enumerate(frame_counts):
        if frames < window_frames:
            short_by_frames[frames].append(index)
    for group in short_by_frames.values():
        for row, index in zip(_encode_padded(model, [tensors[index] for index in group], n_quantizers), group):
            codes[index] = row
    return codes


def _channels(audio: np.ndarray, stereo: str) -> np.ndarray:
    """``(channels, samples)`` audio reduced by the stereo policy: one row, or one row per channel for "fold"."""
    if stereo == "mean":
        return audio.mean(axis=0, keepdims=True)
    if stereo == "first":
        return audio[:1]
    return audio


def _dataset_codes_dtype(codebook_size: int) -> np.dtype:
    """How a tokenized dataset stores codes: int16 (signed, which torch reads as is) up to 32768 entries, else int32."""
    return np.dtype(np.int16 if codebook_size <= _MAX_INT16_CODEBOOK_SIZE else np.int32)


def tokenized_features(
    model_config, stereo: str = "mean", other_features: Features | None = None, codes_column: str = "audio_codes"
) -> Features:
    """The features of a tokenized dataset: ``other_features`` (the columns kept), the codes and ``n_frames``.

    The codes are ``List(List(Value("int16")))`` of shape ``[n_quantizers, frames]``, or with ``stereo="fold"``
    ``List(List(List(...)))`` of shape ``[channels, n_quantizers, frames]``; int32 if ``codebook_size > 32768``.
    """
    from datasets import Features, List, Value

    codes_feature = List(List(Value(_dataset_codes_dtype(model_config.codebook_size).name)))
    if stereo == "fold":
        codes_feature = List(codes_feature)
    features = dict(other_features or {})
    features.update({codes_column: codes_feature, "n_frames": Value("int32")})
    return Features(features)


def _fingerprint(dataset: Dataset, model: DacModel, options: dict) -> str:
    """A cache key for `Dataset.map` from the dataset, the options and the model's weights (hashing the model
    through datasets' pickler would serialise the whole model)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{dataset._fingerprint}|{sorted(options.items())}|{model.config.to_json_string()}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


def tokenize_dataset(
    dataset: Dataset | IterableDataset,
    model: DacModel,
    audio_column: str = "audio",
    n_quantizers: int | None = None,
    stereo: Literal["mean", "first", "fold"] = "mean",
    batch_size: int = 16,
    keep_audio: bool = False,
    codes_column: str = "audio_codes",
    device: str | torch.device | None = None,
    cache_file_name: str | os.PathLike | None = None,
    skipped: list[dict] | None = None,
) -> Dataset | IterableDataset:
    """Replace the audio column of ``dataset`` by DAC codes, batched with `datasets.map`.

    Each record of ``audio_column`` (an ``Audio`` feature, which is cast to ``Audio(decode=False)``; an
    undecoded ``{"bytes", "path"}`` dict; a decoded ``{"array", "sampling_rate"}`` dict; or a path) is read
    with soundfile, reduced to mono by the stereo policy, resampled to ``model.config.sampling_rate`` with soxr
    and encoded by `encode_clips`, so the codes do not depend on the batch. Other columns are kept.

    Args:
        dataset: a `datasets.Dataset` (mapped now, cached like any map) or `IterableDataset` (mapped lazily as
            it is iterated: streaming works).
        model: the `DacModel` (eval mode); it is moved to ``device``.
        audio_column: the column holding the audio.
        n_quantizers: codebooks to keep, 1 to ``n_codebooks`` (all when ``None``).
        stereo: ``"mean"`` averages the channels (the default; mono input is unchanged), ``"first"`` keeps the
            first channel, ``"fold"`` encodes every channel and stores ``[channels, n_quantizers, frames]``.
        batch_size: clips per `datasets.map` batch and per encoder call (memory grows with it and with the
            longest clip of a batch).
        keep_audio: keep the (undecoded) audio column beside the codes.
        codes_column: name of the codes column.
        device: where to run the model; default CUDA when available, else the model's current device.
        cache_file_name: for a `Dataset`, the Arrow file the codes are written to (`Dataset.map`'s option).
            By default datasets puts it beside the dataset's own cache files, i.e. inside a `save_to_disk`
            source, which fails if that is read-only.
        skipped: what to do with a record that cannot be tokenized (unreadable, empty, too short to resample).
            ``None`` (default): raise a ValueError naming it. A list: leave the record out with a warning, and
            append ``{"name": file or description, "reason": ...}`` to the list, for a `Dataset` here, for an
            `IterableDataset` as it is iterated.

    Returns:
        The dataset with ``codes_column`` (int16 ``[n_quantizers, frames]``, see `tokenized_features`) and
        ``n_frames`` (int32, ``ceil(samples / hop_length)`` at the model's rate). Rows hold Python lists and ints
        (numpy arrays for a stream without declared features, whose types are inferred from them).
    """
    from datasets import Audio, Dataset, IterableDataset, Value

    if not isinstance(dataset, (Dataset, IterableDataset)):
        raise ValueError(f"dataset must be a datasets.Dataset or IterableDataset, got {type(dataset).__name__}")
    if stereo not in STEREO_POLICIES:
        raise ValueError(f"stereo must be one of {STEREO_POLICIES}, got {stereo!r}")
    if model.training:
        raise ValueError("the model is in training mode; call model.eval() before tokenizing")
    n_quantizers = model._check_n_quantizers(n_quantizers)
    batch_size = check_positive_integer(batch_size, "batch_size")
    features = dataset.features
    if features is not None:
        if audio_column not in features:
            raise ValueError(f"the dataset has no column {audio_column!r}; its columns are {list(features)}")
        for name in (codes_column, "n_frames"):
            if name in features and name != audio_column:
                raise ValueError(f"the dataset already has a column {name!r}; pick another codes_column or drop it")
        if isinstance(features[audio_column], Audio):
            dataset = dataset.cast_column(audio_column, Audio(decode=False))
            features = dataset.features
    if device is None:
        device = "cuda" if torch.cuda.is_available() else model.device
    model.to(device)

    sampling_rate = model.config.sampling_rate
    codes_dtype = _dataset_codes_dtype(model.config.codebook_size)
    # A mapped `Dataset` stores what `tokenize_batch` returns as Arrow, so its rows read back as lists; an
    # `IterableDataset` hands the returned values on as they are, so it gets lists too, except when its features
    # are unknown: then the numpy arrays carry the int16 type that saving the stream infers.
    streaming = isinstance(dataset, IterableDataset)
    as_lists = streaming and features is not None

    def tokenize_batch(batch: dict) -> dict:
        if audio_column not in batch:  # a streaming dataset without declared features is only checked here
            raise ValueError(f"the dataset has no column {audio_column!r}; its columns are {list(batch)}")
        rows, channel_counts, skip_reasons = [], [], []
        for record in batch[audio_column]:
            try:
                audio, record_rate = read_audio_record(record)
                if not audio.shape[-1]:
                    raise ValueError("it holds no samples")
                channels = audio_io.resample(_channels(audio, stereo), record_rate, sampling_rate)
            except ValueError as error:
                if skipped is None:
                    raise ValueError(f"cannot tokenize {_record_name(record)}: {error}") from error
                skip_reasons.append({"name": _record_name(record), "reason": str(error)})
                channel_counts.append(None)
                continue
            rows.extend(channels)
            channel_counts.append(len(channels))
            skip_reasons.append(None)
        codes = [row.cpu().numpy().astype(codes_dtype) for row in encode_clips(model, rows, n_quantizers)]
        clip_codes, start = [], 0
        for count in channel_counts:
            if count is None:  # a skipped record: an empty placeholder, filtered out below
                clip_codes.append(np.zeros((0,) * (3 if stereo == "fold" else 2), dtype=codes_dtype))
                continue
            clip_codes.append(np.stack(codes[start : start + count]) if stereo == "fold" else codes[start])
            start += count
        n_frames = np.array([clip.shape[-1] for clip in clip_codes], dtype=np.int32)  # int32 also when inferred
        if as_lists:
            columns = {codes_column: [clip.tolist() for clip in clip_codes], "n_frames": n_frames.tolist()}
        else:
            columns = {codes_column: clip_codes, "n_frames": n_frames}
        if skipped is not None:
            columns[_SKIPPED_COLUMN] = skip_reasons
        return columns

    def keep_tokenized(reasons: list) -> list[bool]:
        for reason in reasons:
            if reason is not None:
                warnings.warn(f"skipped {reason['name']}: {reason['reason']}")
                skipped.append(reason)
        return [reason is None for reason in reasons]

    removed = [] if keep_audio else [audio_column]
    output_features = None
    if features is not None:
        kept = {name: feature for name, feature in features.items() if name not in removed}
        output_features = tokenized_features(model.config, stereo, kept, codes_column)
        if skipped is not None:
            output_features[_SKIPPED_COLUMN] = {"name": Value("string"), "reason": Value("string")}
    map_options = {"batched": True, "batch_size": batch_size, "remove_columns": removed, "features": output_features}
    if streaming:
        if cache_file_name is not None:
            raise ValueError("cache_file_name applies to a Dataset; an IterableDataset is mapped as it is iterated")
        tokenized = dataset.map(tokenize_batch, **map_options)
    else:
        options = {"audio_column": audio_column, "n_quantizers": n_quantizers, "stereo": stereo, "keep": keep_audio}
        options |= {"codes_column": codes_column, "skip": skipped is not None}
        tokenized = dataset.map(
            tokenize_batch,
            **map_options,
            new_fingerprint=_fingerprint(dataset, model, options),
            cache_file_name=None if cache_file_name is None else str(cache_file_name),
            desc="Tokenizing audio",
        )
    if skipped is None:
        return tokenized
    # In memory (only the indices of the rows kept), so that a cached map's skipped records are reported again.
    filter_options = {} if streaming else {"keep_in_memory": True, "desc": "Leaving out skipped records"}
    tokenized = tokenized.filter(keep_tokenized, input_columns=[_SKIPPED_COLUMN], batched=True, **filter_options)
    # A list: IterableDataset.remove_columns drops every column named by a character of a plain string.
    return tokenized.remove_columns([_SKIPPED_COLUMN])


def _record_name(record) -> str:
    """The file an audio record came from, for error messages."""
    path = record.get("path") if isinstance(record, dict) else record
    return str(path) if isinstance(path, (str, os.PathLike)) and str(path) else "an audio record without a path"


def check_new_output_dir(output_dir: str | os.PathLike) -> None:
    """Raise ValueError unless ``output_dir`` is absent or an empty directory (outputs are never overwritten)."""
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ValueError(f"output directory {output_dir} already exists and is not empty; choose another")


def remove_interrupted_saves(output_dir: str | os.PathLike) -> None:
    """Remove the temporary folders that `save_tokenized_dataset` left beside ``output_dir`` when it was killed."""
    output_dir = Path(output_dir)
    name = re.compile(rf"\.{re.escape(output_dir.name)}\.[0-9a-f]{{32}}{re.escape(_TEMPORARY_SUFFIX)}")
    if output_dir.parent.is_dir():
        for entry in output_dir.parent.iterdir():
            if name.fullmatch(entry.name):
                shutil.rmtree(entry, ignore_errors=True)


def save_tokenized_dataset(dataset: Dataset | IterableDataset, output_dir: str | os.PathLike) -> Dataset:
    """Write a tokenized dataset with ``save_to_disk`` into a new directory, atomically (a temporary directory
    beside it is renamed into place when complete); an `IterableDataset` is iterated (and so encoded) here.

    Returns:
        The saved dataset, as `datasets.load_from_disk(output_dir)` reads it.
    """
    from datasets import Dataset, load_from_disk

    output_dir = Path(output_dir)
    check_new_output_dir(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    temporary = output_dir.with_name(f".{output_dir.name}.{uuid.uuid4().hex}{_TEMPORARY_SUFFIX}")
    try:
        if not isinstance(dataset, Dataset):
            dataset = _materialize(dataset, cache_dir=temporary / "cache")
        dataset.save_to_disk(str(temporary / "dataset"))
        os.replace(temporary / "dataset", output_dir)  # atomic; an empty output_dir is replaced
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return load_from_disk(str(output_dir))


def _iterate(dataset: IterableDataset):
    yield from dataset


def _materialize(dataset: IterableDataset, cache_dir: Path) -> Dataset:
    """Iterate an `IterableDataset` into Arrow files under ``cache_dir``.

    Undecoded `Audio` columns, and the `{"bytes", "path"}` structs a stream declares for them, are written as that
    struct and cast to `Audio(decode=False)` afterwards: writing through the `Audio` feature would call its encoder,
    which needs torchcodec.
    """
    from datasets import Audio, Dataset, Features

    features = dataset.features
    audio_columns = [
        name for name, feature in (features or {}).items() if isinstance(feature, Audio) or feature == audio_storage()
    ]
    if features is not None:
        features = Features(
            {name: audio_storage() if name in audio_columns else feature for name, feature in features.items()}
        )
    materialized = Dataset.from_generator(
        _iterate,
        features=features,
        gen_kwargs={"dataset": dataset},
        cache_dir=str(cache_dir),
        fingerprint=uuid.uuid4().hex,
    )
    for name in audio_columns:
        materialized = materialized.cast_column(name, Audio(decode=False))
    return materialized


def merge_tokenized_shards(shard_dirs: Sequence[str | os.PathLike], output_dir: str | os.PathLike) -> Dataset:
    """Concatenate datasets saved by `save_tokenized_dataset` (one per process), in the order given, into
    ``output_dir`` (atomically). With map-style input split by ``split_dataset_by_node`` (contiguous shards),
    rank order restores the original row order."""
    from datasets import concatenate_datasets, load_from_disk

    if not shard_dirs:
        raise ValueError("merge_tokenized_shards needs at least one shard directory")
    shards = [load_from_disk(str(shard_dir)) for shard_dir in shard_dirs]
    return save_tokenized_dataset(concatenate_datasets(shards), output_dir)
