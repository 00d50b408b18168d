import dataclasses
import json
import re
import shlex
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from modeling_dac import DacConfig, DacFile, DacModel
from modeling_dac.cli import main
from modeling_dac import commands
from modeling_dac.commands import DEFAULT_MODEL
from modeling_dac.commands.codec import Job, describe_dac_file, plan_jobs

from docs_examples import REPO, run_markdown_examples

OFFICIAL_DAC_FILE = Path(__file__).parent / "fixtures" / "official_dac" / "official_numpy1.dac"
AUDIO_SUFFIXES = (".wav", ".flac")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = DacModel(DacConfig.from_pretrained("hub_configs/tiny")).eval()
    directory = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(directory)
    return directory


def write_audio(path: Path, channels: int, samples: int, sampling_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Write a `(channels, samples)` noise clip (through soundfile, as any user file) and return it."""
    audio = (np.random.default_rng(seed).standard_normal((channels, samples)) * 0.1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio.T, sampling_rate)
    return audio


def write_silent_dac_file(path: Path) -> Path:
    """A .dac file of 5 frames of code 0 (mono, 1600 samples at 16 kHz) that the tiny model can decode."""
    config = DacConfig.from_pretrained("hub_configs/tiny")
    codes = np.zeros((1, 4, 5), dtype=np.int64)
    return DacFile.from_codes(codes, config, sample_rate=16000, original_length=1600).save(path)


@pytest.fixture
def audio_tree(tmp_path):
    """music/a.wav (mono), music/b.flac (stereo), music/live/c.wav (3 channels at 22.05 kHz), music/notes.txt."""
    root = tmp_path / "music"
    write_audio(root / "a.wav", 1, 4000, seed=1)
    write_audio(root / "b.flac", 2, 3000, seed=2)
    write_audio(root / "live" / "c.wav", 3, 2500, sampling_rate=22050, seed=3)
    (root / "notes.txt").write_text("not audio")
    return root


# --- planning the outputs ---------------------------------------------------------------------------------------


def test_directories_are_mirrored_and_files_go_into_the_output_directory(audio_tree, tmp_path):
    single = write_audio(tmp_path / "single.wav", 1, 100) is not None and tmp_path / "single.wav"
    jobs = plan_jobs([str(audio_tree), str(single)], str(tmp_path / "out"), AUDIO_SUFFIXES, ".dac")
    out = tmp_path / "out"
    assert jobs == [
        Job(audio_tree / "a.wav", out / "a.dac"),
        Job(audio_tree / "b.flac", out / "b.dac"),
        Job(audio_tree / "live" / "c.wav", out / "live" / "c.dac"),
        Job(single, out / "single.dac"),
    ]


def test_a_single_file_may_name_its_output(audio_tree, tmp_path):
    jobs = plan_jobs([str(audio_tree / "a.wav")], str(tmp_path / "codes" / "x.dac"), AUDIO_SUFFIXES, ".dac")
    assert jobs == [Job(audio_tree / "a.wav", tmp_path / "codes" / "x.dac")]


def test_planning_errors_come_before_any_work(audio_tree, tmp_path):
    with pytest.raises(ValueError, match="input not found:\n  .*missing.wav"):
        plan_jobs([str(audio_tree), str(tmp_path / "missing.wav")], str(tmp_path / "out"), AUDIO_SUFFIXES, ".dac")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .flac, .wav files in directory .*empty"):
        plan_jobs([str(tmp_path / "empty")], str(tmp_path / "out"), AUDIO_SUFFIXES, ".dac")
    write_audio(audio_tree / "a.flac", 1, 100)
    with pytest.raises(ValueError, match=r"same output:\n  .*a\.dac: from .*a\.flac, .*a\.wav"):
        plan_jobs([str(audio_tree)], str(tmp_path / "out"), AUDIO_SUFFIXES, ".dac")
    with pytest.raises(ValueError, match="replace an input"):
        plan_jobs([str(audio_tree / "a.wav")], str(audio_tree / "a.wav"), AUDIO_SUFFIXES, ".wav")


def test_outputs_that_cannot_be_directories_are_refused(audio_tree, tmp_path):
    a_wav = str(audio_tree / "a.wav")
    with pytest.raises(ValueError, match="names a .wav file, but this command writes .dac files"):
        plan_jobs([a_wav], str(tmp_path / "a_copy.wav"), AUDIO_SUFFIXES, ".dac")
    with pytest.raises(ValueError, match="names a .opus file, but this command writes .flac, .wav files"):
        plan_jobs([a_wav], str(tmp_path / "a.opus"), AUDIO_SUFFIXES, ".wav", False, [".wav", ".flac"])
    with pytest.raises(ValueError, match="reads as a file name, but several inputs need an output directory"):
        plan_jobs([a_wav, str(audio_tree / "b.flac")], str(tmp_path / "codes.dac"), AUDIO_SUFFIXES, ".dac")
    with pytest.raises(
        ValueError, match=re.escape(f"file name, but the input {audio_tree} is a directory, whose files need an output")
    ):
        plan_jobs([str(audio_tree)], str(tmp_path / "codes.dac"), AUDIO_SUFFIXES, ".dac")
    with pytest.raises(ValueError, match="is an existing file; the output here must be a directory"):
        plan_jobs([str(audio_tree / "live")], str(audio_tree / "notes.txt"), AUDIO_SUFFIXES, ".dac")
    assert not (tmp_path / "a_copy.wav").exists() and not (tmp_path / "codes.dac").exists()


def test_existing_outputs_are_refused_without_overwrite(audio_tree, tmp_path):
    out = tmp_path / "out"
    (out / "live").mkdir(parents=True)
    (out / "live" / "c.dac").write_bytes(b"old")
    with pytest.raises(ValueError, match=r"1 output\(s\) already exist; pass --overwrite.*\n  .*live/c\.dac"):
        plan_jobs([str(audio_tree)], str(out), AUDIO_SUFFIXES, ".dac")
    assert len(plan_jobs([str(audio_tree)], str(out), AUDIO_SUFFIXES, ".dac", overwrite=True)) == 3


# --- command-line errors ----------------------------------------------------------------------------------------


def test_without_model_the_shipped_reference_checkpoint_is_used(tmp_path):
    assert DEFAULT_MODEL is not None and Path(DEFAULT_MODEL).name == "dac_reference"
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, np.zeros(4000, dtype=np.float32), 16000)
    assert main(["encode", str(clip), "-o", str(tmp_path / "clip.dac"), "--no-progress"]) == 0
    assert DacFile.load(tmp_path / "clip.dac").metadata.model_name == "dac_reference"


def test_missing_model_without_a_default_is_an_error_naming_the_flag(audio_tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(commands, "DEFAULT_MODEL", None)
    assert main(["encode", str(audio_tree), "-o", str(tmp_path / "out")]) == 1
    assert "--model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, package, extra", [("tokenize", "accelerate", "training"), ("eval", "datasets", "eval")])
def test_a_missing_optional_package_names_the_extra_that_installs_it(
    command, package, extra, audio_tree, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, package, None)  # `import <package>` now fails as if it were not installed
    output = str(tmp_path / "out")
    arguments = ["--data", str(audio_tree), "--output", output] if command == "eval" else [str(audio_tree), output]
    assert main([command, *arguments]) == 1
    captured = capsys.readouterr()
    assert "ViSQOL takes" not in captured.out  # stopped before loading the model
    message = captured.err.strip()
    assert message == (
        f"dac {command}: error: needs the package '{package}', which is not installed: "
        f"pip install 'modeling_dac[{extra}]'"
    )


@pytest.mark.parametrize(
    "installed, reason",  # missing, or Google's bindings (same import name)
    [(None, 'pip install "modeling_dac[eval]"'), (types.ModuleType("visqol"), "is not visqol-python")],
)
def test_eval_checks_visqol_before_loading_the_model(installed, reason, audio_tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "visqol", installed)
    if installed is not None:
        installed.__file__ = "/site-packages/visqol/__init__.py"
    assert main(["eval", "--data", str(audio_tree), "--output", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "ViSQOL takes" not in captured.out  # stopped before loading the model
    assert captured.err.startswith("dac eval: error:") and len(captured.err.strip().splitlines()) == 1
    assert reason in captured.err


def test_unloadable_model_is_a_clear_error(audio_tree, tmp_path, capsys):
    assert main(["encode", str(audio_tree), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "nowhere")]) == 1
    assert "cannot load --model" in capsys.readouterr().err
    # A mistyped relative folder looks like a hub id: the error also says no such folder exists here.
    assert main(["encode", str(audio_tree), "-o", str(tmp_path / "out"), "--model", "no-such-model-dir"]) == 1
    assert "(there is no local directory no-such-model-dir either)" in capsys.readouterr().err


def test_a_model_path_under_the_home_directory_is_expanded(audio_tree, tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "models").mkdir(parents=True)
    (tmp_path / "home" / "models" / "tiny").symlink_to(model_dir)
    # `--model=~/...` as one word: the shell leaves the `~` to us.
    arguments = ["encode", str(audio_tree / "a.wav"), "-o", str(tmp_path / "a.dac"), "--model=~/models/tiny"]
    assert main(arguments + ["--no-progress"]) == 0
    assert DacFile.load(tmp_path / "a.dac").metadata.model_name == "tiny"


def test_every_model_command_defaults_to_the_reference_checkpoint(audio_tree, tmp_path, capsys):
    from modeling_dac.cli import build_parser

    commands_without_model = [
        ["encode", "in.wav", "-o", "out"],
        ["decode", "in.dac", "-o", "out"],
        ["eval", "--data", "clips", "--output", "out"],
        ["tokenize", "clips", "out"],
    ]
    assert [build_parser().parse_args(argv).model for argv in commands_without_model] == [DEFAULT_MODEL] * 4
    nowhere = ["--model", str(tmp_path / "nowhere")]
    assert main(["tokenize", str(audio_tree), str(tmp_path / "tokens")] + nowhere) == 1
    assert main(["eval", "--data", str(audio_tree), "--output", str(tmp_path / "eval")] + nowhere) == 1
    expected = [f"dac {name}: error: cannot load --model {nowhere[1]}: no such directory." for name in ("tokenize", "eval")]
    assert capsys.readouterr().err.splitlines() == expected


def test_bad_n_quantizers_and_batch_size_are_refused_before_work(audio_tree, tmp_path, model_dir, capsys):
    base = ["encode", str(audio_tree), "-o", str(tmp_path / "out"), "--model", str(model_dir)]
    assert main(base + ["--n-quantizers", "5"]) == 1
    assert "--n-quantizers must be between 1 and the model's 4, got 5" in capsys.readouterr().err
    assert main(base + ["--batch-size", "0"]) == 1
    assert "--batch-size must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_device_is_a_clear_error(audio_tree, tmp_path, model_dir, capsys):
    arguments = ["encode", str(audio_tree), "-o", str(tmp_path / "o"), "--model", str(model_dir)]
    assert main(arguments + ["--device", "gpu9"]) == 1
    assert "--device 'gpu9' is not a torch device" in capsys.readouterr().err


# --- dac info -----------------------------------------------------------------------------------------------------


def test_info_describes_our_files(tmp_path, capsys):
    config = DacConfig.from_pretrained("hub_configs/tiny")
    codes = np.random.default_rng(0).integers(0, 64, size=(2, 3, 50))
    dac_file = DacFile.from_codes(
        codes, config, sample_rate=44100, original_length=88200, loudness=-20.5, model_name="tiny-test"
    )
    path = dac_file.save(tmp_path / "clip.dac")
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    for line in [
        "format:      modeling_dac .dac, format version 1",
        "sample rate: 44100 Hz",
        "duration:    2.000 s (88200 samples)",
        "channels:    2",
        "codebooks:   3 of size 64",
        "frames:      50 (50.00 frames/s)",
        "bitrate:     0.90 kbps per channel",  # 3 codebooks * 6 bits * 50 frames/s
        "model:       tiny-test (16000 Hz, hop 320)",
        f"fingerprint: {dac_file.metadata.config_fingerprint}",
        "loudness:    input -20.50 LUFS",
        "encoding:    one continuous stream",
    ]:
        assert line in text

    assert main(["info", "--json", str(path)]) == 0
    description = json.loads(capsys.readouterr().out)
    assert description["path"] == str(path)
    assert description["bitrate"] == 900.0 and description["frames"] == 50 and description["duration_seconds"] == 2.0
    assert {key: description[key] for key in dac_file.metadata.to_dict()} == dac_file.metadata.to_dict()


def test_info_reads_official_files(capsys):
    assert main(["info", str(OFFICIAL_DAC_FILE)]) == 0
    text = capsys.readouterr().out
    assert "official descript-audio-codec 1.0.0 file" in text
    assert "duration:    0.188 s (9000 samples)" in text
    assert "codebooks:   9 of size not recorded" in text
    # 21 frames stored for 0.1875 s: 112 frames/s, more than the model's rate (unpadded chunks overlap);
    # 9 codebooks * 10 bits * 112 = 10.08 kbps.
    assert "frames:      21 (112.00 frames/s stored per second of audio)" in text
    assert "bitrate:     10.08 kbps per channel as stored (assuming 1024-entry codebooks" in text
    assert "encoding:    chunks of 7 frames, convolution padding off" in text
    assert describe_dac_file(DacFile.load(OFFICIAL_DAC_FILE))["model_name"] is None


def test_info_tells_a_converted_official_file_from_an_official_one(tmp_path, capsys):
    DacFile.load(OFFICIAL_DAC_FILE).save(tmp_path / "converted.dac")  # the documented conversion to our format
    assert main(["info", str(tmp_path / "converted.dac"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["official_container"] is False
    assert main(["info", str(tmp_path / "converted.dac")]) == 0
    text = capsys.readouterr().out
    assert "modeling_dac .dac, format version 1 (converted from an official descript-audio-codec 1.0.0 file)" in text
    # The official code encodes a clip shorter than its window in one padded chunk.
    official = DacFile.load(OFFICIAL_DAC_FILE)
    one_chunk = dataclasses.replace(official.metadata, padding=True, chunk_length=official.codes.shape[-1])
    DacFile(official.codes, one_chunk).save(tmp_path / "one_chunk.dac")
    assert main(["info", str(tmp_path / "one_chunk.dac")]) == 0
    assert "encoding:    one continuous stream" in capsys.readouterr().out


def test_info_reports_unreadable_files_and_keeps_going(tmp_path, capsys):
    bad = tmp_path / "bad.dac"
    bad.write_bytes(b"\x00" * 64)
    assert main(["info", str(bad), str(OFFICIAL_DAC_FILE), str(tmp_path / "missing.dac")]) == 1
    captured = capsys.readouterr()
    assert str(OFFICIAL_DAC_FILE) in captured.out
    assert f"{bad}: not a .dac file" in captured.err
    assert f"{tmp_path / 'missing.dac'}: No such file or directory" in captured.err


# --- encode and decode ------------------------------------------------------------------------------------------


def test_directory_round_trip_mirrors_the_tree_and_reports_a_bad_file(audio_tree, tmp_path, model_dir, capsys):
    (audio_tree / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    for hidden in (audio_tree / ".hidden.wav", audio_tree / ".ipynb_checkpoints" / "a-checkpoint.wav"):
        hidden.parent.mkdir(exist_ok=True)
        hidden.write_bytes(b"not read: hidden")
    codes_dir, decoded_dir = tmp_path / "codes", tmp_path / "decoded"

    assert main(["encode", str(audio_tree), "-o", str(codes_dir), "--model", str(model_dir), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert f"dac encode: 1 file(s) failed:\n  {audio_tree / 'broken.wav'}: Cannot read audio file" in captured.err
    assert "Encoded 3 of 4 file(s)." in captured.out
    written = sorted(path.relative_to(codes_dir).as_posix() for path in codes_dir.rglob("*") if path.is_file())
    assert written == ["a.dac", "b.dac", "live/c.dac"]  # no temporary leftovers, nothing for the broken file

    model = DacModel.from_pretrained(model_dir)
    for name, channels in [("a", 1), ("b", 2)]:  # at the model's rate: the codes are model.encode's, per channel
        source = next(audio_tree.glob(f"{name}.*"))
        audio, _ = soundfile.read(source, dtype="float32", always_2d=True)
        with torch.no_grad():
            expected = model.encode(torch.from_numpy(audio.T.copy())[:, None, :]).audio_codes.numpy()
        dac_file = DacFile.load(codes_dir / f"{name}.dac")
        assert dac_file.metadata.channels == channels
        np.testing.assert_array_equal(dac_file.codes, expected)
    assert DacFile.load(codes_dir / "live" / "c.dac").metadata.sample_rate == 22050

    assert main(["decode", str(codes_dir), "-o", str(decoded_dir), "--model", str(model_dir), "--no-progress"]) == 0
    assert "Decoded 3 of 3 file(s)." in capsys.readouterr().out
    for relative, channels, rate, samples in [("a", 1, 16000, 4000), ("b", 2, 16000, 3000), ("live/c", 3, 22050, 2500)]:
        info = soundfile.info(decoded_dir / f"{relative}.wav")
        assert (info.channels, info.samplerate, info.frames) == (channels, rate, samples)


def test_a_failed_write_names_the_path_it_could_not_write(audio_tree, tmp_path, model_dir, capsys):
    codes_dir = tmp_path / "codes"
    codes_dir.mkdir()
    (codes_dir / "live").write_text("a file where the tree needs a folder")
    assert main(["encode", str(audio_tree), "-o", str(codes_dir), "--model", str(model_dir), "--no-progress"]) == 1
    failure = capsys.readouterr().err.splitlines()[-1].strip()
    assert failure.startswith(f"{audio_tree / 'live' / 'c.wav'}: ") and failure.endswith(str(codes_dir / "live"))


def test_decoded_audio_is_the_models_decode(audio_tree, tmp_path, model_dir):
    from modeling_dac.compression import decompress

    assert main(["encode", str(audio_tree / "b.flac"), "-o", str(tmp_path / "b.dac"), "--model", str(model_dir)]) == 0
    output = tmp_path / "b.flac"
    assert main(["decode", str(tmp_path / "b.dac"), "-o", str(output), "--model", str(model_dir)]) == 0
    decoded, rate = soundfile.read(output, dtype="float32", always_2d=True)
    expected = decompress(DacModel.from_pretrained(model_dir), tmp_path / "b.dac")
    assert rate == 16000 and decoded.T.shape == expected.shape == (2, 3000)
    np.testing.assert_allclose(decoded.T, expected, rtol=0, atol=1 / 32768 + 1e-6)  # 16-bit FLAC


def test_existing_outputs_are_left_alone_without_overwrite(audio_tree, tmp_path, model_dir, capsys):
    out = tmp_path / "codes"
    arguments = ["encode", str(audio_tree / "a.wav"), "-o", str(out), "--model", str(model_dir), "--no-progress"]
    assert main(arguments) == 0
    before = (out / "a.dac").read_bytes()
    capsys.readouterr()
    assert main(arguments + ["--n-quantizers", "2"]) == 1
    assert "1 output(s) already exist; pass --overwrite" in capsys.readouterr().err
    assert (out / "a.dac").read_bytes() == before
    assert main(arguments + ["--n-quantizers", "2", "--overwrite"]) == 0
    assert DacFile.load(out / "a.dac").codes.shape == (1, 2, 13)


def test_normalize_loudness_is_stored_and_restored(tmp_path, model_dir):
    from modeling_dac.audio import integrated_loudness

    quiet = write_audio(tmp_path / "quiet.wav", 2, 8000, seed=5) * 0.1
    soundfile.write(tmp_path / "quiet.wav", quiet.T, 16000, subtype="FLOAT")
    arguments = ["--model", str(model_dir), "--no-progress"]
    encode = ["encode", str(tmp_path / "quiet.wav"), "-o", str(tmp_path / "q.dac"), "--normalize-loudness"]
    assert main(encode + arguments) == 0
    loudness = DacFile.load(tmp_path / "q.dac").metadata.loudness
    assert loudness == pytest.approx(integrated_loudness(quiet, 16000), abs=0.01)
    assert main(["decode", str(tmp_path / "q.dac"), "-o", str(tmp_path / "q.flac"), *arguments]) == 0
    decoded, _ = soundfile.read(tmp_path / "q.flac", dtype="float32", always_2d=True)
    assert integrated_loudness(decoded.T, 16000) == pytest.approx(loudness, abs=0.1)


def test_encode_warns_about_input_beyond_full_scale_unless_normalised(tmp_path, model_dir, capsys):
    hot = write_audio(tmp_path / "hot.wav", 1, 8000, seed=6)
    soundfile.write(tmp_path / "hot.wav", hot.T * np.float32(2.7 / np.abs(hot).max()), 16000, subtype="FLOAT")
    arguments = ["encode", str(tmp_path / "hot.wav"), "-o", str(tmp_path / "hot.dac"), "--model", str(model_dir)]
    assert main(arguments + ["--no-progress"]) == 0
    assert capsys.readouterr().err.startswith(
        f"dac encode: warning: Audio file {tmp_path / 'hot.wav'} peaks at 2.7 (+8.6 dBFS), beyond full scale"
    )
    assert main(arguments + ["--no-progress", "--overwrite", "--normalize-loudness"]) == 0
    assert capsys.readouterr().err == ""


def test_decode_warns_once_per_file_it_clips_and_float_wav_keeps_the_peaks(tmp_path, model_dir, capsys):
    write_audio(tmp_path / "clip.wav", 2, 8000, seed=7)
    arguments = ["--model", str(model_dir), "--no-progress"]
    encode = ["encode", str(tmp_path / "clip.wav"), "-o", str(tmp_path / "q.dac"), "--normalize-loudness"]
    assert main(encode + arguments) == 0
    quiet = DacFile.load(tmp_path / "q.dac")
    # A loud input (0 LUFS) normalised to -16 LUFS: restoring its loudness takes the audio past full scale.
    DacFile(quiet.codes, dataclasses.replace(quiet.metadata, loudness=0.0)).save(tmp_path / "codes" / "loud.dac")
    capsys.readouterr()
    assert main(["decode", str(tmp_path / "codes"), "-o", str(tmp_path / "pcm")] + arguments) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"dac decode: warning: {tmp_path / 'pcm' / 'loud.wav'}: ")
    assert re.search(r"[\d.]+% of the samples exceed full scale \(peak [\d.]+, \+[\d.]+ dBFS\)", warnings[0])
    assert "dac decode --format wav --subtype FLOAT" in warnings[0]

    float_wav = ["decode", str(tmp_path / "codes"), "-o", str(tmp_path / "float"), "--subtype", "float"]
    assert main(float_wav + arguments) == 0
    assert capsys.readouterr().err == ""
    decoded, _ = soundfile.read(tmp_path / "float" / "loud.wav", dtype="float32")
    assert soundfile.info(tmp_path / "float" / "loud.wav").subtype == "FLOAT" and np.abs(decoded).max() > 1

    flac = ["decode", str(tmp_path / "codes"), "-o", str(tmp_path / "flac"), "--format", "flac", "--subtype", "FLOAT"]
    assert main(flac + arguments) == 1  # before any work
    assert "--subtype FLOAT cannot be written to FLAC files; they take PCM_S8, PCM_16, PCM_24." in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "flac").exists()


def test_a_format_that_cannot_hold_the_audio_fails_before_decoding(tmp_path, model_dir, capsys, monkeypatch):
    from modeling_dac import compression

    config = DacConfig.from_pretrained("hub_configs/tiny")
    codes = np.zeros((1, 4, 5), dtype=np.int64)
    DacFile.from_codes(codes, config, sample_rate=96000, original_length=9600).save(tmp_path / "hi.dac")

    def never(*args, **kwargs):
        raise AssertionError("decoded before the output could be opened")

    monkeypatch.setattr(compression, "iter_decode_long", never)
    assert main(["decode", str(tmp_path / "hi.dac"), "-o", str(tmp_path / "hi.mp3"), "--model", str(model_dir)]) == 1
    err = capsys.readouterr().err
    assert "Cannot write audio file" in err and "MPEG-1/2/2.5 only supports sample rates" in err


def test_decode_reports_files_the_model_cannot_decode(tmp_path, model_dir, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "official.dac").write_bytes(OFFICIAL_DAC_FILE.read_bytes())  # 9 codebooks: the tiny model has 4
    (inputs / "garbage.dac").write_bytes(b"not a dac file")
    write_silent_dac_file(inputs / "good.dac")
    arguments = ["decode", str(inputs), "-o", str(tmp_path / "out"), "--model", str(model_dir)]
    assert main(arguments + ["--format", "flac"]) == 1
    err = capsys.readouterr().err
    assert "2 file(s) failed" in err
    assert f"{inputs / 'official.dac'}: " in err and "n_codebooks: the file uses 9 codebooks" in err
    assert f"{inputs / 'garbage.dac'}: not a .dac file" in err
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["good.flac"]


def test_format_must_agree_with_a_named_output_file(tmp_path, model_dir, capsys):
    path = write_silent_dac_file(tmp_path / "x.dac")
    assert main(["decode", str(path), "-o", str(tmp_path / "x.wav"), "--model", str(model_dir), "--format=flac"]) == 1
    assert "--format flac contradicts the output file name" in capsys.readouterr().err
    assert main(["decode", str(path), "-o", str(tmp_path / "x.ogg"), "--model", str(model_dir)]) == 0
    assert soundfile.info(tmp_path / "x.ogg").format == "OGG"


def test_documentation_examples_run(tmp_path, monkeypatch, capsys):
    """docs/cli.md: its setup block, then every `dac` command of its bash blocks, with the exit status it states."""
    monkeypatch.chdir(tmp_path)
    for name in ("hub_configs", "examples"):
        (tmp_path / name).symlink_to(REPO / name)
    page = REPO / "docs" / "cli.md"
    run_markdown_examples(page)
    outputs = {}
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.DOTALL):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if not words or words[1] == "convert":  # no official checkpoint offline (tests/test_conversion)
                continue
            expected_status = 1 if "# exits 1" in line else 0
            capsys.readouterr()
            assert main(words[1:]) == expected_status, line
            outputs[" ".join(words)] = capsys.readouterr().out
    documented_info = re.search(r"```text\n(codes/live/stereo.dac\n.*?)```", page.read_text(), flags=re.DOTALL)
    assert outputs["dac info codes/live/stereo.dac"] == documented_info.group(1)
    assert soundfile.info("decoded/live/stereo.wav").channels == 2


def test_no_progress_hides_every_bar(audio_tree, tmp_path, model_dir, capsys):
    from transformers.utils import logging as transformers_logging

    try:
        argv = ["encode", str(audio_tree / "a.wav"), "-o", str(tmp_path / "a.dac"), "--model", str(model_dir)]
        assert main(argv + ["--no-progress"]) == 0
        captured = capsys.readouterr()
        assert "Loading weights" not in captured.err and "Encoding" not in captured.err
    finally:
        transformers_logging.enable_progress_bar()
