"""Training data: Hugging Face datasets (hub, local folders, parquet, saved datasets; regular or streaming) to crops.

Audio is read with `Audio(decode=False)` and soundfile (torchcodec is not needed), mixed to mono, resampled with
soxr, cropped at random where it is loud enough, normalised to -16 LUFS (pyloudnorm) and phase-rotated at random,
as in the released recipe. A silent, too-short or unreadable clip is skipped and counted; an unreadable one is
also logged by name.

Every random choice for training example `n` comes from a generator seeded with `(seed, n)`, so the examples of
a step do not depend on DataLoader workers, and a resumed run sees exactly the examples an uninterrupted run saw.
"""

import collections
import io
import itertools
import logging
import math
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile
import torch
from datasets import Dataset, IterableDataset, interleave_datasets
from datasets.distributed import split_dataset_by_node

from modeling_dac import audio as audio_io
from modeling_dac.audio_datasets import load_audio_dataset, read_audio_record

__all__ = [
    "SKIP_REASONS",
    "DacAudioCropper",
    "DacDatasetSource",
    "DacStreamedTrainingDataset",
    "DacTrainingDataset",
    "DacValidationDataset",
    "build_datasets",
    "build_training_dataloader",
    "collate_examples",
    "crop_loudness",
    "load_source",
    "shift_phase",
]

logger = logging.getLogger(__name__)

SKIP_REASONS = ("silent", "too_short", "corrupt")
# The second entry of every random generator's seed, one per use, so that no two uses draw the same numbers. They
# are part of what makes a run reproducible and a resumed run see the same data: never renumber them.
_RNG_EPOCH_PERMUTATION = 0
_RNG_MAP_STYLE_CROP = 1
_RNG_STREAM_CROP = 2
_RNG_VALIDATION_CROP = 3
_RNG_SHUFFLE_BUFFER = 4
# Crops shorter than 0.5 s are measured zero-padded to 0.5 s, and silence counts as -70 LUFS, as in the released code.
_MIN_LOUDNESS_SECONDS = 0.5
_MIN_LOUDNESS_LUFS = -70.0
# Records drawn in place of unusable ones for one training example, before giving up on the dataset.
_MAX_REPLACEMENTS = 64
# Records of a stream kept to stand in for a batch in which none is usable.
_SPARE_RECORDS = 8


@dataclass
class DacDatasetSource:
    """One `--dataset` entry: `SOURCE[,name=CONFIG][,split=SPLIT][,column=AUDIO_COLUMN][,weight=W]`."""

    source: str
    name: str | None = None
    split: str = "train"
    column: str | None = None
    weight: float = 1.0

    @classmethod
    def parse(cls, spec: str) -> "DacDatasetSource":
        source, *options = [part.strip() for part in spec.split(",")]
        if not source:
            raise ValueError(f"Dataset entry {spec!r} names no dataset.")
        values = {}
        for option in options:
            key, separator, value = option.partition("=")
            if not separator or key not in ("name", "split", "column", "weight"):
                raise ValueError(
                    f"Dataset entry {spec!r}: option {option!r} is not one of name=, split=, column=, weight=."
                )
            values[key] = _positive_weight(spec, value) if key == "weight" else value
        return cls(source=source, **values)


def _positive_weight(spec: str, text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = math.nan  # refused below, with the same message
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"Dataset entry {spec!r}: option weight= must be a positive number, got {text!r}.")
    return weight


def load_source(source: DacDatasetSource, streaming: bool = False) -> Dataset | IterableDataset:
    """One `--dataset` entry as a dataset with a single column `audio` of undecoded `{"bytes", "path"}` records."""
    return load_audio_dataset(
        source.source, split=source.split, name=source.name, column=source.column, streaming=streaming
    )


def _mix(datasets: list, weights: list[float], seed: int) -> Dataset | IterableDataset:
    if len(datasets) == 1:
        return datasets[0]
    # Equal weights: the sources take turns, as the released recipe samples its speech/music/general groups.
    probabilities = None if len(set(weights)) == 1 else [weight / sum(weights) for weight in weights]
    return interleave_datasets(datasets, probabilities=probabilities, seed=seed, stopping_strategy="all_exhausted")


def build_datasets(data_args, seed: int) -> tuple[Dataset | IterableDataset, Dataset | list]:
    """
    The mixed training dataset and the validation records: the first `num_validation_examples` records of
    `--validation_dataset`, or without it of the first training source, which are then held out of training.
    """
    if not data_args.dataset:
        raise ValueError("No training data: pass --dataset (a hub id, a folder of audio files or parquet).")
    sources = [DacDatasetSource.parse(spec) for spec in data_args.dataset]
    datasets = [load_source(source, data_args.streaming) for source in sources]
    held_out = data_args.num_validation_examples
    if data_args.validation_dataset:
        validation_sources = [DacDatasetSource.parse(spec) for spec in data_args.validation_dataset]
        validation = [load_source(source, data_args.streaming) for source in validation_sources]
        validation_source = _mix(validation, [s.weight for s in validation_sources], seed)
        validation_records = _first_records(validation_source, held_out)
        origin = "--validation_dataset"
    else:
        first = validation_source = datasets[0]
        origin = f"{sources[0].source} (held out of training)"
        if isinstance(first, Dataset) and len(first) <= held_out:
            raise ValueError(
                f"{sources[0].source} has {len(first)} records, too few to hold out num_validation_examples="
                f"{held_out} for validation; pass --validation_dataset or lower --num_validation_examples."
            )
        validation_records = _first_records(first, held_out)
        if isinstance(first, Dataset):
            datasets[0] = first.select(range(held_out, len(first)))
        else:
            # Not `skip`: once the stream is split between processes, datasets divides a skip among the shards, so
            # the held-out records of the first shard would reach training.
            held_out_audio = [row["audio"] for row in validation_records]
            datasets[0] = first.filter(lambda row: row["audio"] not in held_out_audio)
    total = f" of the {len(validation_source)}" if isinstance(validation_source, Dataset) else ""
    logger.info(
        f"Validation: the first {len(validation_records)}{total} records of {origin} "
        f"(num_validation_examples={held_out})."
    )
    return _mix(datasets, [source.weight for source in sources], seed), validation_records


def _first_records(dataset: Dataset | IterableDataset, count: int) -> Dataset | list:
    if isinstance(dataset, Dataset):
        return dataset.select(range(min(count, len(dataset))))
    return list(dataset.take(count))


def crop_loudness(audio: np.ndarray, sampling_rate: int) -> float:
    """BS.1770 loudness in LUFS of a mono crop, measured as the released training code does."""
    minimum_length = int(_MIN_LOUDNESS_SECONDS * sampling_rate)
    if len(audio) < minimum_length:
        audio = np.pad(audio, (0, minimum_length - len(audio)))
    return max(audio_io.integrated_loudness(audio[None], sampling_rate), _MIN_LOUDNESS_LUFS)


def shift_phase(audio: np.ndarray, angle: float) -> np.ndarray:
    """Add `angle` radians to the phase of every frequency (DC and Nyquist stay real and unchanged)."""
    spectrum = np.fft.rfft(audio)
    spectrum[1 : len(audio) // 2 + (len(audio) % 2)] *= np.exp(1j * angle)
    return np.fft.irfft(spectrum, n=len(audio)).astype(np.float32)


class _SkippedClip(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class DacAudioCropper:
    """
    Turns one `{"bytes", "path"}` record (or a decoded `{"array", "sampling_rate"}` one) into a normalised crop of
    exactly `num_samples` samples.
    """

    sampling_rate: int
    num_samples: int
    loudness_target: float = -16.0
    loudness_cutoff: float = -40.0
    num_crop_tries: int = 8
    random_phase_shift: bool = True

    def __call__(self, record: dict | None, rng: np.random.Generator) -> np.ndarray:
        """The crop as float32 `(num_samples,)`; raises `_SkippedClip` with the reason if the clip is unusable."""
        if record is None:  # a null value in the audio column
            logger.warning("Skipping a record with no audio (a null value in the audio column).")
            raise _SkippedClip("corrupt")
        if isinstance(record, (str, os.PathLike)):  # a column of file paths
            record = {"path": os.fspath(record)}
        if not isinstance(record, dict):
            logger.warning(f"Skipping a record that is neither audio nor a path: {type(record).__name__}.")
            raise _SkippedClip("corrupt")
        name = record.get("path") or "<audio bytes>"
        try:
            with soundfile.SoundFile(_audio_source(record)) as file:
                crop = self._salient_crop(file, rng)
        except _SkippedClip:
            raise
        except Exception as error:  # soundfile raises several types for broken files; none may stop training
            logger.warning(f"Skipping corrupt audio {name}: {error}")
            raise _SkippedClip("corrupt") from error
        return self._normalise(crop, rng)

    def _salient_crop(self, file: soundfile.SoundFile, rng: np.random.Generator) -> np.ndarray:
        # Rounded up: soxr then returns at least `num_samples` (and exactly that many without resampling).
        source_length = math.ceil(self.num_samples * file.samplerate / self.sampling_rate)
        if file.frames < source_length:
            raise _SkippedClip("too_short")
        for _ in range(self.num_crop_tries):
            file.seek(int(rng.integers(0, file.frames - source_length + 1)))
            crop = file.read(source_length, dtype="float32", always_2d=True).mean(axis=1)
            if len(crop) < source_length:
                raise ValueError(f"the header promises {file.frames} frames, but the data ends earlier")
            if not np.all(np.isfinite(crop)):
                raise ValueError("it holds NaN or infinite samples")
            if file.samplerate != self.sampling_rate:
                crop = audio_io.resample(crop, file.samplerate, self.sampling_rate)
            crop = crop[: self.num_samples]
            if crop_loudness(crop, self.sampling_rate) >= self.loudness_cutoff:
                return crop
        raise _SkippedClip("silent")

    def _normalise(self, crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        crop = crop * audio_io.loudness_gain(
            crop_loudness(crop, self.sampling_rate), self.loudness_target, float(np.abs(crop).max())
        )
        if self.random_phase_shift:
            crop = shift_phase(crop, rng.uniform(-np.pi, np.pi))
        return crop.astype(np.float32)


def _audio_source(record: dict):
    """What soundfile opens for a record: its bytes, its path, or a decoded `{"array", "sampling_rate"}` as WAV."""
    if record.get("bytes"):
        return io.BytesIO(record["bytes"])
    if record.get("array") is not None:  # e.g. a column of arrays built in memory and never cast to Audio
        audio, sampling_rate = read_audio_record(record)
        wav = io.BytesIO()
        soundfile.write(wav, audio.T, sampling_rate, format="WAV", subtype="FLOAT")
        wav.seek(0)
        return wav
    return record["path"]


def _example(audio: np.ndarray, skipped: dict[str, int]) -> dict:
    return {"audio": torch.from_numpy(audio)[None], **{f"skipped_{reason}": skipped[reason] for reason in SKIP_REASONS}}


def collate_examples(examples: list[dict | None]) -> dict:
    """Stack crops to `(batch, 1, samples)` and sum the skip counters; `None` entries (unusable clips) are dropped."""
    usable = [example for example in examples if example is not None]
    batch = {"audio": torch.stack([example["audio"] for example in usable]) if usable else None}
    for reason in SKIP_REASONS:
        batch[f"skipped_{reason}"] = sum(example[f"skipped_{reason}"] for example in usable)
    return batch


class DacTrainingDataset(torch.utils.data.Dataset):
    """
    Map-style training examples over a regular (random-access) dataset, indexed by example number: example `n`
    is record `permutation(epoch)[n % len]`, cropped with a generator seeded by `(seed, n)`. An unusable record is
    replaced by another drawn from the same generator.
    """

    def __init__(self, records: Dataset, cropper: DacAudioCropper, seed: int):
        if len(records) == 0:
            raise ValueError("The training dataset is empty.")
        self.records = records
        self.cropper = cropper
        self.seed = seed
        self._permutation_epoch, self._permutation = None, None

    def __len__(self) -> int:
        return len(self.records)

    def _record_index(self, example_number: int) -> int:
        epoch, position = divmod(example_number, len(self.records))
        if epoch != self._permutation_epoch:
            rng = np.random.default_rng([self.seed, _RNG_EPOCH_PERMUTATION, epoch])
            self._permutation = rng.permutation(len(self.records))
            self._permutation_epoch = epoch
        return int(self._permutation[position])

    def __getitem__(self, example_number: int) -> dict:
        rng = np.random.default_rng([self.seed, _RNG_MAP_STYLE_CROP, example_number])
        skipped = dict.fromkeys(SKIP_REASONS, 0)
        index = self._record_index(example_number)
        for _ in range(_MAX_REPLACEMENTS):
            try:
                return _example(self.cropper(self.records[index]["audio"], rng), skipped)
            except _SkippedClip as skip:
                skipped[skip.reason] += 1
                index = int(rng.integers(len(self.records)))
        raise RuntimeError(
            f"{_MAX_REPLACEMENTS} records in a row were unusable ({skipped}): is the audio shorter than "
            f"{self.cropper.num_samples / self.cropper.sampling_rate:.2f} s, silent, or unreadable?"
        )


class _StepBatchSampler(torch.utils.data.Sampler):
    """Example numbers of this process's share of every step from `start_step` on (endless)."""

    def __init__(self, start_step: int, per_process_batch_size: int, process_index: int, num_processes: int):
        self.start_step = start_step
        self.per_process_batch_size = per_process_batch_size
        self.process_index = process_index
        self.num_processes = num_processes

    def __iter__(self) -> Iterator[list[int]]:
        for step in itertools.count(self.start_step):
            first = (step * self.num_processes + self.process_index) * self.per_process_batch_size
            yield list(range(first, first + self.per_process_batch_size))


class _ReadAhead:
    """Iterates `iterator` in a background thread, `size` items ahead, in the same order."""

    _END = object()

    def __init__(self, iterator: Iterator, size: int):
        self.items = queue.Queue(maxsize=size)
        self.thread = threading.Thread(target=self._read, args=(iterator,), daemon=True)
        self.thread.start()

    def _read(self, iterator: Iterator):
        try:
            for item in iterator:
                self.items.put(item)
            self.items.put(self._END)
        except BaseException as error:  # handed to the consumer, which raises it
            self.items.put(error)

    def __iter__(self) -> Iterator:
        while (item := self.items.get()) is not self._END:
            if isinstance(item, BaseException):
                raise item
            yield item


@dataclass
class _StreamBatch:
    """`items`: this step's `(example_number, record)` pairs; `spares`: the records read just before them."""

    items: list[tuple[int, dict]]
    spares: list[dict]


class _StreamBatchSampler(torch.utils.data.Sampler):
    """
    `_StreamBatch`es of `(example_number, record)` from this process's share of a streamed dataset, from
    `start_step` on (endless). The stream is read here, in the main process, in a fixed order: shard order per
    epoch as datasets sets it, then a shuffle buffer seeded by `(seed, process, epoch)`. DataLoader workers only
    decode. Resuming re-reads (without decoding) the records consumed before `start_step`.
    """

    def __init__(
        self,
        stream: IterableDataset,
        seed: int,
        per_process_batch_size: int,
        start_step: int,
        process_index: int,
        shuffle_buffer_size: int,
    ):
        self.stream = stream
        self.seed = seed
        self.per_process_batch_size = per_process_batch_size
        self.start_step = start_step
        self.process_index = process_index
        self.shuffle_buffer_size = shuffle_buffer_size

    def _shuffled(self, records: Iterator[dict], rng: np.random.Generator) -> Iterator[dict]:
        # Not `IterableDataset.shuffle`: its buffer's state is not part of a checkpoint, so a resumed run would see
        # other records; this one is a function of (seed, process, epoch) and the stream alone.
        buffer = []
        for record in records:
            if len(buffer) < self.shuffle_buffer_size:
                buffer.append(record)
                continue
            index = int(rng.integers(len(buffer)))
            yield buffer[index]
            buffer[index] = record
        yield from (buffer[index] for index in rng.permutation(len(buffer)))

    def _endless_records(self) -> Iterator[dict]:
        for epoch in itertools.count():
            self.stream.set_epoch(epoch)
            rng = np.random.default_rng([self.seed, _RNG_SHUFFLE_BUFFER, self.process_index, epoch])
            empty = True
            for record in self._shuffled((row["audio"] for row in self.stream), rng):
                empty = False
                yield record
            if empty:
                raise ValueError("The streamed training dataset yielded no records.")

    def __iter__(self) -> Iterator[_StreamBatch]:
        records = self._endless_records()
        first = self.start_step * self.per_process_batch_size
        recent = collections.deque(itertools.islice(records, first), maxlen=_SPARE_RECORDS)
        numbered = enumerate(_ReadAhead(records, size=4 * self.per_process_batch_size), start=first)
        while True:
            items = list(itertools.islice(numbered, self.per_process_batch_size))
            yield _StreamBatch(items, spares=list(recent))
            recent.extend(record for _, record in items)


class DacStreamedTrainingDataset(torch.utils.data.Dataset):
    """
    Crops the batches of `_StreamBatchSampler`, with a generator seeded by `(seed, process, example_number)`. An
    unusable record is replaced by another crop of a usable record of the same batch (or, if there is none, of
    the records read just before it), so every batch is full.
    """

    def __init__(self, cropper: DacAudioCropper, seed: int, process_index: int = 0):
        self.cropper = cropper
        self.seed = seed
        self.process_index = process_index

    def _rng(self, example_number: int, attempt: int = 0) -> np.random.Generator:
        return np.random.default_rng(
            [self.seed, _RNG_STREAM_CROP, self.process_index, example_number, attempt]
        )

    def __getitems__(self, batch: _StreamBatch) -> list[dict]:
        skipped = dict.fromkeys(SKIP_REASONS, 0)
        crops, usable = {}, []
        for example_number, record in batch.items:
            try:
                crops[example_number] = self.cropper(record, self._rng(example_number))
                usable.append(record)
            except _SkippedClip as skip:
                skipped[skip.reason] += 1
        # A batch without one usable record (small batches can meet that) borrows from the records read before it.
        candidates = usable or batch.spares
        for example_number, _ in batch.items:
            for attempt in range(1, _MAX_REPLACEMENTS + 1):
                if example_number in crops or not candidates:
                    break
                rng = self._rng(example_number, attempt)
                try:
                    crops[example_number] = self.cropper(candidates[int(rng.integers(len(candidates)))], rng)
                except _SkippedClip:
                    continue
            if example_number not in crops:
                raise RuntimeError(
                    f"No usable audio in a batch of {len(batch.items)} streamed records ({skipped}) nor in the "
                    f"{len(batch.spares)} records before it: is the audio shorter than "
                    f"{self.cropper.num_samples / self.cropper.sampling_rate:.2f} s, silent, or unreadable?"
                )
        examples = [_example(crops[number], dict.fromkeys(SKIP_REASONS, 0)) for number, _ in batch.items]
        examples[0].update({f"skipped_{reason}": count for reason, count in skipped.items()})
        return examples


class DacValidationDataset(torch.utils.data.Dataset):
    """Fixed validation crops: record `i` cropped with a generator seeded by `(seed, i)`; unusable ones are `None`."""

    def __init__(self, records: Dataset | list, cropper: DacAudioCropper, seed: int):
        self.records = records
        self.cropper = cropper
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict | None:
        try:
            audio = self.cropper(
                self.records[index]["audio"], np.random.default_rng([self.seed, _RNG_VALIDATION_CROP, index])
            )
        except _SkippedClip:
            return None
        return _example(audio, dict.fromkeys(SKIP_REASONS, 0))


def build_training_dataloader(
    records: Dataset | IterableDataset,
    cropper: DacAudioCropper,
    seed: int,
    per_process_batch_size: int,
    start_step: int = 0,
    process_index: int = 0,
    num_processes: int = 1,
    num_workers: int = 0,
    shuffle_buffer_size: int = 1000,
) -> torch.utils.data.DataLoader:
    """
    This process's batches from `start_step` on, endlessly: `{"audio": (batch, 1, samples), "skipped_<reason>": n}`,
    loaded by `num_workers` DataLoader workers.
    """
    loader_options = {
        "num_workers": num_workers,
        "collate_fn": collate_examples,
        "pin_memory": torch.cuda.is_available(),
        # Starting an iterator draws a seed from this generator, never from the global one that checkpoints restore.
        "generator": torch.Generator().manual_seed(seed),
    }
    if isinstance(records, Dataset):
        dataset = DacTrainingDataset(records, cropper, seed)
        sampler = _StepBatchSampler(start_step, per_process_batch_size, process_index, num_processes)
    else:
        dataset = DacStreamedTrainingDataset(cropper, seed, process_index)
        stream = split_dataset_by_node(records, rank=process_index, world_size=num_processes)
        sampler = _StreamBatchSampler(
            stream, seed, per_process_batch_size, start_step, process_index, shuffle_buffer_size
        )
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, **loader_options)
