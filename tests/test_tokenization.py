"""Dataset tokenization: batched codes equal per-clip codes, columns, storage, stereo policies, streaming, CLI,
and `accelerate launch` over two processes."""

import functools
import io
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile
import soxr
import torch

from docs_examples import REPO, run_markdown_examples
from modeling_dac import DacConfig, DacModel
from modeling_dac.cli import main as cli_main
from modeling_dac.tokenization import (
    encode_clips,
    merge_tokenized_shards,
    save_tokenized_dataset,
    tokenize_dataset,
    tokenized_features,
)

RATE = 16000  # the tiny config's rate
HOP = 320


def _tiny_model(seed: int = 0) -> DacModel:
    """The tiny config with random weights and random biases: with zero biases, padding would leave the
    encoder's activations at zero and batching could not change a code, making the tests vacuous."""
    torch.manual_seed(seed)
    model = DacModel(DacConfig.from_pretrained(REPO / "hub_configs" / "tiny")).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.2)
    return model


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


@torch.inference_mode()
def _alone(model: DacModel, clip: np.ndarray, n_quantizers=None) -> torch.Tensor:
    return model.encode(torch.from_numpy(clip)[None, None], n_quantizers=n_quantizers).audio_codes[0]


def _clips(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.3 * rng.standard_normal(length)).astype(np.float32) for length in lengths]


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """Five wavs: 24 kHz (resampled) and 16 kHz, two stereo, one int16, lengths from 0.1 s to 0.6 s: both sides of
    the 17-frame tail window of `encode_clips`."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(1)
    specs = [(24000, 1, 0.1), (24000, 2, 0.6), (16000, 1, 0.45), (24000, 1, 0.25), (16000, 2, 0.5)]
    for index, (rate, channels, seconds) in enumerate(specs):
        audio = (0.3 * rng.standard_normal((int(rate * seconds), channels))).astype(np.float32)
        subtype = "PCM_16" if index == 2 else "FLOAT"
        soundfile.write(folder / f"clip_{index}.wav", audio, rate, subtype=subtype)
    return folder


def _paths(folder):
    return sorted(str(path) for path in folder.glob("*.wav"))


@functools.cache
def _expected_codes(model, path, stereo="mean"):
    """What one file should encode to, computed independently: soundfile, channel policy, soxr, encode alone."""
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    channels = {"mean": audio.mean(1, keepdims=True), "first": audio[:, :1], "fold": audio}[stereo]
    rows = [channels[:, c] for c in range(channels.shape[1])]
    if rate != RATE:
        rows = [soxr.resample(row, rate, RATE, quality="HQ") for row in rows]
    rows = [np.ascontiguousarray(row, dtype=np.float32) for row in rows]
    codes = torch.stack([_alone(model, row) for row in rows]).numpy()
    return codes if stereo == "fold" else codes[0]


def _dataset(folder):
    paths = _paths(folder)
    return datasets.Dataset.from_dict(
        {"audio": paths, "text": [f"clip {i}" for i in range(len(paths))], "speaker": list(range(len(paths)))}
    ).cast_column("audio", datasets.Audio(decode=False))


# Exact batching


def test_batched_codes_equal_codes_alone_for_every_frame(model):
    # Lengths on both sides of the tail window (W = 17 frames = 5440 samples here: 5120 is 16 frames, 5121 is 17),
    # hop multiples and not, one sample.
    lengths = [1, 319, 2813, 5120, 5121, 6500, 7777]
    clips = _clips(lengths)
    for n_quantizers, subset in ((None, clips), (2, clips[-2:])):
        batched = encode_clips(model, subset, n_quantizers=n_quantizers)
        for clip, codes in zip(subset, batched):
            alone = _alone(model, clip, n_quantizers)
            assert codes.shape == alone.shape == (n_quantizers or 4, math.ceil(len(clip) / HOP))
            assert torch.equal(codes, alone)


def test_plain_padded_batch_would_change_the_last_frames(model):
    """The stitching is needed: padding the short clip to the long one changes codes at its end."""
    clips = _clips([9000, 33333], seed=3)
    with torch.inference_mode():
        padded = torch.zeros(2, 1, 33333)
        mask = torch.zeros(2, 33333, dtype=torch.long)
        for row, clip in enumerate(clips):
            padded[row, 0, : len(clip)] = torch.from_numpy(clip)
            mask[row, : len(clip)] = 1
        naive = model.encode(padded, padding_mask=mask).audio_codes[0, :, : math.ceil(9000 / HOP)]
    alone = _alone(model, clips[0])
    assert not torch.equal(naive, alone)
    assert torch.equal(encode_clips(model, clips)[0], alone)


def test_encode_clips_rejects_bad_input(model):
    with pytest.raises(ValueError, match="clip 1 must be non-empty 1-D"):
        encode_clips(model, [np.zeros(100, np.float32), np.zeros((2, 100), np.float32)])
    with pytest.raises(ValueError, match="eval mode"):
        encode_clips(_tiny_model().train(), [np.zeros(100, np.float32)])


# tokenize_dataset


def test_tokenize_dataset_codes_columns_and_storage(model, audio_dir):
    dataset = _dataset(audio_dir)
    tokenized = tokenize_dataset(dataset, model, batch_size=3)
    assert tokenized.column_names == ["text", "speaker", "audio_codes", "n_frames"]
    assert tokenized["text"] == dataset["text"] and tokenized["speaker"] == dataset["speaker"]
    assert str(tokenized.data.column("audio_codes").type) == "list<item: list<item: int16>>"
    for path, row in zip(_paths(audio_dir), tokenized.with_format("numpy", dtype=None)):
        expected = _expected_codes(model, path)
        np.testing.assert_array_equal(row["audio_codes"], expected)
        assert row["audio_codes"].dtype == np.int16
        info = soundfile.info(path)
        assert row["n_frames"] == expected.shape[-1] == math.ceil(round(info.frames * RATE / info.samplerate) / HOP)


@pytest.mark.parametrize("stereo", ["first", "fold"])
def test_stereo_policies(model, audio_dir, stereo):
    stereo_paths = [path for path in _paths(audio_dir) if soundfile.info(path).channels == 2]
    dataset = datasets.Dataset.from_dict({"audio": stereo_paths}).cast_column("audio", datasets.Audio(decode=False))
    tokenized = tokenize_dataset(dataset, model, stereo=stereo)
    for path, row in zip(stereo_paths, tokenized.with_format("numpy", dtype=None)):
        expected = _expected_codes(model, path, stereo)
        assert expected.shape[0] == (2 if stereo == "fold" else 4)
        np.testing.assert_array_equal(row["audio_codes"], expected)
        assert row["n_frames"] == expected.shape[-1]


def test_one_clip_per_batch_and_fewer_codebooks(model, audio_dir):
    """Batch size 1 gives the same codes as the batches of 3 above: the per-clip codes, here cut to 3 codebooks."""
    tokenized = tokenize_dataset(_dataset(audio_dir), model, batch_size=1, n_quantizers=3)
    for path, codes in zip(_paths(audio_dir), tokenized["audio_codes"]):
        np.testing.assert_array_equal(np.array(codes), _expected_codes(model, path)[:3])


def test_streaming_dataset_gives_the_same_codes_and_saves(model, audio_dir, tmp_path):
    dataset = _dataset(audio_dir)
    streamed = tokenize_dataset(dataset.to_iterable_dataset(num_shards=2), model, batch_size=2, keep_audio=True)
    assert isinstance(streamed, datasets.IterableDataset)
    saved = save_tokenized_dataset(streamed, tmp_path / "out")
    assert saved.column_names == ["audio", "text", "speaker", "audio_codes", "n_frames"]
    assert saved["text"] == dataset["text"]
    # The kept audio column is undecoded; save_to_disk embeds the files' bytes.
    assert [record["bytes"] for record in saved["audio"]] == [Path(path).read_bytes() for path in _paths(audio_dir)]
    for path, codes, frames in zip(_paths(audio_dir), saved["audio_codes"], saved["n_frames"]):
        np.testing.assert_array_equal(np.array(codes), _expected_codes(model, path))
        assert frames == len(codes[0])
    with pytest.raises(ValueError, match="already exists and is not empty"):
        save_tokenized_dataset(saved, tmp_path / "out")
    assert [path.name for path in tmp_path.iterdir()] == ["out"]  # no temporary directory left behind


def test_streamed_and_mapped_rows_hold_the_same_python_types(model, audio_dir):
    dataset = _dataset(audio_dir)
    mapped = tokenize_dataset(dataset, model)[0]
    streamed = next(iter(tokenize_dataset(dataset.to_iterable_dataset(), model)))
    for row in (mapped, streamed):
        assert isinstance(row["audio_codes"], list) and isinstance(row["audio_codes"][0][0], int)
        assert isinstance(row["n_frames"], int)
    assert streamed["audio_codes"] == mapped["audio_codes"]


def test_streaming_dataset_without_declared_features(model, audio_dir, tmp_path):
    paths = _paths(audio_dir)[:2]

    def rows(column):
        yield from ({column: {"bytes": None, "path": path}} for path in paths)

    undeclared = datasets.IterableDataset.from_generator(rows, gen_kwargs={"column": "audio"})
    assert undeclared.features is None
    saved = save_tokenized_dataset(tokenize_dataset(undeclared, model), tmp_path / "out")
    assert saved.features["n_frames"] == datasets.Value("int32")
    np.testing.assert_array_equal(np.array(saved[1]["audio_codes"]), _expected_codes(model, paths[1]))
    misnamed = datasets.IterableDataset.from_generator(rows, gen_kwargs={"column": "sound"})
    with pytest.raises(ValueError, match="no column 'audio'; its columns are \\['sound'\\]"):
        next(iter(tokenize_dataset(misnamed, model)))


def test_records_as_bytes_paths_and_arrays(model, audio_dir):
    paths = _paths(audio_dir)[:2]
    audio, rate = soundfile.read(paths[1], dtype="float32", always_2d=True)
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format="WAV", subtype="FLOAT")
    records = [
        {"bytes": buffer.getvalue(), "path": None},
        {"bytes": None, "path": paths[0]},
    ]
    dataset = datasets.Dataset.from_dict({"audio": records}).cast_column("audio", datasets.Audio(decode=False))
    tokenized = tokenize_dataset(dataset, model)
    np.testing.assert_array_equal(np.array(tokenized[0]["audio_codes"]), _expected_codes(model, paths[1]))
    np.testing.assert_array_equal(np.array(tokenized[1]["audio_codes"]), _expected_codes(model, paths[0]))
    # Decoded arrays (e.g. a column built in memory) work too.
    arrays = datasets.Dataset.from_dict({"sound": [{"array": audio.T.tolist(), "sampling_rate": rate}]})
    codes = tokenize_dataset(arrays, model, audio_column="sound")[0]["audio_codes"]
    np.testing.assert_array_equal(np.array(codes), _expected_codes(model, paths[1]))
    samples_by_channels = datasets.Dataset.from_dict({"sound": [{"array": audio.tolist(), "sampling_rate": rate}]})
    with pytest.raises(ValueError, match=r"has shape \(\d+, 2\); expected \(samples,\) or \(channels, samples\)"):
        tokenize_dataset(samples_by_channels, model, audio_column="sound")


def test_tokenize_dataset_errors(model, audio_dir):
    dataset = _dataset(audio_dir)
    with pytest.raises(ValueError, match="stereo must be one of"):
        tokenize_dataset(dataset, model, stereo="left")
    with pytest.raises(ValueError, match="no column 'sound'"):
        tokenize_dataset(dataset, model, audio_column="sound")
    with pytest.raises(ValueError, match="n_quantizers` must be between 1 and n_codebooks=4"):
        tokenize_dataset(dataset, model, n_quantizers=5)
    with pytest.raises(ValueError, match="n_quantizers` must be an int or None"):
        tokenize_dataset(dataset, model, n_quantizers=2.0)
    with pytest.raises(ValueError, match="already has a column 'text'"):
        tokenize_dataset(dataset, model, codes_column="text")
    with pytest.raises(ValueError, match="training mode"):
        tokenize_dataset(dataset, _tiny_model().train())


def test_a_clip_that_cannot_be_tokenized_is_named(model, tmp_path):
    soundfile.write(tmp_path / "short.wav", np.array([0.5], np.float32), 96000)  # under one sample at 24 kHz
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), RATE)
    for name, reason in [("short.wav", "too short to resample"), ("empty.wav", "holds no samples")]:
        dataset = datasets.Dataset.from_dict({"audio": [str(tmp_path / name)]})
        with pytest.raises(ValueError, match=f"cannot tokenize {tmp_path / name}: .*{reason}"):
            tokenize_dataset(dataset.cast_column("audio", datasets.Audio(decode=False)), model)


def test_records_that_cannot_be_tokenized_can_be_skipped_and_listed(model, audio_dir, tmp_path):
    (tmp_path / "broken.wav").write_text("not audio")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), RATE)
    paths = [_paths(audio_dir)[0], str(tmp_path / "broken.wav"), _paths(audio_dir)[2], str(tmp_path / "empty.wav")]
    source = datasets.Dataset.from_dict({"audio": paths, "text": ["a", "broken", "c", "empty"]})
    source.cast_column("audio", datasets.Audio(decode=False)).save_to_disk(str(tmp_path / "source"))
    source = datasets.load_from_disk(str(tmp_path / "source"))  # backed by files: its maps are cached
    expected = [_expected_codes(model, paths[0]), _expected_codes(model, paths[2])]
    skipped_names = ["broken.wav", "empty.wav"]  # save_to_disk embeds the files' bytes under their names
    for _ in range(2):  # the second map comes from the cache file, and still reports the skipped records
        skipped = []
        with pytest.warns(UserWarning) as record:
            tokenized = tokenize_dataset(source, model, skipped=skipped, cache_file_name=tmp_path / "codes.arrow")
        assert [entry["name"] for entry in skipped] == skipped_names
        assert "Format not recognised" in skipped[0]["reason"] and "holds no samples" in skipped[1]["reason"]
        assert [str(warning.message).split(":")[0] for warning in record] == [f"skipped {n}" for n in skipped_names]
        assert tokenized.column_names == ["text", "audio_codes", "n_frames"] and tokenized["text"] == ["a", "c"]
        for codes, want in zip(tokenized["audio_codes"], expected):
            np.testing.assert_array_equal(np.array(codes), want)
    skipped = []
    with pytest.warns(UserWarning, match="skipped"):
        streamed = list(tokenize_dataset(source.to_iterable_dataset(), model, skipped=skipped, stereo="fold"))
    assert [row["text"] for row in streamed] == ["a", "c"] and len(skipped) == 2
    assert list(streamed[0]) == ["text", "audio_codes", "n_frames"]


def test_int32_storage_above_int16_range():
    big = DacConfig(codebook_size=65536)
    small = DacConfig(codebook_size=32768)
    assert str(tokenized_features(big)["audio_codes"].feature.feature.dtype) == "int32"
    assert str(tokenized_features(small)["audio_codes"].feature.feature.dtype) == "int16"


def test_merge_shards_keeps_rank_order(model, audio_dir, tmp_path):
    from datasets.distributed import split_dataset_by_node

    dataset = _dataset(audio_dir)
    shards = []
    for rank in range(2):
        shard = split_dataset_by_node(dataset, rank=rank, world_size=2)
        shards.append(tmp_path / f"shard{rank}")
        save_tokenized_dataset(tokenize_dataset(shard, model), shards[-1])
    merged = merge_tokenized_shards(shards, tmp_path / "merged")
    assert merged["text"] == dataset["text"]
    for path, codes in zip(_paths(audio_dir), merged["audio_codes"]):
        np.testing.assert_array_equal(np.array(codes), _expected_codes(model, path))


# CLI


@pytest.fixture(scope="module")
def saved_model(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return folder


def test_cli_on_parquet_keeps_columns_pushes_and_never_overwrites(saved_model, audio_dir, tmp_path, model, monkeypatch,
                                                                 capsys):
    records = [{"bytes": open(path, "rb").read(), "path": os.path.basename(path)} for path in _paths(audio_dir)[:2]]
    table = datasets.Dataset.from_dict({"audio": records, "text": [f"t{i}" for i in range(len(records))]})
    table.cast_column("audio", datasets.Audio(decode=False)).to_parquet(str(tmp_path / "data.parquet"))
    pushed = {}
    monkeypatch.setattr(
        datasets.Dataset, "push_to_hub", lambda self, repo, **kwargs: pushed.update(repo=repo, rows=self.to_dict())
    )
    argv = ["tokenize", str(tmp_path / "data.parquet"), str(tmp_path / "out"), "--model", str(saved_model)]
    assert cli_main(argv + ["--stereo", "fold", "--n-quantizers", "2", "--push-to-hub", "me/tokens"]) == 0
    result = datasets.load_from_disk(str(tmp_path / "out"))
    assert result.column_names == ["text", "audio_codes", "n_frames"]
    assert result["text"] == [f"t{i}" for i in range(len(records))]
    expected = _expected_codes(model, _paths(audio_dir)[1], stereo="fold")[:, :2]
    np.testing.assert_array_equal(np.array(result[1]["audio_codes"]), expected)
    assert pushed == {"repo": "me/tokens", "rows": result.to_dict()}
    assert "Tokenized 2 clip(s)" in capsys.readouterr().out
    assert cli_main(argv) == 1  # the output directory is never overwritten
    assert "already exists and is not empty" in capsys.readouterr().err


def test_cli_writes_nothing_into_a_save_to_disk_source(saved_model, audio_dir, tmp_path, model):
    _dataset(audio_dir).save_to_disk(str(tmp_path / "source"))
    before = sorted(path.relative_to(tmp_path) for path in (tmp_path / "source").rglob("*"))
    (tmp_path / f".out.{'0123abcd' * 4}.tmp" / "cache").mkdir(parents=True)  # what a killed run left
    (tmp_path / f".out.test.{'0123abcd' * 4}.tmp").mkdir()  # another output's save, maybe running: kept
    assert cli_main(["tokenize", str(tmp_path / "source"), str(tmp_path / "out"), "--model", str(saved_model)]) == 0
    assert sorted(path.relative_to(tmp_path) for path in (tmp_path / "source").rglob("*")) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == [f".out.test.{'0123abcd' * 4}.tmp", "out", "source"]
    result = datasets.load_from_disk(str(tmp_path / "out"))
    np.testing.assert_array_equal(np.array(result[2]["audio_codes"]), _expected_codes(model, _paths(audio_dir)[2]))


def test_cli_streams_a_parquet_file_that_declares_decoded_audio(saved_model, audio_dir, tmp_path, model):
    # As hub datasets declare it: Audio(decode=True), records holding bytes; read without torchcodec all the same.
    records = [{"bytes": open(path, "rb").read(), "path": os.path.basename(path)} for path in _paths(audio_dir)[:2]]
    table = datasets.Dataset.from_dict({"audio": records, "label": [0, 1]})
    table = table.cast_column("label", datasets.ClassLabel(names=["speech", "music"]))
    table.cast_column("audio", datasets.Audio()).to_parquet(str(tmp_path / "data.parquet"))
    argv = ["tokenize", str(tmp_path / "data.parquet"), str(tmp_path / "out"), "--model", str(saved_model)]
    assert cli_main(argv + ["--streaming", "--keep-audio"]) == 0
    result = datasets.load_from_disk(str(tmp_path / "out"))
    assert result.column_names == ["audio", "label", "audio_codes", "n_frames"]
    assert result.features["label"] == datasets.ClassLabel(names=["speech", "music"])  # the column types stay
    assert result.features["audio"] == datasets.Audio(decode=False)  # as without --streaming
    assert result[1]["audio"] == records[1]
    np.testing.assert_array_equal(np.array(result[1]["audio_codes"]), _expected_codes(model, _paths(audio_dir)[1]))


def test_cli_on_a_folder_keeps_each_row_file_name(saved_model, audio_dir, tmp_path, model):
    folder = shutil.copytree(audio_dir, tmp_path / "clips")
    # Hidden files and folders are left out: macOS resource forks, caches, a parquet file in a hidden folder.
    (folder / "._clip_0.wav").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    (folder / ".cache").mkdir()
    shutil.copy(folder / "clip_0.wav", folder / ".cache" / "copy.wav")
    (folder / ".meta").mkdir()
    _dataset(audio_dir).to_parquet(str(folder / ".meta" / "clips.parquet"))
    assert cli_main(["tokenize", str(folder), str(tmp_path / "out"), "--model", str(saved_model)]) == 0
    result = datasets.load_from_disk(str(tmp_path / "out"))
    assert result.column_names == ["file_name", "audio_codes", "n_frames"]
    assert result["file_name"] == [os.path.basename(path) for path in _paths(audio_dir)]
    np.testing.assert_array_equal(np.array(result[3]["audio_codes"]), _expected_codes(model, _paths(audio_dir)[3]))


def test_cli_skips_unreadable_files_lists_them_and_fails_only_when_nothing_is_left(
    saved_model, audio_dir, tmp_path, model, capsys
):
    folder = shutil.copytree(audio_dir, tmp_path / "clips")
    (folder / "notaudio.wav").write_text("hello")
    soundfile.write(folder / "silence_of_nothing.wav", np.zeros(0, np.float32), RATE)
    assert cli_main(["tokenize", str(folder), str(tmp_path / "out"), "--model", str(saved_model)]) == 0
    captured = capsys.readouterr()
    assert f"dac tokenize: warning: skipped {folder / 'notaudio.wav'}: " in captured.err
    assert f"skipped 2 record(s) that could not be read:\n  {folder / 'notaudio.wav'}: Cannot read audio file" in (
        captured.err
    )
    assert f"\n  {folder / 'silence_of_nothing.wav'}: " in captured.err
    assert "Tokenized 5 clip(s)" in captured.out and "; skipped 2 unreadable record(s), listed above" in captured.out
    result = datasets.load_from_disk(str(tmp_path / "out"))
    assert result["file_name"] == [os.path.basename(path) for path in _paths(audio_dir)]
    np.testing.assert_array_equal(np.array(result[4]["audio_codes"]), _expected_codes(model, _paths(audio_dir)[4]))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clips", "out"]  # no scratch space left

    (tmp_path / "bad").mkdir()
    shutil.copy(folder / "notaudio.wav", tmp_path / "bad" / "notaudio.wav")
    assert cli_main(["tokenize", str(tmp_path / "bad"), str(tmp_path / "nothing"), "--model", str(saved_model)]) == 1
    err = capsys.readouterr().err
    assert f"skipped 1 record(s) that could not be read:\n  {tmp_path / 'bad' / 'notaudio.wav'}: " in err
    nothing = f"nothing in {tmp_path / 'bad'} could be tokenized; {tmp_path / 'nothing'} was not written."
    assert err.endswith(f"dac tokenize: error: {nothing}\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad", "clips", "out"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_accelerate_launch_two_processes_equals_one(saved_model, audio_dir, tmp_path, model):
    accelerate = [sys.executable, "-m", "accelerate.commands.launch"]
    options = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    options += ["--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    folder = shutil.copytree(audio_dir, tmp_path / "clips")
    (folder / "zz_notaudio.wav").write_text("hello")  # sorted last: skipped by the second process
    command = ["-m", "modeling_dac.cli", "tokenize", str(folder), str(tmp_path / "out"), "--model", str(saved_model)]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    stale_shard = tmp_path / ".out.shards" / "00000-of-00002"  # left by an earlier run that failed: not reused
    stale_shard.mkdir(parents=True)
    (stale_shard / "state.json").write_text("{}")
    completed = subprocess.run(
        accelerate + options + command + ["--cpu"], env=environment, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "with 2 process(es)" in completed.stdout
    assert f"skipped 1 record(s) that could not be read:\n  {folder / 'zz_notaudio.wav'}: " in completed.stderr
    result = datasets.load_from_disk(str(tmp_path / "out"))
    for path, codes in zip(_paths(audio_dir), result["audio_codes"]):
        np.testing.assert_array_equal(np.array(codes), _expected_codes(model, path))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clips", "out"]  # shards merged and removed


def test_cli_refuses_more_processes_than_rows(saved_model, audio_dir, tmp_path, monkeypatch, capsys):
    import contextlib

    import accelerate

    class SecondOfTwoProcesses:  # what rank 1 of `accelerate launch --num_processes 2` sees, without launching
        num_processes, process_index, is_main_process, device = 2, 1, False, torch.device("cpu")

        def __init__(self, cpu=False):
            pass

        main_process_first = staticmethod(contextlib.nullcontext)

    monkeypatch.setattr(accelerate, "PartialState", SecondOfTwoProcesses)
    (tmp_path / "one").mkdir()
    os.symlink(_paths(audio_dir)[0], tmp_path / "one" / "clip.wav")
    argv = ["tokenize", str(tmp_path / "one"), str(tmp_path / "out"), "--model", str(saved_model)]
    assert cli_main(argv) == 1
    assert "has 1 row(s), fewer than the 2 processes" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_docs_page_examples_run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    run_markdown_examples(REPO / "docs" / "tokenize.md")
