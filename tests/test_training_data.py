"""Training data pipeline: sources, crops, loudness, phase shift, skipping, determinism and resumption."""

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import Dataset
from datasets.distributed import split_dataset_by_node

from modeling_dac.audio import integrated_loudness
from training.config import DacDataArguments
from training.data import (
    DacAudioCropper,
    DacDatasetSource,
    DacValidationDataset,
    build_datasets,
    build_training_dataloader,
    crop_loudness,
    load_source,
    shift_phase,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_tone_folder(folder: Path, count: int = 8, sampling_rate: int = 16000, seconds: float = 1.0) -> list[Path]:
    """`count` loud harmonic tones with distinct pitches (and a little noise): an easy dataset to learn."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    paths = []
    for index in range(count):
        pitch = 110.0 * 2 ** (index / 4)
        audio = sum(0.3 / harmonic * np.sin(2 * np.pi * pitch * harmonic * time) for harmonic in (1, 2, 3))
        audio = audio + 0.01 * rng.standard_normal(len(time))
        path = folder / f"tone_{index:02d}.wav"
        sf.write(path, audio.astype(np.float32), sampling_rate)
        paths.append(path)
    return paths



def _record(path: Path) -> dict:
    return {"bytes": None, "path": str(path)}


@pytest.fixture
def tones(tmp_path):
    return write_tone_folder(tmp_path / "tones", count=6)


def test_source_spec_parsing():
    source = DacDatasetSource.parse("org/speech, name=clean, split=train.100, column=speech, weight=2.5")
    assert source == DacDatasetSource("org/speech", name="clean", split="train.100", column="speech", weight=2.5)
    assert DacDatasetSource.parse("data/folder") == DacDatasetSource("data/folder")
    with pytest.raises(ValueError, match="not one of"):
        DacDatasetSource.parse("org/speech,rate=3")
    for weight in ("0", "-1", "abc", "", "nan", "inf"):
        with pytest.raises(ValueError, match=f"entry 'org/speech,weight={weight}': option weight= must be a positive"):
            DacDatasetSource.parse(f"org/speech,weight={weight}")


def test_local_folder_and_parquet_sources(tmp_path, tones):
    folder_dataset = load_source(DacDatasetSource(str(tones[0].parent)))
    assert folder_dataset.column_names == ["audio"]
    assert [Path(row["audio"]["path"]).name for row in folder_dataset] == [path.name for path in tones]

    # Parquet with embedded bytes under another column name, plus an unrelated column.
    table = Dataset.from_dict(
        {"speech": [{"bytes": path.read_bytes(), "path": path.name} for path in tones], "text": ["x"] * len(tones)}
    )
    table.to_parquet(tmp_path / "clips.parquet")
    parquet = load_source(DacDatasetSource(str(tmp_path / "clips.parquet"), column="speech"))
    assert parquet.column_names == ["audio"]
    assert parquet[2]["audio"]["bytes"] == tones[2].read_bytes()
    with pytest.raises(ValueError, match="has no column 'voice'"):
        load_source(DacDatasetSource(str(tmp_path / "clips.parquet"), column="voice"))

    streamed = load_source(DacDatasetSource(str(tones[0].parent)), streaming=True)
    assert len(list(streamed)) == len(tones)

    Dataset.from_dict({"audio": [str(path) for path in tones]}).save_to_disk(str(tmp_path / "saved"))
    assert len(load_source(DacDatasetSource.parse(str(tmp_path / "saved")))) == len(tones)  # split=train
    with pytest.raises(ValueError, match="has no splits, so split 'test' cannot be chosen"):
        load_source(DacDatasetSource.parse(f"{tmp_path / 'saved'},split=test"))


def test_crop_is_exact_length_loudness_normalised_and_resampled(tmp_path):
    source_rate, pitch = 22050, 440.0
    time = np.arange(source_rate) / source_rate
    path = tmp_path / "tone.flac"
    sf.write(path, (0.05 * np.sin(2 * np.pi * pitch * time)).astype(np.float32), source_rate)
    cropper = DacAudioCropper(sampling_rate=16000, num_samples=8000, random_phase_shift=False)
    crop = cropper(_record(path), np.random.default_rng(0))
    assert crop.shape == (8000,) and crop.dtype == np.float32
    # Loudness measured independently (whole crop, longer than a BS.1770 block) hits the target.
    assert integrated_loudness(crop[None], 16000) == pytest.approx(-16.0, abs=0.1)
    spectrum = np.abs(np.fft.rfft(crop * np.hanning(len(crop))))
    assert np.argmax(spectrum) * 16000 / len(crop) == pytest.approx(pitch, abs=2.0)


def test_short_crops_are_measured_as_the_released_code_does():
    # Shorter than 0.5 s: measured zero-padded to 0.5 s, so a 0.25 s tone reads about 3 dB below its own level.
    time = np.arange(4000) / 16000
    tone = (0.1 * np.sin(2 * np.pi * 300 * time)).astype(np.float32)
    padded = np.pad(tone, (0, 4000))
    assert crop_loudness(tone, 16000) == pytest.approx(integrated_loudness(padded[None], 16000), abs=1e-6)
    assert crop_loudness(np.zeros(8000, np.float32), 16000) == -70.0


def test_phase_shift_rotates_every_frequency():
    time = np.arange(1000) / 1000
    cosine = np.cos(2 * np.pi * 50 * time).astype(np.float32)
    np.testing.assert_allclose(shift_phase(cosine, -np.pi / 2), np.sin(2 * np.pi * 50 * time), atol=1e-5)
    signal = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    signal -= signal.mean()
    shifted = shift_phase(signal, 1.0)
    np.testing.assert_allclose(np.abs(np.fft.rfft(shifted)), np.abs(np.fft.rfft(signal)), rtol=1e-4, atol=1e-4)
    assert not np.allclose(shifted, signal, atol=1e-2)


def test_unusable_clips_are_classified_and_corrupt_ones_logged(tmp_path, caplog):
    cropper = DacAudioCropper(sampling_rate=16000, num_samples=8000)
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "short.wav", np.full(4000, 0.1, np.float32), 16000)
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    nan_audio = (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    nan_audio[::1000] = np.nan  # in every possible crop
    sf.write(tmp_path / "nan.wav", nan_audio, 16000, subtype="FLOAT")
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00not audio")
    expected = {"short.wav": "too_short", "silent.wav": "silent", "nan.wav": "corrupt", "broken.wav": "corrupt"}
    with caplog.at_level(logging.WARNING, logger="training.data"):
        for name, reason in expected.items():
            with pytest.raises(Exception) as raised:
                cropper(_record(tmp_path / name), rng)
            assert getattr(raised.value, "reason", None) == reason
    assert "broken.wav" in caplog.text and "nan.wav" in caplog.text


@pytest.mark.parametrize("file_rate", [16000, 44100, 22050])
def test_a_clip_exactly_as_long_as_the_crop_is_usable(tmp_path, file_rate):
    cropper = DacAudioCropper(sampling_rate=16000, num_samples=8000, random_phase_shift=False)
    time = np.arange(file_rate // 2) / file_rate  # 0.5 s: exactly 8000 samples at 16 kHz
    sf.write(tmp_path / "clip.wav", (0.1 * np.sin(2 * np.pi * 300 * time)).astype(np.float32), file_rate)
    assert cropper(_record(tmp_path / "clip.wav"), np.random.default_rng(0)).shape == (8000,)


def _batches(loader, count):
    iterator = iter(loader)
    return [next(iterator) for _ in range(count)]


def test_batches_do_not_depend_on_workers_processes_or_resumption(tones):
    records = load_source(DacDatasetSource(str(tones[0].parent)))
    cropper = DacAudioCropper(sampling_rate=16000, num_samples=2048)
    reference = _batches(build_training_dataloader(records, cropper, seed=3, per_process_batch_size=4), 4)
    assert reference[0]["audio"].shape == (4, 1, 2048)
    assert not torch.equal(reference[0]["audio"], reference[1]["audio"])

    with_workers = _batches(build_training_dataloader(records, cropper, 3, 4, num_workers=2), 4)
    resumed = _batches(build_training_dataloader(records, cropper, 3, 4, start_step=2), 2)
    two_processes = [
        _batches(build_training_dataloader(records, cropper, 3, 2, process_index=rank, num_processes=2), 4)
        for rank in (0, 1)
    ]
    for step in range(4):
        assert torch.equal(with_workers[step]["audio"], reference[step]["audio"])
        halves = torch.cat([two_processes[0][step]["audio"], two_processes[1][step]["audio"]])
        assert torch.equal(halves, reference[step]["audio"])
    for step in range(2):
        assert torch.equal(resumed[step]["audio"], reference[step + 2]["audio"])
    other_seed = _batches(build_training_dataloader(records, cropper, 4, 4), 1)
    assert not torch.equal(other_seed[0]["audio"], reference[0]["audio"])


def test_unusable_records_are_replaced_and_counted(tmp_path, tones):
    sf.write(tmp_path / "tones" / "zz_silent.wav", np.zeros(16000, np.float32), 16000)
    (tmp_path / "tones" / "zz_broken.wav").write_bytes(b"garbage")
    records = load_source(DacDatasetSource(str(tmp_path / "tones")))
    loader = build_training_dataloader(records, DacAudioCropper(16000, 2048), seed=0, per_process_batch_size=8)
    batches = _batches(loader, 6)
    assert all(batch["audio"].shape == (8, 1, 2048) for batch in batches)
    # 2 of 8 records are unusable: about a quarter of 48 draws, each replaced.
    assert sum(batch["skipped_silent"] for batch in batches) > 3
    assert sum(batch["skipped_corrupt"] for batch in batches) > 3
    assert all(batch["audio"].abs().amax(dim=-1).min() > 0.01 for batch in batches)


def test_streamed_batches_of_one_borrow_from_earlier_records(tmp_path, tones):
    sf.write(tmp_path / "tones" / "zz_silent.wav", np.zeros(16000, np.float32), 16000)
    records = load_source(DacDatasetSource(str(tmp_path / "tones")), streaming=True)
    batches = _batches(build_training_dataloader(records, DacAudioCropper(16000, 2048), 1, 1), 14)  # 2 epochs
    assert all(batch["audio"].shape == (1, 1, 2048) for batch in batches)
    assert sum(batch["skipped_silent"] for batch in batches) == 2
    assert all(batch["audio"].abs().amax() > 0.01 for batch in batches)


def test_all_short_data_fails_with_a_clear_message(tmp_path):
    write_tone_folder(tmp_path / "short", count=2, seconds=0.05)
    records = load_source(DacDatasetSource(str(tmp_path / "short")))
    loader = build_training_dataloader(records, DacAudioCropper(16000, 2048), seed=0, per_process_batch_size=1)
    with pytest.raises(RuntimeError, match="shorter than 0.13 s"):
        next(iter(loader))
    streamed = load_source(DacDatasetSource(str(tmp_path / "short")), streaming=True)
    with pytest.raises(RuntimeError, match="shorter than 0.13 s"):
        next(iter(build_training_dataloader(streamed, DacAudioCropper(16000, 2048), seed=0, per_process_batch_size=1)))


def test_streamed_batches_resume_exactly_and_do_not_depend_on_workers(tones):
    records = load_source(DacDatasetSource(str(tones[0].parent)), streaming=True)
    cropper = DacAudioCropper(sampling_rate=16000, num_samples=2048)
    # 5 batches of 2 from 6 records: the stream is read through 2 epochs, reshuffled in between.
    reference = _batches(build_training_dataloader(records, cropper, 0, 2, shuffle_buffer_size=4), 5)
    with_workers = _batches(build_training_dataloader(records, cropper, 0, 2, num_workers=2, shuffle_buffer_size=4), 5)
    resumed = _batches(build_training_dataloader(records, cropper, 0, 2, start_step=3, shuffle_buffer_size=4), 2)
    assert all(batch["audio"].shape == (2, 1, 2048) for batch in reference)
    for step in range(5):
        assert torch.equal(with_workers[step]["audio"], reference[step]["audio"])
    for offset in range(2):
        assert torch.equal(resumed[offset]["audio"], reference[3 + offset]["audio"])


def test_streamed_unusable_records_are_replaced_within_the_batch(tmp_path, tones):
    sf.write(tmp_path / "tones" / "zz_silent.wav", np.zeros(16000, np.float32), 16000)
    records = load_source(DacDatasetSource(str(tmp_path / "tones")), streaming=True)
    batches = _batches(build_training_dataloader(records, DacAudioCropper(16000, 2048), 0, 7), 3)
    assert all(batch["audio"].shape == (7, 1, 2048) for batch in batches)
    assert sum(batch["skipped_silent"] for batch in batches) == 3  # once per pass over the 7 records
    assert all(batch["audio"].abs().amax(dim=-1).min() > 0.01 for batch in batches)


def test_validation_is_held_out_and_sources_take_turns(tmp_path, caplog):
    speech = write_tone_folder(tmp_path / "speech", count=5)
    music = write_tone_folder(tmp_path / "music", count=3)
    args = DacDataArguments(dataset=[str(tmp_path / "speech"), str(tmp_path / "music")], num_validation_examples=2)
    with caplog.at_level(logging.INFO, logger="training.data"):
        train, validation = build_datasets(args, seed=0)
    assert f"Validation: the first 2 of the 5 records of {tmp_path / 'speech'} (held out of training)" in caplog.text
    held_out = [row["audio"]["path"] for row in validation]
    assert held_out == [str(path) for path in speech[:2]]
    train_paths = [row["audio"]["path"] for row in train]
    assert not set(held_out) & set(train_paths)
    # Equal weights: the two sources alternate, the shorter one cycling until both are exhausted.
    assert [Path(path).parent.name for path in train_paths[:6]] == ["speech", "music"] * 3
    assert {str(path) for path in speech[2:] + music} == set(train_paths)

    weighted = DacDataArguments(
        dataset=[str(tmp_path / "speech"), f"{tmp_path / 'music'},weight=3"], validation_dataset=[str(tmp_path / "music")]
    )
    train, validation = build_datasets(weighted, seed=0)
    assert len(validation) == 3
    # The cap applies to an explicit validation set too.
    capped = DacDataArguments(
        dataset=[str(tmp_path / "speech")], validation_dataset=[str(tmp_path / "music")], num_validation_examples=2
    )
    with caplog.at_level(logging.INFO, logger="training.data"):
        _, validation = build_datasets(capped, seed=0)
    assert [row["audio"]["path"] for row in validation] == [str(path) for path in music[:2]]
    assert "Validation: the first 2 of the 3 records of --validation_dataset (num_validation_examples=2)." in caplog.text
    parents = [Path(row["audio"]["path"]).parent.name for row in train]
    assert parents.count("music") > parents.count("speech")

    with pytest.raises(ValueError, match="too few to hold out"):
        build_datasets(DacDataArguments(dataset=[str(tmp_path / "music")], num_validation_examples=3), seed=0)


def test_streamed_folders_and_parquet_sources_mix(tmp_path, tones):
    # Hub-style parquet: an Audio column holding bytes (read without torchcodec), beside a folder of files.
    from datasets import Audio

    table = Dataset.from_dict({"audio": [{"bytes": path.read_bytes(), "path": path.name} for path in tones[:2]]})
    table.cast_column("audio", Audio()).to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    args = DacDataArguments(
        dataset=[str(tones[0].parent), str(tmp_path / "hub")], streaming=True, num_validation_examples=1
    )
    train, _ = build_datasets(args, seed=0)
    rows = [row["audio"] for row in train]  # the sources take turns, the shorter one cycling
    assert {row["path"] for row in rows if row["bytes"]} == {tones[0].name, tones[1].name}
    assert {Path(row["path"]).name for row in rows if not row["bytes"]} == {path.name for path in tones[1:]}


def test_parquet_folders_are_read_as_load_dataset_reads_them(tmp_path, tones):
    # Hidden files and folders and `__` folders are left out; a file whose name starts with `__` is read.
    files = [("__part-0.parquet", tones[0]), ("__pycache__/x.parquet", tones[1]), (".h/y.parquet", tones[2])]
    for relative, tone in files:
        (tmp_path / "pq" / relative).parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_dict({"audio": [{"bytes": tone.read_bytes(), "path": tone.name}]}).to_parquet(
            str(tmp_path / "pq" / relative)
        )
    assert [row["audio"]["path"] for row in load_source(DacDatasetSource(str(tmp_path / "pq")))] == [tones[0].name]


@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streamed"])
def test_sources_without_audio_metadata_mix_with_folders(tmp_path, tones, streaming):
    # Parquet written by pyarrow: plain {bytes, path} structs, and file paths in the large Arrow string type
    # (polars' default); and a saved dataset of file paths.
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "plain").mkdir()
    records = [{"bytes": path.read_bytes(), "path": path.name} for path in tones[:2]]
    pq.write_table(pa.table({"audio": records}), tmp_path / "plain" / "data.parquet")
    paths = pa.array([str(path) for path in tones[4:]], type=pa.large_string())
    pq.write_table(pa.table({"audio": paths}), tmp_path / "paths.parquet")
    Dataset.from_dict({"file": [str(path) for path in tones[2:4]]}).save_to_disk(str(tmp_path / "paths"))
    sources = [
        str(tones[0].parent),
        str(tmp_path / "plain"),
        f"{tmp_path / 'paths'},column=file",
        str(tmp_path / "paths.parquet"),
    ]
    args = DacDataArguments(dataset=sources, num_validation_examples=1, streaming=streaming)
    train, _ = build_datasets(args, seed=0)
    rows = [row["audio"] for row in itertools.islice(train, 40)]
    assert {row["path"] for row in rows if row["bytes"]} == {tones[0].name, tones[1].name}
    assert {row["path"] for row in rows if not row["bytes"]} >= {str(path) for path in tones[2:]}


def test_a_path_record_crops_as_its_file_record_does(tones):
    cropper = DacAudioCropper(sampling_rate=16000, num_samples=4096)
    from_record = cropper(_record(tones[0]), np.random.default_rng(0))
    np.testing.assert_array_equal(cropper(str(tones[0]), np.random.default_rng(0)), from_record)


def test_validation_crops_are_fixed(tones):
    records = load_source(DacDatasetSource(str(tones[0].parent)))
    dataset = DacValidationDataset(records, DacAudioCropper(16000, 4096), seed=0)
    first, again = dataset[1], dataset[1]
    assert torch.equal(first["audio"], again["audio"]) and first["audio"].shape == (1, 4096)


def test_decoded_array_records_crop_as_their_files_do(tmp_path):
    rng = np.random.default_rng(1)
    stereo = (0.1 * rng.standard_normal((22050, 2))).astype(np.float32)
    sf.write(tmp_path / "noise.wav", stereo, 22050, subtype="FLOAT")
    cropper = DacAudioCropper(sampling_rate=16000, num_samples=4096)
    from_file = cropper(_record(tmp_path / "noise.wav"), np.random.default_rng(0))
    from_array = cropper({"array": stereo.T.tolist(), "sampling_rate": 22050}, np.random.default_rng(0))
    np.testing.assert_array_equal(from_array, from_file)


def test_a_record_without_audio_is_skipped_as_corrupt(caplog):
    # A null cell of the audio column (a parquet or hub dataset with a missing clip) reads as None.
    cropper = DacAudioCropper(sampling_rate=16000, num_samples=2048)
    with caplog.at_level(logging.WARNING, logger="training.data"), pytest.raises(Exception) as raised:
        cropper(None, np.random.default_rng(0))
    assert getattr(raised.value, "reason", None) == "corrupt"
    assert "no audio" in caplog.text


def test_streamed_validation_records_stay_out_of_every_process_share(tmp_path, tones):
    # Several parquet files make a stream of several shards, which split_dataset_by_node deals out whole.
    for part in range(2):
        rows = [{"bytes": path.read_bytes(), "path": path.name} for path in tones[3 * part : 3 * part + 3]]
        Dataset.from_dict({"audio": rows}).to_parquet(tmp_path / "parquet" / f"part{part}.parquet")
    args = DacDataArguments(dataset=[str(tmp_path / "parquet")], streaming=True, num_validation_examples=2)
    train, validation = build_datasets(args, seed=0)
    held_out = {row["audio"]["path"] for row in validation}
    assert held_out == {tones[0].name, tones[1].name}
    shares = [
        [row["audio"]["path"] for row in split_dataset_by_node(train, rank=rank, world_size=2)] for rank in (0, 1)
    ]
    assert not held_out & {path for share in shares for path in share}
    assert sorted(shares[0] + shares[1]) == [path.name for path in tones[2:]]
