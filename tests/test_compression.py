"""compress / decompress (arrays) and compress_file / decompress_file (block by block, bounded memory)."""

import dataclasses
import re
import tracemalloc
import warnings

import numpy as np
import pytest
import soundfile
import torch

from docs_examples import REPO, run_markdown_examples
from modeling_dac import DacConfig, DacFile, DacModel, modeling_dac
from modeling_dac.audio import AUDIO_EXTENSIONS, LoudnessMeter, integrated_loudness, resample
from modeling_dac.compression import TARGET_LOUDNESS, compress, compress_file, decompress, decompress_file
from modeling_dac.dac_file import DacFileMetadata
from test_windowing import random_model, whole_decode, whole_encode

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def music_like(channels: int, samples: int, sampling_rate: int, seed: int = 0) -> np.ndarray:
    """Tones and noise with a level that changes over time, different per channel: float32 (channels, samples)."""
    rng = np.random.default_rng(seed)
    time_axis = np.arange(samples) / sampling_rate
    audio = [
        (0.05 + 0.2 * channel) * (1.2 + np.sin(2 * np.pi * 0.7 * time_axis))
        * (np.sin(2 * np.pi * (330 + 110 * channel) * time_axis) + 0.3 * rng.standard_normal(samples))
        for channel in range(channels)
    ]
    return np.stack(audio).astype(np.float32)


def test_stereo_round_trip_keeps_channels_length_and_codes():
    model = random_model("44khz")
    audio = music_like(2, 20 * 512 + 100, 44100)
    dac_file = compress(model, audio, 44100, window_duration=18 / model.config.frame_rate)
    metadata = dac_file.metadata
    assert (metadata.channels, metadata.original_length, metadata.sample_rate) == (2, audio.shape[1], 44100)
    assert metadata.loudness is None and metadata.padding and metadata.chunk_length is None
    assert np.array_equal(dac_file.codes, whole_encode(model, torch.from_numpy(audio)).numpy())

    decoded = decompress(model, dac_file, window_duration=22 / model.config.frame_rate)
    assert decoded.shape == audio.shape and decoded.dtype == np.float32
    expected = whole_decode(model, torch.from_numpy(dac_file.codes))[:, : audio.shape[1]].numpy()
    assert np.abs(decoded - expected).max() < 1e-4
    assert np.abs(model.decompress(dac_file) - decoded).max() < 1e-4  # DacModel.decompress delegates here


def test_other_rates_are_resampled_and_come_back_at_the_original_rate_and_length():
    model = random_model("24khz")  # runs at 24 kHz
    audio = music_like(1, 44100 + 7, 44100)
    dac_file = model.compress(audio[0], 44100)  # mono (samples,) input
    assert dac_file.metadata.sample_rate == 44100 and dac_file.metadata.original_length == 44107
    at_model_rate = resample(audio, 44100, 24000)
    assert np.array_equal(dac_file.codes, whole_encode(model, torch.from_numpy(at_model_rate)).numpy())
    decoded = decompress(model, dac_file)
    assert decoded.shape == (1, 44107)
    expected = resample(whole_decode(model, torch.from_numpy(dac_file.codes)).numpy(), 24000, 44100)[:, :44107]
    assert np.abs(decoded - expected).max() < 1e-4


def test_integer_pcm_and_fewer_quantizers():
    model = random_model("44khz")
    audio = (music_like(1, 9000, 44100) * 32767).astype(np.int16)
    dac_file = compress(model, audio, 44100, n_quantizers=2)
    assert dac_file.codes.shape == (1, 2, 18) and dac_file.metadata.n_codebooks == 2
    expected = whole_encode(model, torch.from_numpy(audio / np.float32(32768.0)).float(), n_quantizers=2)
    assert np.array_equal(dac_file.codes, expected.numpy())
    assert decompress(model, dac_file).shape == (1, 9000)


def test_float_tensors_of_any_precision_are_accepted():
    model = random_model("44khz")
    audio = torch.from_numpy(music_like(2, 9000, 44100)).bfloat16()  # numpy has no bfloat16
    expected = whole_encode(model, audio.float())
    assert np.array_equal(compress(model, audio, 44100).codes, expected.numpy())


def test_loudness_is_normalised_stored_and_restored():
    model = random_model("24khz")
    audio = music_like(2, 2 * 48000, 48000) * 0.3
    loudness = integrated_loudness(audio, 48000)
    dac_file = compress(model, audio, 48000, normalize_loudness=True)
    assert dac_file.metadata.loudness == pytest.approx(loudness, abs=1e-9)
    gain = 10 ** ((TARGET_LOUDNESS - loudness) / 20)
    assert np.abs(audio).max() * gain < 1  # no peak limiting in this case: the gain is the plain one
    normalised = torch.from_numpy(resample(audio * np.float32(gain), 48000, 24000))
    assert np.array_equal(dac_file.codes, whole_encode(model, normalised).numpy())
    decoded = decompress(model, dac_file)
    assert integrated_loudness(decoded, 48000) == pytest.approx(loudness, abs=0.01)


def test_loudness_normalisation_keeps_the_peak_within_one_and_skips_silence():
    model = random_model("44khz")
    spiky = music_like(1, 44100, 44100) * 0.01
    spiky[0, 1000] = 0.9  # quiet, so the -16 LUFS gain would push this peak far above 1
    dac_file = compress(model, spiky, 44100, normalize_loudness=True)
    scaled = torch.from_numpy(spiky * (1.0 / 0.9))  # scaled so that the peak lands on 1.0
    assert np.array_equal(dac_file.codes, whole_encode(model, scaled).numpy())
    silent = compress(model, np.zeros((1, 5000), np.float32), 44100, normalize_loudness=True)
    assert silent.metadata.loudness is None


def test_input_beyond_full_scale_is_encoded_as_it_is_with_one_warning_unless_normalised(tmp_path):
    model = random_model("24khz")
    hot = music_like(1, 11 * 24000, 24000)  # 11 s: two blocks of compress_file
    hot *= np.float32(2.7 / np.abs(hot).max())
    with pytest.warns(UserWarning, match=r"^the audio peaks at 2\.7 \(\+8\.6 dBFS\), beyond full scale") as record:
        dac_file = compress(model, hot, 24000)
    assert len(record) == 1
    assert np.array_equal(dac_file.codes, whole_encode(model, torch.from_numpy(hot)).numpy())  # numerics unchanged
    soundfile.write(tmp_path / "hot.wav", hot.T, 24000, subtype="FLOAT")
    with pytest.warns(UserWarning, match=re.escape(f"Audio file {tmp_path / 'hot.wav'} peaks at 2.7 ")) as record:
        compress_file(model, tmp_path / "hot.wav", tmp_path / "hot.dac")
    assert len(record) == 1 and "--normalize-loudness" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # normalisation keeps the peak within [-1, 1]: no warning
        compress(model, hot, 24000, normalize_loudness=True)
        compress_file(model, tmp_path / "hot.wav", tmp_path / "hot.dac", normalize_loudness=True)


def test_restored_loudness_may_exceed_full_scale_and_clipping_it_on_writing_warns(tmp_path):
    model = random_model("24khz")
    quiet = compress(model, music_like(2, 24000, 24000) * 0.3, 24000, normalize_loudness=True)
    # A loud input (0 LUFS) was normalised down to -16 LUFS; restoring its loudness has no peak limit.
    loud = DacFile(quiet.codes, dataclasses.replace(quiet.metadata, loudness=0.0))
    decoded = decompress(model, loud)
    assert np.abs(decoded).max() > 1  # returned unclipped
    output = tmp_path / "loud.wav"
    with pytest.warns(UserWarning, match=re.escape(f"{output}: ")) as record:
        decompress_file(model, loud, output)
    assert len(record) == 1
    message = str(record[0].message)
    share, peak = re.search(r": ([\d.]+)% of the samples exceed full scale \(peak ([\d.]+), ", message).groups()
    assert float(share) == pytest.approx(100 * np.mean(np.abs(decoded) > 1), rel=0.01)
    assert float(peak) == pytest.approx(np.abs(decoded).max(), rel=0.01)
    assert "were clipped to [-1, 1] in its PCM_16 samples" in message
    assert np.abs(soundfile.read(output)[0]).max() <= 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float samples and the lossy codecs keep the peaks: no warning
        decompress_file(model, loud, tmp_path / "float.wav", subtype="FLOAT")
        decompress_file(model, loud, tmp_path / "loud.ogg")
    floats = soundfile.read(tmp_path / "float.wav", dtype="float32", always_2d=True)[0].T
    assert np.abs(floats - decoded).max() < 1e-4


@pytest.mark.parametrize(
    "audio, sampling_rate, message",
    [
        (np.zeros((2, 0), np.float32), 44100, "empty"),
        (np.full((1, 100), np.nan, np.float32), 44100, "NaN"),
        (np.zeros((1000, 2), np.float32), 44100, "more channels than samples"),
        (np.zeros((1, 2, 100), np.float32), 44100, "shape"),
        (np.zeros((1, 100), np.float32), 0, "sampling_rate"),
        ("audio.wav", 44100, "numpy array"),
    ],
)
def test_bad_input_is_a_clear_error(audio, sampling_rate, message):
    with pytest.raises(ValueError, match=message):
        compress(random_model("44khz"), audio, sampling_rate)


def test_audio_too_short_for_the_model_rate_is_refused_and_nothing_is_written(tmp_path):
    model = random_model("24khz")  # 24 kHz: one sample at 96 kHz is a quarter of a sample
    with pytest.raises(ValueError, match="too short to resample"):
        compress(model, np.full((1, 1), 0.5, np.float32), 96000)
    soundfile.write(tmp_path / "one.wav", np.array([0.5], np.float32), 96000)
    with pytest.raises(ValueError, match="one.wav is too short to encode: its 1 sample"):
        compress_file(model, tmp_path / "one.wav", tmp_path / "one.dac")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["one.wav"]


def test_an_output_format_that_cannot_hold_the_audio_is_named(tmp_path):
    model = random_model("24khz")
    compress(model, music_like(3, 2400, 24000), 24000).save(tmp_path / "three.dac")
    with pytest.raises(ValueError, match=r"Cannot write audio file .*three\.mp3 \(3 channel\(s\) at 24000 Hz as MP3\)"):
        decompress_file(model, tmp_path / "three.dac", tmp_path / "three.mp3")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["three.dac"]


def test_every_audio_extension_is_a_decompress_file_output(tmp_path):
    model = random_model("24khz")
    dac_file = compress(model, music_like(1, 2400, 24000), 24000)
    for suffix in AUDIO_EXTENSIONS:
        output = decompress_file(model, dac_file, tmp_path / f"clip{suffix}")
        assert soundfile.info(output).frames == 2400


def test_a_model_that_does_not_match_is_refused(tmp_path):
    dac_file = compress(random_model("44khz"), music_like(1, 3000, 44100), 44100)
    with pytest.raises(ValueError, match="cannot be decoded with this model"):
        decompress(random_model("24khz"), dac_file)
    dac_file.save(tmp_path / "clip.dac")
    with pytest.raises(ValueError, match="cannot be decoded with this model"):
        decompress_file(random_model("24khz"), tmp_path / "clip.dac", tmp_path / "clip.wav")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.dac"]  # nothing half-written


@pytest.mark.parametrize(
    "strides, file_rate, channels, normalize",
    [("44khz", 44100, 2, False), ("24khz", 32000, 1, True), ("24khz", 24000, 3, True)],
)
def test_file_functions_equal_the_array_functions(tmp_path, strides, file_rate, channels, normalize):
    model = random_model(strides)
    audio = music_like(channels, int(1.7 * file_rate) + 3, file_rate)
    input_path = tmp_path / "input.flac"
    soundfile.write(input_path, audio.T, file_rate, subtype="PCM_24")
    audio = soundfile.read(input_path, dtype="float32", always_2d=True)[0].T  # what the file holds

    written = compress_file(model, input_path, tmp_path / "clip.dac", normalize_loudness=normalize)
    loaded = DacFile.load(tmp_path / "clip.dac")
    in_memory = compress(model, audio, file_rate, normalize_loudness=normalize)
    assert np.array_equal(loaded.codes, in_memory.codes) and np.array_equal(written.codes, in_memory.codes)
    if normalize:
        assert loaded.metadata.loudness == pytest.approx(in_memory.metadata.loudness, abs=1e-9)
    assert loaded.metadata == in_memory.metadata

    output = decompress_file(model, tmp_path / "clip.dac", tmp_path / "decoded.wav", subtype="FLOAT")
    decoded, rate = soundfile.read(output, dtype="float32", always_2d=True)
    assert rate == file_rate and decoded.shape == audio.T.shape
    assert np.abs(decoded.T - decompress(model, loaded)).max() < 1e-4
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.dac", "decoded.wav", "input.flac"]


def test_a_clip_shorter_than_the_resamplers_delay_gets_its_loudness_back(tmp_path):
    # The streaming resampler's first block is empty for a clip this short: decoding must still match.
    torch.manual_seed(0)
    model = DacModel(DacConfig.from_pretrained(REPO / "hub_configs" / "tiny")).eval()
    soundfile.write(tmp_path / "click.wav", music_like(1, 160, 8000)[0], 8000, subtype="FLOAT")  # 20 ms
    compress_file(model, tmp_path / "click.wav", tmp_path / "click.dac", normalize_loudness=True)
    output = decompress_file(model, tmp_path / "click.dac", tmp_path / "decoded.wav", subtype="FLOAT")
    decoded = soundfile.read(output, dtype="float32", always_2d=True)[0].T
    assert np.abs(decoded - decompress(model, DacFile.load(tmp_path / "click.dac"))).max() < 1e-4


def test_streaming_loudness_meter_equals_pyloudnorm():
    rng = np.random.default_rng(3)
    for sampling_rate, channels, samples in [(44100, 2, 44100 * 3 + 17), (16000, 1, 3000), (48000, 5, 48000)]:
        audio = (rng.standard_normal((channels, samples)) * np.linspace(0.001, 0.5, samples)).astype(np.float32)
        meter, start = LoudnessMeter(sampling_rate, channels), 0
        meter.update(audio[:, :0])  # empty blocks (a resampler's first output) change nothing
        while start < samples:
            stop = start + int(rng.integers(0, 9000))
            meter.update(audio[:, start:stop])
            start = stop
        assert meter.integrated_loudness() == pytest.approx(integrated_loudness(audio, sampling_rate), abs=1e-9)
    silent = LoudnessMeter(8000, 1)
    silent.update(np.zeros((1, 8000)))
    assert silent.integrated_loudness() == -np.inf
    with pytest.raises(ValueError, match="1 to 5 channels"):
        LoudnessMeter(8000, 6)


def _file_path_peak_bytes(model: DacModel, directory, seconds: float) -> int:
    """Peak of numpy/Python allocations (tracemalloc) while a file of `seconds` is compressed and decompressed."""
    rate = model.config.sampling_rate
    input_path = directory / f"input_{seconds}.wav"
    with soundfile.SoundFile(input_path, "w", rate, 1, subtype="FLOAT") as sink:
        for start in range(0, int(seconds * rate), rate):
            sink.write(music_like(1, rate, rate, seed=start).T)
    tracemalloc.start()
    try:
        compress_file(model, input_path, directory / "clip.dac", normalize_loudness=True, window_duration=2.0)
        decompress_file(model, directory / "clip.dac", directory / "clip.wav", window_duration=2.0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_file_path_memory_does_not_grow_with_the_length(tmp_path, monkeypatch):
    monkeypatch.setattr("modeling_dac.compression._BLOCK_SECONDS", 1.0)
    torch.manual_seed(0)
    config = DacConfig(
        encoder_hidden_size=2,
        decoder_hidden_size=16,
        downsampling_ratios=[2, 4, 5, 8],
        sampling_rate=4000,
        n_codebooks=2,
        codebook_size=64,
    )
    model = DacModel(config).eval()
    short = _file_path_peak_bytes(model, tmp_path, 4.0)
    long = _file_path_peak_bytes(model, tmp_path, 32.0)
    # Reading or writing the whole file would cost 32 s * 4000 Hz * 4 bytes = 512 kB more for the long one; the
    # codes, the only thing kept whole, add 8 bytes per frame and codebook (2 * 400 frames * 8 = 6.4 kB).
    assert long < short + 100_000, (short, long)


def official_file(
    codes: torch.Tensor, chunk_length: int | None, original_length: int, loudness, sample_rate: int = 44100
) -> DacFile:
    """An official descript-audio-codec 1.0.0 file holding `codes`: chunked (convolution padding off) when
    `chunk_length` is given, else one padded chunk, as the official code writes clips shorter than its window."""
    metadata = DacFileMetadata(
        sample_rate=sample_rate, original_length=original_length, channels=codes.shape[0],
        n_codebooks=codes.shape[1], codebook_size=None, hop_length=None, model_sampling_rate=None,
        loudness=loudness, chunk_length=chunk_length, padding=chunk_length is None, official_dac_version="1.0.0",
    )  # fmt: skip
    return DacFile(codes.numpy(), metadata)


def test_an_interrupted_loudness_restoring_decode_leaves_no_scratch_file(tmp_path, monkeypatch):
    from modeling_dac import compression

    model = random_model("24khz")
    dac_file = compress(model, music_like(1, 4800, 24000), 24000, normalize_loudness=True)
    original_sound_file = compression._sound_file

    class Interrupted:  # the output sink; the scratch file (W64) is written for real
        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            return False

        def write(self, block):
            raise KeyboardInterrupt

    def sound_file(path, mode, name=None, **options):
        if mode == "w" and options.get("format") != "W64":
            return Interrupted()
        return original_sound_file(path, mode, name, **options)

    monkeypatch.setattr(compression, "_sound_file", sound_file)
    with pytest.raises(KeyboardInterrupt) as interrupted:
        decompress_file(model, dac_file, tmp_path / "clip.wav")
    # While the traceback lives (as in a CLI's handler), its frames hold the generator that made the scratch file.
    assert interrupted.tb is not None and list(tmp_path.iterdir()) == []


def test_a_length_the_codes_cannot_cover_is_refused_before_decoding(tmp_path):
    model = random_model("24khz")
    dac_file = compress(model, music_like(1, 4800, 48000), 48000)  # 8 frames at 24 kHz, hop 320
    assert decompress(model, dac_file).shape == (1, 4800)
    corrupt = DacFile(dac_file.codes, dataclasses.replace(dac_file.metadata, original_length=2**62))
    with pytest.raises(ValueError, match="corrupt: it claims 4611686018427387904 samples at 48000 Hz"):
        decompress(model, corrupt)
    corrupt.save(tmp_path / "corrupt.dac")
    with pytest.raises(ValueError, match="corrupt"):
        decompress_file(model, tmp_path / "corrupt.dac", tmp_path / "decoded.wav")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["corrupt.dac"]


def test_official_chunked_files_decode_chunk_by_chunk_without_padding():
    model = random_model("44khz", n_codebooks=9)
    codes = whole_encode(model, torch.from_numpy(music_like(1, 90 * 512, 44100)))
    decoded = decompress(model, official_file(codes, 30, 20000, loudness=None))[0]
    assert decoded.shape == (20000,)
    # Without padding a chunk of 30 frames decodes to 7018 samples (by hand: conv 24 frames, then per block
    # (in - 1) * stride + 2 * stride for the transposed convolution and - 6 * (1 + 3 + 9) for the residual
    # units: 200 -> 122, 984 -> 906, 3628 -> 3550, 7102 -> 7024, final conv 7018). Away from the edges, where
    # the unpadded transposed convolutions see the chunk's ends, each chunk equals the padded decode of the same
    # 30 frames, at the same offset for every chunk.
    per_chunk, interior = 7018, slice(1000, 6000)
    with torch.no_grad():
        padded = [whole_decode(model, codes[..., first : first + 30])[0] for first in (0, 30)]
    pieces = [torch.from_numpy(decoded[index * per_chunk : (index + 1) * per_chunk]) for index in (0, 1)]
    errors = torch.stack([
        torch.stack([
            (padded[index][offset : offset + per_chunk][interior] - pieces[index][interior]).abs().max()
            for index in (0, 1)
        ])
        for offset in range(padded[0].shape[0] - per_chunk + 1)
    ])  # fmt: skip
    assert errors.max(dim=1).values.min() < 1e-5
    assert pieces[0].abs().max() > 0.05


def test_official_chunked_files_decode_the_same_when_blocks_are_long_enough_to_tile(monkeypatch):
    # Files made without padding decode with the padding set to 0, where the residual units crop instead of
    # keeping the length; small tiles make the last block (7024 frames per chunk) long enough to tile.
    model = random_model("44khz", n_codebooks=9)
    codes = whole_encode(model, torch.from_numpy(music_like(1, 90 * 512, 44100)))
    file = official_file(codes, 30, 20000, loudness=None)
    expected = decompress(model, file)
    monkeypatch.setattr(modeling_dac, "TIME_TILE_FRAMES", 48)
    np.testing.assert_array_equal(decompress(model, file), expected)


def test_official_chunked_files_restore_the_stored_loudness():
    model = random_model("44khz", n_codebooks=9)
    codes = whole_encode(model, torch.from_numpy(music_like(1, 90 * 512, 44100)))
    # The official order: the whole decoded audio (3 chunks of 7018 samples) is scaled, then cut.
    decoded = decompress(model, official_file(codes, 30, 3 * 7018, loudness=-20.0))
    assert decoded.shape == (1, 3 * 7018)
    assert integrated_loudness(decoded, 44100) == pytest.approx(-20.0, abs=1e-6)


def test_official_stereo_files_get_one_gain_for_all_channels():
    # The loudness was measured over both channels; the official decompress scales each channel alone to it.
    model = random_model("44khz", n_codebooks=9)
    codes = whole_encode(model, torch.from_numpy(music_like(2, 90 * 512, 44100)))
    unscaled = decompress(model, official_file(codes, 30, 3 * 7018, loudness=None))
    decoded = decompress(model, official_file(codes, 30, 3 * 7018, loudness=-20.0))
    assert integrated_loudness(decoded, 44100) == pytest.approx(-20.0, abs=1e-6)
    gains = np.sqrt(np.mean(decoded**2, axis=1) / np.mean(unscaled**2, axis=1))
    assert gains[0] == pytest.approx(gains[1], rel=1e-5) and gains[0] != pytest.approx(1.0, rel=1e-2)


def test_official_padded_files_are_scaled_at_the_model_rate_before_resampling(tmp_path):
    # The official encoder measured the loudness after resampling to the model's rate, and its decoder scales
    # there too; the gain is a single number, so the output is the unscaled decode times that gain.
    model = random_model("44khz", n_codebooks=9)
    codes = whole_encode(model, torch.from_numpy(music_like(1, 40 * 512, 44100)))
    original_length = 40 * 512 * 48000 // 44100
    unscaled = decompress(model, official_file(codes, None, original_length, loudness=None, sample_rate=48000))
    official = official_file(codes, None, original_length, loudness=-20.0, sample_rate=48000)
    decoded = decompress(model, official)
    at_model_rate = whole_decode(model, codes).numpy()
    gain = 10 ** ((-20.0 - integrated_loudness(at_model_rate, 44100)) / 20)
    np.testing.assert_allclose(decoded, unscaled * gain, rtol=1e-5, atol=1e-7)
    assert abs(integrated_loudness(decoded, 48000) - -20.0) > 1e-4  # measured at 48 kHz it differs a little
    written = decompress_file(model, official, tmp_path / "clip.wav", subtype="FLOAT")
    np.testing.assert_array_equal(soundfile.read(written, dtype="float32", always_2d=True)[0].T, decoded)


def test_official_chunked_files_decode_with_a_bf16_decoder():
    model = random_model("44khz", n_codebooks=9)
    codes = whole_encode(model, torch.from_numpy(music_like(1, 90 * 512, 44100)))
    official = official_file(codes, 30, 20000, loudness=None)
    expected = decompress(model, official)
    model.decoder.to(torch.bfloat16)  # as from_pretrained(..., dtype=torch.bfloat16): the quantizer stays fp32
    decoded = decompress(model, official)
    assert decoded.shape == expected.shape
    assert np.sqrt(np.mean((decoded - expected) ** 2)) < 0.05 * np.sqrt(np.mean(expected**2))  # bf16 rounding


def test_official_chunks_too_short_for_the_model_are_a_clear_error():
    official = DacFile.load(REPO / "tests" / "fixtures" / "official_dac" / "official_numpy2.dac")  # 7-frame chunks
    model = DacModel(DacConfig(encoder_hidden_size=2, decoder_hidden_size=16, n_codebooks=9)).eval()
    with pytest.raises(ValueError, match="chunk_length=7 frames are too short"):
        decompress(model, official)


def test_long_audio_docs_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_markdown_examples(REPO / "docs" / "long_audio.md")
