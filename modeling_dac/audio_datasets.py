"""Audio collections as Hugging Face datasets, read without torchcodec.

A source is a local audio file or folder of audio files, a parquet file (or a folder of them), a directory written by
`Dataset.save_to_disk`, or a hub dataset id. Audio columns are read undecoded (cast to `Audio(decode=False)`, or
on a stream declared as the `{"bytes", "path"}` struct they store), so records stay `{"bytes", "path"}` and are
decoded by soundfile through `modeling_dac.audio` (datasets >= 4 would otherwise decode with torchcodec, which
does not load on every setup).
"""

import glob
import io
import os
import re
from pathlib import Path

import numpy as np

from . import audio as audio_io

__all__ = ["audio_files_under", "audio_storage", "files_under", "load_audio_dataset", "read_audio_record"]


def files_under(folder: str | Path, suffixes, hidden_prefixes: tuple[str, ...] = (".",)) -> list[Path]:
    """
    The files under `folder`, recursively and sorted, whose suffix is one of `suffixes` (in any case), leaving out
    those with a file or folder name (below `folder`) starting with one of `hidden_prefixes`: macOS `._*` files,
    `.ipynb_checkpoints/`, temporary files of an interrupted run.
    """
    folder = Path(folder)
    suffixes = {suffix.lower() for suffix in suffixes}
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in suffixes
        and not any(part.startswith(hidden_prefixes) for part in path.relative_to(folder).parts)
    )


def audio_files_under(folder: str | Path) -> list[Path]:
    """The audio files (by extension, see `AUDIO_EXTENSIONS`) under `folder`, as `files_under` finds them."""
    files = files_under(folder, audio_io.AUDIO_EXTENSIONS)
    if not files:
        raise ValueError(f"No audio files ({', '.join(audio_io.AUDIO_EXTENSIONS)}) under {folder}.")
    return files


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()


def _pick_split(dataset, split: str | None, source: str):
    """
    `dataset[split]` of a `DatasetDict` (or any dict by split); a dataset without splits as it is, for no split or
    `train` (the training default, which names a whole folder without split names too).
    """
    if not isinstance(dataset, dict):  # DatasetDict and IterableDatasetDict are dicts
        if split not in (None, "train"):
            raise ValueError(
                f"Dataset {source} has no splits, so split {split!r} cannot be chosen from it; pass no split (or "
                "`train`) to use all of it."
            )
        return dataset
    if split is None and len(dataset) == 1:
        return next(iter(dataset.values()))
    if split not in dataset:
        raise ValueError(
            f"Dataset {source} has splits {sorted(dataset)}; choose one with `split` (`--split` on the command "
            f"line), got {split!r}."
        )
    return dataset[split]


def _files_by_split(folder: Path, files: list[Path]) -> dict[str, list[Path]]:
    """
    `files` (found under `folder`) by split, told by file and folder names with the patterns `load_dataset` tells a
    hub repo's splits by (`data/holdout-00000-of-00001.parquet`, `train/clip.wav`, `validation/...`), matched
    against the paths below `folder` (not the file system: one pass, and `[` in a folder name is no pattern).
    Unless those names account for every file (`speech_test.wav` beside `music.wav`, say), all of them are one
    `train` split.
    """
    from datasets.data_files import ALL_DEFAULT_PATTERNS, ALL_SPLIT_PATTERNS
    from fsspec.utils import glob_translate

    relative = {file.relative_to(folder).as_posix(): file for file in files}
    by_split: dict[str, list[Path]] = {}
    for sharded in ALL_SPLIT_PATTERNS:  # `{split}` in the name: any split name
        placeholder = "SPLITNAME"  # a literal to glob_translate, then the group that captures the split
        regex = glob_translate(sharded.replace("{split}", placeholder)).replace(placeholder, "(?P<split>[^/]+?)")
        regex = re.compile(regex)
        for path, file in relative.items():
            match = regex.fullmatch(path)
            if match:
                by_split.setdefault(match["split"], []).append(file)
        if by_split:
            break
    for patterns_by_split in ALL_DEFAULT_PATTERNS if not by_split else ():
        for split, patterns in patterns_by_split.items():
            regexes = [re.compile(glob_translate(pattern)) for pattern in patterns]
            matched = [file for path, file in relative.items() if any(regex.fullmatch(path) for regex in regexes)]
            if matched:
                by_split[str(split)] = matched
        if by_split:
            break
    named = sorted(file for split_files in by_split.values() for file in split_files)
    everything = sorted(files)
    if named != everything:
        return {"train": everything}
    return {split: sorted(split_files) for split, split_files in by_split.items()}


def _parquet_files_under(folder: Path) -> list[Path]:
    """The parquet files under `folder` that `load_dataset` reads: not hidden, not in a `__` folder (`__pycache__`)."""
    return [
        file
        for file in files_under(folder, [".parquet"])
        if not any(part.startswith("__") for part in file.relative_to(folder).parent.parts)
    ]


def _audio_column(dataset, requested: str | None, source: str) -> str:
    from datasets import Audio

    features = dataset.features or {}
    if requested is not None:
        if features and requested not in features:
            raise ValueError(f"Dataset {source} has no column {requested!r}; its columns are {list(features)}.")
        return requested
    audio_columns = [name for name, feature in features.items() if isinstance(feature, Audio)]
    if audio_columns:
        return audio_columns[0]
    if not features or "audio" in features:
        return "audio"
    raise ValueError(f"Dataset {source} has no Audio column (columns: {list(features)}); name the audio column.")


def load_audio_dataset(
    source: str,
    split: str | None = None,
    name: str | None = None,
    column: str | None = None,
    streaming: bool = False,
    keep_columns: bool = False,
):
    """
    Load `source` as a `Dataset` (or an `IterableDataset` with `streaming=True`) whose single column `audio` holds
    undecoded records, in a stable order:

    - an audio file, or a folder of them: one record `{"bytes": None, "path": absolute path}` (symbolic links not
      followed) per file, sorted by path (with `keep_columns=True`, also a column `file_name`: the path relative
      to the folder);
    - a `.parquet` file, or a folder holding parquet files (read recursively);
    - a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`;
    - otherwise a hub dataset id, loaded with `load_dataset(source, name, split=split)`.

    In a folder, when file and folder names that name splits, as in hub repos, account for every file, they make
    splits (`train/*.wav`, `test/*.wav`, `data/train-*.parquet`). `split` picks a split when the source has
    several (a source with one split needs none; an unknown split is an error, and a source without splits, such
    as an audio file or a saved `Dataset`, takes only `None` or `"train"`); `column` names the
    audio column (default: the first `Audio` feature, else `"audio"`). Audio features are read undecoded (on a
    stream, declared as their `{"bytes", "path"}` struct); so are audio columns written without the `Audio`
    metadata (`{"bytes", "path"}` structs or file paths, as pyarrow or pandas write them). Other columns are
    dropped unless `keep_columns=True`.
    """
    from datasets import Audio, Dataset, IterableDataset, load_dataset, load_from_disk

    path = Path(source)
    if path.is_dir() and _is_saved_dataset(path):
        dataset = _pick_split(load_from_disk(str(path)), split, source)
        if streaming:
            dataset = dataset.to_iterable_dataset()
    elif source.endswith(".parquet") or (path.is_dir() and _parquet_files_under(path)):
        if not path.is_dir() and not path.is_file():
            raise ValueError(f"Parquet file {source} does not exist.")
        if path.is_dir():
            by_split = _files_by_split(path, _parquet_files_under(path))
            files_by_split = {split: [os.path.abspath(file) for file in files] for split, files in by_split.items()}
        else:
            files_by_split = {"train": [os.path.abspath(source)]}
        # Escaped: load_dataset reads data_files as glob patterns, and `[v1]` in a path is a character class.
        data_files = {split: [glob.escape(file) for file in files] for split, files in files_by_split.items()}
        dataset = _pick_split(load_dataset("parquet", data_files=data_files, streaming=streaming), split, source)
    elif path.is_dir() or (path.is_file() and path.suffix.lower() in audio_io.AUDIO_EXTENSIONS):
        files = _pick_split(_files_by_split(path, audio_files_under(path)) if path.is_dir() else [path], split, source)
        # Absolute but not resolved: a symbolic link keeps its own name (a hub snapshot links every file to a
        # content-addressed blob), so that records stay known by their path in the folder.
        columns = {"audio": [os.path.abspath(file) for file in files]}
        if keep_columns:  # which file each row came from, once the audio column is gone
            columns["file_name"] = [str(file.relative_to(path)) if path.is_dir() else file.name for file in files]
        dataset = Dataset.from_dict(columns).cast_column("audio", Audio(decode=False))
        _audio_column(dataset, column, source)  # refuses a column other than "audio"
        if streaming:  # declared as every other stream's audio, so that streams of both kinds mix
            dataset = dataset.to_iterable_dataset()
    else:
        try:
            loaded = load_dataset(source, name, split=split, streaming=streaming)
        except OSError as error:  # includes the hub's "couldn't reach" and "doesn't exist" errors
            raise ValueError(
                f"{source} is not a local audio file, audio folder, parquet file or saved dataset, and it could "
                f"not be loaded as a hub dataset: {error}"
            ) from error
        # Given a split, load_dataset returns that split alone.
        dataset = loaded if split is not None else _pick_split(loaded, split, source)
    column = _audio_column(dataset, column, source)
    if isinstance(dataset, IterableDataset) and dataset.features is not None:
        return _undecoded_stream(dataset, column, keep_columns)
    if not keep_columns:
        dataset = dataset.select_columns([column])
    if column != "audio":
        dataset = dataset.rename_column(column, "audio")
    for feature_name, feature in (dataset.features or {}).items():  # kept ones too: none needs torchcodec
        if isinstance(feature, Audio):
            dataset = dataset.cast_column(feature_name, Audio(decode=False))
    plain = _plain_audio_feature((dataset.features or {}).get("audio"))
    if plain is not None:  # declared as Audio, so that the records are read alike and the dataset mixes with others
        if dataset.features["audio"] != plain:
            dataset = dataset.cast_column("audio", plain)
        dataset = dataset.cast_column("audio", Audio(decode=False))
    return dataset


def _plain_audio_feature(feature):
    """
    For an audio column written without the `Audio` metadata (by pyarrow, pandas or polars), the plain feature
    `Audio` casts from: `audio_storage()` for `{"bytes", "path"}` structs, a string `Value` for file paths (the
    large Arrow types included); `None` for any other feature.
    """
    from datasets import Value

    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        return Value("string")
    if isinstance(feature, dict) and set(feature) == {"bytes", "path"}:
        return audio_storage()
    return None


def audio_storage() -> dict:
    """The feature an undecoded `Audio` column stores (and declares on a stream): a `{"bytes", "path"}` struct."""
    from datasets import Value

    return {"bytes": Value("binary"), "path": Value("string")}


def _undecoded_stream(dataset, column: str, keep_columns: bool):
    """
    The stream with decoding off and `column` as `audio`. On a stream, datasets >= 4 encodes `Audio` values again
    in every column operation (cast, select, rename), which needs torchcodec for records holding bytes; so one map
    renames and selects instead, declaring each audio column as what it stores, a `{"bytes", "path"}` struct.
    """
    from datasets import Audio, Features, Value

    if keep_columns and column != "audio" and "audio" in dataset.features:
        raise ValueError(f"the dataset already has a column 'audio' besides the audio column {column!r}.")
    kept = [name for name in dataset.features if keep_columns or name == column]
    renamed = {name: "audio" if name == column else name for name in kept}
    holds_paths = _plain_audio_feature(dataset.features[column]) == Value("string")

    def declared(name: str):
        feature = dataset.features[name]
        if isinstance(feature, Audio) or (name == column and _plain_audio_feature(feature) is not None):
            return audio_storage()
        return feature

    features = Features({renamed[name]: declared(name) for name in kept})

    def rename(batch: dict) -> dict:
        renamed_batch = {renamed[name]: batch[name] for name in kept}
        if holds_paths:
            renamed_batch["audio"] = [{"bytes": None, "path": path} for path in renamed_batch["audio"]]
        return renamed_batch

    return dataset.decode(False).map(rename, batched=True, remove_columns=list(dataset.features), features=features)


def read_audio_record(record) -> tuple[np.ndarray, int]:
    """
    Float32 `(channels, samples)` audio and its sample rate from one record of an audio column: an undecoded
    `{"bytes", "path"}` dict (bytes win when both are set), a decoded `{"array", "sampling_rate"}` dict, or a path.
    """
    if isinstance(record, (str, Path)):
        return audio_io.load_audio(record)
    if not isinstance(record, dict):
        raise ValueError(f"An audio record must be a dict or a path, got {type(record).__name__}.")
    if record.get("array") is not None:
        if record.get("sampling_rate") is None:
            raise ValueError("A decoded audio record has an `array` but no `sampling_rate`.")
        array = audio_io.to_float_audio(np.asarray(record["array"]))
        if array.ndim not in (1, 2) or audio_io.looks_transposed(array):
            raise ValueError(
                f"A decoded audio array has shape {array.shape}; expected (samples,) or (channels, samples), as "
                "datasets' Audio feature decodes it. Transpose a (samples, channels) array such as soundfile returns."
            )
        return (array[None] if array.ndim == 1 else array), int(record["sampling_rate"])
    if record.get("bytes"):
        try:
            return audio_io.load_audio(io.BytesIO(record["bytes"]))
        except ValueError as error:
            raise ValueError(f"Cannot decode the audio bytes of {record.get('path') or 'a record'}: {error}") from error
    if record.get("path"):
        return audio_io.load_audio(record["path"])
    raise ValueError("An audio record holds neither bytes, a path nor an array.")
