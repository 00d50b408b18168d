import os

import numpy as np
import pytest
import soundfile

from modeling_dac import audio


def test_integer_pcm_is_scaled_to_unit_range():
    np.testing.assert_allclose(audio.to_float_audio(np.array([-32768, 0, 16384], dtype=np.int16)), [-1, 0, 0.5])
    np.testing.assert_allclose(audio.to_float_audio(np.array([-(2**31), 2**30], dtype=np.int32)), [-1, 0.5])
    np.testing.assert_allclose(audio.to_float_audio(np.array([0, 128, 192], dtype=np.uint8)), [-1, 0, 0.5])
    np.testing.assert_allclose(audio.to_float_audio(np.array([-32768, 16384], dtype=">i2")), [-1, 0.5])  # big-endian
    with pytest.raises(ValueError, match="unsupported sample type"):
        audio.to_float_audio(np.array(["a"]))


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".aif"])
def test_save_and_load_round_trip_keeps_channels(tmp_path, suffix):
    stereo = (np.random.default_rng(0).standard_normal((2, 4000)) * 0.1).astype(np.float32)
    path = tmp_path / f"clip{suffix}"
    audio.save_audio(path, stereo, 16000)
    loaded, rate = audio.load_audio(path)
    assert rate == 16000 and loaded.shape == stereo.shape
    if suffix != ".ogg":
        np.testing.assert_allclose(loaded, stereo, atol=1e-4)
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [entry.name for entry in tmp_path.iterdir()] == [path.name]


def test_save_warns_when_integer_samples_clip_and_float_keeps_them(tmp_path, recwarn):
    hot = np.array([[0.5, 1.5, -2.0, 0.25], [0.0, 0.1, 0.2, 0.3]], dtype=np.float32)  # 2 of 8 samples beyond 1
    with pytest.warns(UserWarning) as record:
        audio.save_audio(tmp_path / "hot.wav", hot, 8000)
    assert len(record) == 1
    assert str(record[0].message).startswith(
        f"{tmp_path / 'hot.wav'}: 25% of the samples exceed full scale (peak 2, +6.0 dBFS) and were clipped to "
        "[-1, 1] in its PCM_16 samples"
    )
    assert np.abs(audio.load_audio(tmp_path / "hot.wav")[0]).max() <= 1
    audio.save_audio(tmp_path / "hot_float.wav", hot, 8000, subtype="FLOAT")
    audio.save_audio(tmp_path / "quiet.wav", hot.clip(-1, 1), 8000)
    assert not recwarn.list
    np.testing.assert_array_equal(audio.load_audio(tmp_path / "hot_float.wav")[0], hot)


def test_failed_save_keeps_the_old_file_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "clip.wav"
    audio.save_audio(path, np.zeros(100, dtype=np.float32), 8000)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(soundfile, "write", fail)
    with pytest.raises(OSError, match="disk full"):
        audio.save_audio(path, np.ones(100, dtype=np.float32), 8000)
    assert path.read_bytes() == before
    assert [entry.name for entry in tmp_path.iterdir()] == ["clip.wav"]


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF garbage")
    with pytest.raises(ValueError, match="Cannot read audio file .*bad.wav"):
        audio.load_audio(bad)


def test_resample_and_loudness():
    rate = 16000
    sine = (0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    resampled = audio.resample(np.stack([sine, sine]), rate, 8000)
    assert resampled.shape == (2, 8000)
    normalized, loudness = audio.normalize_loudness(sine[None], rate, target_lufs=-16.0)
    assert audio.integrated_loudness(normalized, rate) == pytest.approx(-16.0, abs=0.05)
    assert audio.integrated_loudness(sine[None] * 0.5, rate) == pytest.approx(loudness - 6.02, abs=0.05)
    silent, silent_loudness = audio.normalize_loudness(np.zeros((1, rate), dtype=np.float32), rate)
    assert silent_loudness == -np.inf and not silent.any()


def test_audio_shorter_than_one_output_sample_is_a_clear_error():
    with pytest.raises(ValueError, match="1 sample\\(s\\) at 44100 Hz are shorter than one sample at 16000 Hz"):
        audio.resample(np.array([0.5], dtype=np.float32), 44100, 16000)
    with pytest.raises(ValueError, match="too short to resample"):
        audio.resample(np.zeros((2, 2), dtype=np.float32), 96000, 16000)
    assert audio.resample(np.zeros(3, dtype=np.float32), 44100, 16000).shape == (1,)
    assert audio.resample(np.zeros((2, 0), dtype=np.float32), 44100, 16000).shape == (2, 0)


def test_unknown_output_format_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown audio format '.xyz'"):
        audio.save_audio(tmp_path / "clip.xyz", np.zeros(10, dtype=np.float32), 8000)
    assert list(tmp_path.iterdir()) == []
