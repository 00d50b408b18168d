"""Tests for `dac eval` (modeling_dac.evaluation and its report, plots and dataset loading).

A random-weight tiny model and synthesised clips, written here with soundfile: the numbers are meaningless, so the
tests check invariants instead: reported values equal the metrics recomputed independently for a clip, the
aggregate is the mean with a Student-t interval, prefix decoding equals encoding at each bitrate, and a rerun
skips the work already in results.jsonl.
"""

import json
import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile
import torch

from modeling_dac import DacConfig, DacModel
from modeling_dac.audio_datasets import load_audio_dataset, read_audio_record
from modeling_dac.cli import main
from modeling_dac.evaluation import evaluate_model, reconstruct_at_bitrates
from modeling_dac.evaluation_report import mean_confidence_interval
from modeling_dac.metrics import mel_distance, si_sdr, stft_distance

REPOSITORY = Path(__file__).resolve().parent.parent
SAMPLING_RATE = 16000  # hub_configs/tiny
CLIP_SAMPLES = 9600  # 0.6 s
# Student's t quantiles t(0.975, dof), from tables.
T_975 = {2: 4.302652729911275, 4: 2.7764451051977987}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tone_with_noise(length: int, sampling_rate: int, frequency: float, seed: int) -> np.ndarray:
    time = np.arange(length) / sampling_rate
    noise = np.random.default_rng(seed).standard_normal(length)
    return (0.3 * np.sin(2 * np.pi * frequency * time) + 0.02 * noise).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # The tiny model's convolutions are fastest on one thread, and far slower with several on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A saved random-weight tiny model and a folder of 3 usable clips, one too short, one corrupt, one with NaN."""
    root = tmp_path_factory.mktemp("evaluation")
    torch.manual_seed(0)
    DacModel(DacConfig.from_pretrained(REPOSITORY / "hub_configs" / "tiny")).save_pretrained(root / "model")
    clips = root / "clips"
    (clips / "nested").mkdir(parents=True)
    soundfile.write(clips / "a_tone.wav", tone_with_noise(CLIP_SAMPLES, SAMPLING_RATE, 330, 1), SAMPLING_RATE)
    stereo = np.stack([tone_with_noise(13230, 22050, 550, 2), tone_with_noise(13230, 22050, 770, 3)], axis=1)
    soundfile.write(clips / "b_stereo.wav", stereo, 22050)
    noise = tone_with_noise(CLIP_SAMPLES, SAMPLING_RATE, 0, 4)
    soundfile.write(clips / "nested" / "c_noise.flac", noise, SAMPLING_RATE)
    soundfile.write(clips / "d_short.wav", tone_with_noise(480, SAMPLING_RATE, 440, 5), SAMPLING_RATE)
    (clips / "e_corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    with_nan = tone_with_noise(CLIP_SAMPLES, SAMPLING_RATE, 440, 6)
    with_nan[100] = np.nan
    soundfile.write(clips / "f_nan.wav", with_nan, SAMPLING_RATE, subtype="FLOAT")
    return root


def eval_arguments(workspace: Path, output: Path, *extra: str) -> list[str]:
    paths = ["--model", str(workspace / "model"), "--data", str(workspace / "clips"), "--output", str(output)]
    return ["eval", *paths, "--no-progress", *extra]


BASE_OPTIONS = ("--n-quantizers", "4,1,2", "--metrics", "mel,stft,sisdr", "--spectrogram-clips", "2")


@pytest.fixture(scope="module")
def evaluated(workspace) -> tuple[Path, dict]:
    output = workspace / "report"
    assert main(eval_arguments(workspace, output, *BASE_OPTIONS)) == 0
    return output, json.loads((output / "report.json").read_text())


@pytest.fixture
def count_encodes(monkeypatch) -> list:
    calls = []
    original = DacModel.encode

    def counting_encode(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DacModel, "encode", counting_encode)
    return calls


def test_cli_writes_results_report_and_plots(evaluated):
    output, report = evaluated
    for name in ("report.json", "report.md", "results.jsonl", "run.json"):
        assert (output / name).is_file()
    pngs = [output / "metrics_vs_bitrate.png", *sorted((output / "spectrograms").iterdir())]
    assert [path.name for path in pngs[1:]] == ["000_a_tone.png", "001_b_stereo.png"]
    assert all(path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 5000 for path in pngs)

    assert report["num_clips"] == 3
    assert {clip["clip_id"] for clip in report["clips"]} == {"a_tone.wav", "b_stereo.wav", "nested/c_noise.flac"}
    assert sorted(skipped["name"] for skipped in report["skipped"]) == ["d_short.wav", "e_corrupt.wav", "f_nan.wav"]
    assert "NaN or infinite" in next(item["reason"] for item in report["skipped"] if item["name"] == "f_nan.wav")
    # 6 bits per code (64 entries) at 16000 / 320 = 50 frames per second.
    assert [(row["n_quantizers"], row["bitrate_kbps"]) for row in report["aggregate"]] == [(1, 0.3), (2, 0.6), (4, 1.2)]
    assert len((output / "results.jsonl").read_text().splitlines()) == 9
    assert all(row["metrics"].keys() == {"mel_distance", "stft_distance", "si_sdr"} for row in report["aggregate"])


def test_markdown_table_has_the_papers_columns_and_the_aggregate(evaluated):
    output, report = evaluated
    markdown = (output / "report.md").read_text()
    assert "| bitrate (kbps) | codebooks | mel distance ↓ | STFT distance ↓ | SI-SDR (dB) ↑ |" in markdown
    assert "ViSQOL ↑" not in markdown
    for row in report["aggregate"]:
        mel = row["metrics"]["mel_distance"]
        cell = f"{mel['mean']:.3f} ± {(mel['ci_high'] - mel['ci_low']) / 2:.3f}"
        line_start = rf"^\| {row['bitrate_kbps']:.2f} \| {row['n_quantizers']} \| "
        assert re.search(line_start + re.escape(cell) + r" \|", markdown, re.M)


def test_reported_values_equal_metrics_recomputed_directly(workspace, evaluated):
    _, report = evaluated
    model = DacModel.from_pretrained(workspace / "model").eval()
    original, rate = soundfile.read(workspace / "clips" / "a_tone.wav", dtype="float32")
    assert rate == SAMPLING_RATE
    meter = pyloudnorm.Meter(SAMPLING_RATE)
    for n_quantizers in (1, 2, 4):
        with torch.no_grad():
            # forward() encodes with n_quantizers and decodes the quantized latent: no prefix decoding involved.
            output = model(torch.from_numpy(original)[None, None], n_quantizers=n_quantizers)
        reconstruction = output.audio_values[0, 0].numpy().astype(np.float64)
        gain_db = meter.integrated_loudness(original.astype(np.float64)) - meter.integrated_loudness(reconstruction)
        reconstruction = (reconstruction * 10 ** (gain_db / 20)).astype(np.float32)
        row = next(c for c in report["clips"] if c["clip_id"] == "a_tone.wav" and c["n_quantizers"] == n_quantizers)
        assert row["duration_seconds"] == pytest.approx(0.6)
        assert row["mel_distance"] == pytest.approx(mel_distance(original, reconstruction, SAMPLING_RATE), rel=1e-4)
        assert row["stft_distance"] == pytest.approx(stft_distance(original, reconstruction, SAMPLING_RATE), rel=1e-4)
        assert row["si_sdr"] == pytest.approx(si_sdr(original, reconstruction, SAMPLING_RATE), abs=1e-3)


def test_aggregate_is_the_mean_with_a_student_t_interval(evaluated):
    _, report = evaluated
    for row in report["aggregate"]:
        for key, statistics in row["metrics"].items():
            values = np.array([c[key] for c in report["clips"] if c["n_quantizers"] == row["n_quantizers"]])
            assert len(values) == statistics["num_clips"] == 3
            half_width = T_975[2] * values.std(ddof=1) / math.sqrt(3)
            assert statistics["mean"] == pytest.approx(values.mean())
            assert statistics["ci_low"] == pytest.approx(values.mean() - half_width)
            assert statistics["ci_high"] == pytest.approx(values.mean() + half_width)
            assert statistics["ci_low"] <= statistics["mean"] <= statistics["ci_high"]


def test_a_perfect_codec_scores_zero_on_a_clip_above_the_models_rate(workspace, tmp_path, monkeypatch):
    # Broadband noise at 44.1 kHz holds a band the 16 kHz model never sees: the loudness to restore is the one of
    # what the model encodes, else a perfect codec would be scored with a gain error.
    from modeling_dac import evaluation

    noise = (np.random.default_rng(7).standard_normal(44100) * 0.1).astype(np.float32)
    soundfile.write(tmp_path / "noise_44k.wav", noise, 44100, subtype="FLOAT")
    monkeypatch.setattr(
        evaluation, "reconstruct_at_bitrates", lambda model, audio, counts: {n: audio.copy() for n in counts}
    )
    model = DacModel.from_pretrained(workspace / "model")
    report = evaluate_model(
        model, str(tmp_path / "noise_44k.wav"), tmp_path / "out", [1], metrics=("mel", "stft"), progress=False
    )
    assert report["clips"][0]["mel_distance"] == pytest.approx(0, abs=1e-3)
    assert report["clips"][0]["stft_distance"] == pytest.approx(0, abs=1e-3)


def test_a_failed_source_leaves_no_run_file_behind(workspace, tmp_path, capsys):
    output = tmp_path / "out"
    typo = ["--model", str(workspace / "model"), "--data", str(tmp_path / "clipz"), "--output", str(output)]
    assert main(["eval", *typo, "--no-progress", "--metrics", "mel"]) == 1
    assert not (output / "run.json").exists()
    capsys.readouterr()
    assert main(eval_arguments(workspace, output, "--metrics", "mel", "--n-quantizers", "1", "--max-clips", "1")) == 0


def test_confidence_interval_known_values():
    statistics = mean_confidence_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half_width = T_975[4] * math.sqrt(2.5) / math.sqrt(5)
    assert statistics == pytest.approx(
        {"mean": 3.0, "std": math.sqrt(2.5), "ci_low": 3.0 - half_width, "ci_high": 3.0 + half_width, "num_clips": 5}
    )
    single = mean_confidence_interval([2.5])
    assert single == {"mean": 2.5, "std": None, "ci_low": None, "ci_high": None, "num_clips": 1}
    assert mean_confidence_interval([])["mean"] is None


def test_decoding_code_prefixes_equals_encoding_at_each_bitrate(workspace):
    model = DacModel.from_pretrained(workspace / "model").eval()
    audio = tone_with_noise(4000, SAMPLING_RATE, 500, 6)
    input_values = torch.from_numpy(audio)[None, None]
    with torch.no_grad():
        all_codes = model.encode(input_values, n_quantizers=4).audio_codes
        for n_quantizers in (1, 3):
            codes = model.encode(input_values, n_quantizers=n_quantizers).audio_codes
            assert torch.equal(codes, all_codes[:, :n_quantizers])
        expected = {n: model(input_values, n_quantizers=n).audio_values[0, 0].numpy() for n in (1, 3)}
    reconstructions = reconstruct_at_bitrates(model, audio, [1, 3])
    for n_quantizers in (1, 3):
        assert reconstructions[n_quantizers].shape == (4000,)
        np.testing.assert_allclose(reconstructions[n_quantizers], expected[n_quantizers], atol=1e-5)
    with pytest.raises(ValueError, match="eval mode"):
        reconstruct_at_bitrates(model.train(), audio, [1])


def test_rerun_skips_done_pairs_and_recomputes_a_cut_line(workspace, evaluated, tmp_path, count_encodes):
    source, report = evaluated
    output = tmp_path / "copy"
    shutil.copytree(source, output)
    results = output / "results.jsonl"
    lines_before = results.read_text()

    assert main(eval_arguments(workspace, output, *BASE_OPTIONS)) == 0
    assert count_encodes == []  # every pair done and both spectrograms present
    assert results.read_text() == lines_before
    assert json.loads((output / "report.json").read_text())["aggregate"] == report["aggregate"]

    # An interrupted write: the last line (nested/c_noise.flac at 4 codebooks) is cut in the middle.
    lines = lines_before.splitlines(keepends=True)
    assert json.loads(lines[-1])["clip_id"] == "nested/c_noise.flac"
    results.write_text("".join(lines[:-1]) + lines[-1][:40])
    assert main(eval_arguments(workspace, output, *BASE_OPTIONS)) == 0
    assert len(count_encodes) == 1
    new_lines = results.read_text().splitlines(keepends=True)
    assert new_lines[:-1] == lines[:-1] and json.loads(new_lines[-1]) == json.loads(lines[-1])
    rebuilt = json.loads((output / "report.json").read_text())["clips"]
    pairs = [(clip["clip_id"], clip["n_quantizers"]) for clip in rebuilt]
    assert pairs == [(clip["clip_id"], clip["n_quantizers"]) for clip in report["clips"]]
    for rebuilt_clip, clip in zip(rebuilt, report["clips"]):
        for key in ("mel_distance", "stft_distance", "si_sdr"):
            assert rebuilt_clip[key] == pytest.approx(clip[key], rel=1e-6)

    # Fewer clips: the report covers this command's clips only, and nothing is recomputed.
    assert main(eval_arguments(workspace, output, *BASE_OPTIONS, "--max-clips", "1")) == 0
    assert len(count_encodes) == 1
    assert json.loads((output / "report.json").read_text())["num_clips"] == 1


def test_other_settings_are_refused_in_the_same_output(workspace, evaluated, tmp_path, capsys):
    output = tmp_path / "copy"
    shutil.copytree(evaluated[0], output)
    assert main(eval_arguments(workspace, output, *BASE_OPTIONS, "--clip-seconds", "0.5")) == 1
    assert "differs in: clip_seconds" in capsys.readouterr().err
    # Results of earlier versions, which matched the loudness measured at the clip's own rate, are not mixed in.
    run = json.loads((output / "run.json").read_text())
    del run["loudness_measured_at"]
    (output / "run.json").write_text(json.dumps(run))
    assert main(eval_arguments(workspace, output, *BASE_OPTIONS)) == 1
    assert "differs in: loudness_measured_at" in capsys.readouterr().err
    # Without loudness matching nothing changed: such earlier results resume as they are.
    unmatched = tmp_path / "unmatched"
    assert main(eval_arguments(workspace, unmatched, *BASE_OPTIONS, "--no-match-loudness", "--max-clips", "1")) == 0
    run = json.loads((unmatched / "run.json").read_text())
    del run["loudness_measured_at"]
    (unmatched / "run.json").write_text(json.dumps(run))
    assert main(eval_arguments(workspace, unmatched, *BASE_OPTIONS, "--no-match-loudness", "--max-clips", "1")) == 0


@pytest.mark.parametrize(
    "options, message",
    [
        (("--n-quantizers", "1,5"), "n_codebooks=4"),
        (("--metrics", "mel,pesq"), "choose from mel, stft, visqol, sisdr"),
        (("--clip-seconds", "0"), "clip_seconds must be positive"),
        (("--device", "gpu9"), "--device 'gpu9' is not a torch device"),
    ],
)
def test_invalid_options_are_explained(workspace, tmp_path, capsys, options, message):
    assert main(eval_arguments(workspace, tmp_path / "out", *options)) == 1
    assert message in capsys.readouterr().err


def test_a_visqol_that_is_not_visqol_python_is_refused_before_any_encode(workspace, tmp_path, count_encodes,
                                                                          monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "visqol", types.ModuleType("visqol"))  # as Google's bindings: no VisqolApi
    sys.modules["visqol"].__file__ = "/site-packages/visqol/__init__.py"
    model = DacModel.from_pretrained(workspace / "model")
    with pytest.raises(ValueError, match="is not visqol-python.*Or leave visqol out of the metrics"):
        evaluate_model(model, str(workspace / "clips"), tmp_path / "out", metrics=["mel", "visqol"], progress=False)
    assert len(count_encodes) == 0 and not (tmp_path / "out").exists()


def test_visqol_added_later_is_computed_alone(workspace, tmp_path, count_encodes):
    data = tmp_path / "long"
    data.mkdir()
    soundfile.write(data / "tone.wav", tone_with_noise(24000, SAMPLING_RATE, 300, 7), SAMPLING_RATE)
    model = DacModel.from_pretrained(workspace / "model")
    options = {"n_quantizers_list": [4], "spectrogram_clips": 0, "progress": False}
    evaluate_model(model, str(data), tmp_path / "out", metrics=["mel"], **options)
    report = evaluate_model(model, str(data), tmp_path / "out", metrics=["mel", "visqol"], **options)
    assert len(count_encodes) == 2
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [set(row["metrics"]) for row in rows] == [{"mel_distance"}, {"visqol"}]
    assert 1.0 <= report["clips"][0]["visqol"] <= 5.0
    assert report["clips"][0]["mel_distance"] == rows[0]["metrics"]["mel_distance"]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| mel distance ↓ | ViSQOL ↑ |" in markdown and "1 clip, no CI" in markdown
    assert "`, 1 clip\n" in markdown  # not "1 clips"


def test_clip_too_short_for_visqol_is_skipped(workspace, tmp_path):
    pytest.importorskip("visqol", reason="visqol-python not installed")
    data = tmp_path / "clips"
    data.mkdir()
    shutil.copy(workspace / "clips" / "a_tone.wav", data)  # 0.6 s: enough for the spectral distances, not ViSQOL
    soundfile.write(data / "long.wav", tone_with_noise(24000, SAMPLING_RATE, 300, 8), SAMPLING_RATE)
    model = DacModel.from_pretrained(workspace / "model")
    report = evaluate_model(
        model, str(data), tmp_path / "out", n_quantizers_list=[1, 4], metrics=["mel", "visqol"],
        spectrogram_clips=0, progress=False,
    )
    assert [(clip["clip_id"], clip["n_quantizers"]) for clip in report["clips"]] == [("long.wav", 1), ("long.wav", 4)]
    assert [(skipped["clip_id"], skipped["reason"][:6]) for skipped in report["skipped"]] == [("a_tone.wav", "visqol")]
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert {row["clip_id"] for row in rows} == {"long.wav"}


def test_symlinked_files_are_known_by_their_path_in_the_folder(workspace, tmp_path):
    data = tmp_path / "snapshot"
    data.mkdir()
    for name in ("b_stereo.wav", "a_tone.wav"):  # as a hub snapshot: links to content-addressed blobs
        (data / name).symlink_to(workspace / "clips" / name)
    model = DacModel.from_pretrained(workspace / "model")
    report = evaluate_model(
        model, str(data), tmp_path / "out", n_quantizers_list=[1], metrics=["sisdr"], spectrogram_clips=0,
        progress=False,
    )
    assert [(clip["clip_id"], clip["name"]) for clip in report["clips"]] == [
        ("a_tone.wav", "a_tone.wav"),
        ("b_stereo.wav", "b_stereo.wav"),
    ]


def _dataset_of_clips(workspace: Path):
    from datasets import Audio, Dataset

    files = [workspace / "clips" / "a_tone.wav", workspace / "clips" / "b_stereo.wav"]
    records = [{"bytes": path.read_bytes(), "path": path.name} for path in files]
    return files, Dataset.from_dict({"sound": records}).cast_column("sound", Audio(decode=False))


def test_parquet_and_saved_datasets_decode_like_the_files(workspace, tmp_path):
    files, dataset = _dataset_of_clips(workspace)
    dataset.to_parquet(str(tmp_path / "clips.parquet"))
    dataset.save_to_disk(str(tmp_path / "saved"))
    for source in (str(tmp_path / "clips.parquet"), str(tmp_path / "saved")):
        loaded = load_audio_dataset(source)
        assert loaded.column_names == ["audio"] and len(loaded) == 2
        for path, row in zip(files, loaded):
            expected, rate = soundfile.read(path, dtype="float32", always_2d=True)
            audio, sampling_rate = read_audio_record(row["audio"])
            assert sampling_rate == rate
            np.testing.assert_array_equal(audio, expected.T)
    with pytest.raises(ValueError, match="no column 'speech'"):
        load_audio_dataset(str(tmp_path / "saved"), column="speech")
    with pytest.raises(ValueError, match="splits \\['train'\\]; choose one with `split`"):
        load_audio_dataset(str(tmp_path / "clips.parquet"), split="test")


def test_sources_without_splits_refuse_any_split_but_train(workspace, tmp_path, monkeypatch):
    import datasets

    _, dataset = _dataset_of_clips(workspace)
    dataset.save_to_disk(str(tmp_path / "saved"))
    clip = str(workspace / "clips" / "a_tone.wav")
    for source, rows in ((str(tmp_path / "saved"), 2), (clip, 1)):
        for split in (None, "train"):  # the default of the commands and of training
            assert len(load_audio_dataset(source, split=split)) == rows
        for streaming in (False, True):
            with pytest.raises(ValueError, match=f"Dataset {re.escape(source)} has no splits, so split 'test'"):
                load_audio_dataset(source, split="test", streaming=streaming)
    # Given a split, load_dataset returns that split alone: a hub dataset's split is no split-less dataset.
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: dataset)
    assert len(load_audio_dataset("someone/clips", split="validation")) == 2


def test_parquet_folders_keep_the_splits_their_file_names_give(workspace, tmp_path):
    from datasets import Audio

    _, dataset = _dataset_of_clips(workspace)
    hub_typed = dataset.cast_column("sound", Audio())  # hub parquet files declare decoded audio
    hub_typed.select([0]).to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    hub_typed.select([1]).to_parquet(str(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet"))
    (tmp_path / "hub" / "README.md").write_text("a dataset card")
    with pytest.raises(ValueError, match="has splits \\['test', 'train'\\]; choose one"):
        load_audio_dataset(str(tmp_path / "hub"))  # never the two merged into one evaluation set
    for split, index in (("train", 0), ("test", 1)):
        for streaming in (False, True):
            loaded = list(load_audio_dataset(str(tmp_path / "hub"), split=split, streaming=streaming))
            assert [row["audio"] for row in loaded] == [dataset[index]["sound"]]  # undecoded, without torchcodec
    dataset.to_parquet(str(tmp_path / "nested" / "a" / "clips.parquet"))
    (tmp_path / "nested" / "a" / "notes.json").write_text("{}")  # not parquet: left out
    assert len(load_audio_dataset(str(tmp_path / "nested"), split="train")) == 2
    # Hidden and underscore-prefixed files are not data (datasets skips them too): the splits stay.
    dataset.to_parquet(str(tmp_path / "hub" / ".ipynb_checkpoints" / "train-00000-of-00001.parquet"))
    assert len(load_audio_dataset(str(tmp_path / "hub"), split="test")) == 1
    # Paths are no glob patterns to datasets: `[v1]` in a folder name is kept as it is.
    dataset.to_parquet(str(tmp_path / "pq [v1]" / "clips.parquet"))
    assert len(load_audio_dataset(str(tmp_path / "pq [v1]"))) == 2
    assert len(load_audio_dataset(str(tmp_path / "pq [v1]" / "clips.parquet"))) == 2
    # Sharded file names may name any split.
    hub_typed.select([1]).to_parquet(str(tmp_path / "custom" / "data" / "holdout-00000-of-00001.parquet"))
    hub_typed.select([0]).to_parquet(str(tmp_path / "custom" / "data" / "train-00000-of-00001.parquet"))
    assert [row["audio"] for row in load_audio_dataset(str(tmp_path / "custom"), split="holdout")] == [
        dataset[1]["sound"]
    ]
    # A split word in some names only (speech_test beside music) makes no splits: nothing is left out.
    dataset.to_parquet(str(tmp_path / "mixed" / "music.parquet"))
    dataset.to_parquet(str(tmp_path / "mixed" / "speech_test.parquet"))
    assert len(load_audio_dataset(str(tmp_path / "mixed"))) == 4


def test_audio_folders_keep_the_splits_their_names_give(workspace, tmp_path):
    clip = next(iter(sorted((workspace / "clips").glob("*.wav"))))
    for name in ("train/a.wav", "train/b/c.wav", "test/d.wav"):
        (tmp_path / "split" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, tmp_path / "split" / name)
    with pytest.raises(ValueError, match="has splits \\['test', 'train'\\]; choose one"):
        load_audio_dataset(str(tmp_path / "split"))  # validation files never mixed into training
    with pytest.raises(ValueError, match="got 'validation'"):
        load_audio_dataset(str(tmp_path / "split"), split="validation")
    train = load_audio_dataset(str(tmp_path / "split"), split="train", keep_columns=True)
    assert train["file_name"] == ["train/a.wav", "train/b/c.wav"]
    assert load_audio_dataset(str(tmp_path / "split"), split="test", keep_columns=True)["file_name"] == ["test/d.wav"]
    (tmp_path / "split" / "notes.wav").write_bytes(clip.read_bytes())  # names no split: the folder is one split
    assert len(load_audio_dataset(str(tmp_path / "split"))) == 4
    # A hub snapshot links files of two splits to one blob; a folder name may hold glob characters.
    snapshot = tmp_path / "snapshot [v2]"
    for split in ("train", "test"):
        (snapshot / split).mkdir(parents=True)
        (snapshot / split / "a.wav").symlink_to(clip)
    assert load_audio_dataset(str(snapshot), split="test", keep_columns=True)["file_name"] == ["test/a.wav"]
    shutil.copy(clip, tmp_path / "songs [live].wav")
    (tmp_path / "songs [live]").mkdir()
    shutil.copy(clip, tmp_path / "songs [live]" / "a.wav")
    assert len(load_audio_dataset(str(tmp_path / "songs [live]"))) == 1


def test_a_stream_without_declared_features_keeps_only_its_audio_column(monkeypatch):
    import datasets

    def rows():
        yield {"sound": {"bytes": None, "path": "a.wav"}, "speaker": 3}

    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: datasets.IterableDataset.from_generator(rows))
    stream = load_audio_dataset("someone/clips", column="sound", streaming=True)
    assert list(stream) == [{"audio": {"bytes": None, "path": "a.wav"}}]


def test_every_audio_column_kept_stays_undecoded(workspace, tmp_path):
    from datasets import Audio

    _, dataset = _dataset_of_clips(workspace)
    dataset = dataset.add_column("echo", dataset["sound"]).cast_column("echo", Audio())
    dataset.save_to_disk(str(tmp_path / "saved"))
    loaded = load_audio_dataset(str(tmp_path / "saved"), column="sound", keep_columns=True)
    assert loaded.column_names == ["audio", "echo"]
    assert all(loaded.features[name] == Audio(decode=False) for name in loaded.column_names)
    assert read_audio_record(loaded[1]["echo"])[0].shape == read_audio_record(loaded[1]["audio"])[0].shape
    with pytest.raises(ValueError, match="holds neither"):
        read_audio_record({"bytes": None, "path": None})


def test_single_files_folders_and_missing_sources(workspace, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    single = load_audio_dataset(str(workspace / "clips" / "a_tone.wav"))
    assert single["audio"] == [{"bytes": None, "path": str((workspace / "clips" / "a_tone.wav").resolve())}]
    with pytest.raises(ValueError, match="has no column 'speech'; its columns are \\['audio'\\]"):
        load_audio_dataset(str(workspace / "clips"), column="speech")
    with pytest.raises(ValueError, match="no_such_folder is not a local audio file, audio folder, .* hub dataset"):
        load_audio_dataset("no_such_folder")


def test_evaluating_a_parquet_file_matches_the_folder(workspace, evaluated, tmp_path):
    _, dataset = _dataset_of_clips(workspace)
    dataset.to_parquet(str(tmp_path / "clips.parquet"))
    model = DacModel.from_pretrained(workspace / "model")
    report = evaluate_model(
        model, str(tmp_path / "clips.parquet"), tmp_path / "out", n_quantizers_list=[2], metrics=["mel", "sisdr"],
        max_clips=1, spectrogram_clips=0, progress=False,
    )
    folder_row = next(c for c in evaluated[1]["clips"] if c["clip_id"] == "a_tone.wav" and c["n_quantizers"] == 2)
    assert [(clip["clip_id"], clip["name"]) for clip in report["clips"]] == [("0", "a_tone.wav")]
    assert report["clips"][0]["mel_distance"] == pytest.approx(folder_row["mel_distance"], rel=1e-6)
    assert report["clips"][0]["si_sdr"] == pytest.approx(folder_row["si_sdr"], abs=1e-6)
    assert report["aggregate"][0]["metrics"]["mel_distance"]["ci_low"] is None  # one clip: no interval


def test_documented_python_example_runs(monkeypatch, capsys):
    page = (REPOSITORY / "docs" / "evaluation.md").read_text()
    section = page.split("## Evaluating a model from the command line: `dac eval`", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1
    monkeypatch.chdir(REPOSITORY)
    exec(compile(blocks[0], "docs/evaluation.md", "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"^0\.30 kbps: mel distance \d+\.\d{3} in \[", printed, re.M)
    outputs = ["metrics_vs_bitrate.png", "report.json", "report.md", "results.jsonl", "run.json", "spectrograms"]
    assert str(outputs) in printed
