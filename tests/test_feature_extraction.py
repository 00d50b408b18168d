import numpy as np
import pytest
import soxr
import torch

from modeling_dac import DacConfig, DacFeatureExtractor, DacModel

from docs_examples import REPO, run_markdown_examples

SAMPLING_RATE = 16000
HOP = 320


@pytest.fixture
def extractor():
    return DacFeatureExtractor(sampling_rate=SAMPLING_RATE, hop_length=HOP)


def noise(*shape, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 0.3).astype(np.float32)


def test_numpy_torch_and_lists_give_the_same_features(extractor):
    clips = [noise(700, seed=1), noise(1000, seed=2)]
    from_numpy = extractor(clips, sampling_rate=SAMPLING_RATE)
    from_torch = extractor([torch.from_numpy(clip) for clip in clips], sampling_rate=SAMPLING_RATE)
    from_lists = extractor([clip.tolist() for clip in clips], sampling_rate=SAMPLING_RATE)
    for features in (from_torch, from_lists):
        torch.testing.assert_close(features["input_values"], from_numpy["input_values"], rtol=0, atol=0)
        torch.testing.assert_close(features["padding_mask"], from_numpy["padding_mask"], rtol=0, atol=0)
    single = extractor(clips[0].tolist(), sampling_rate=SAMPLING_RATE)  # a flat list is one clip
    assert single["input_values"].shape == (1, 1, 960)


def test_output_types_shapes_and_values(extractor):
    clip = noise(1000)
    features = extractor(clip, sampling_rate=SAMPLING_RATE)
    assert set(features) == {"input_values", "padding_mask"}
    assert features["input_values"].dtype == torch.float32 and features["padding_mask"].dtype == torch.int64
    assert features["input_values"].shape == (1, 1, 1280) and features["padding_mask"].shape == (1, 1280)
    np.testing.assert_array_equal(features["input_values"][0, 0, :1000].numpy(), clip)
    as_numpy = extractor(clip, sampling_rate=SAMPLING_RATE, return_tensors="np")
    assert isinstance(as_numpy["input_values"], np.ndarray) and as_numpy["input_values"].dtype == np.float32
    np.testing.assert_array_equal(as_numpy["input_values"], features["input_values"].numpy())


def test_float64_and_reduced_precision_tensors_become_float32(extractor):
    clip = np.array([0.5, -0.25, 0.125, 1.0])
    features = extractor(clip, sampling_rate=SAMPLING_RATE)
    np.testing.assert_array_equal(features["input_values"][0, 0, :4].numpy(), clip.astype(np.float32))
    for dtype in (torch.float16, torch.bfloat16):  # these values are exact in both
        from_tensor = extractor(torch.tensor(clip, dtype=dtype), sampling_rate=SAMPLING_RATE)
        torch.testing.assert_close(from_tensor["input_values"], features["input_values"], rtol=0, atol=0)


@pytest.mark.parametrize(
    "samples, expected",
    [
        (np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16), [-1.0, -0.5, 0.0, 0.5, 32767 / 32768]),
        (np.array([-(2**31), -(2**30), 0, 2**30], dtype=np.int32), [-1.0, -0.5, 0.0, 0.5]),
        (np.array([-128, -64, 0, 64, 127], dtype=np.int8), [-1.0, -0.5, 0.0, 0.5, 127 / 128]),
        (np.array([0, 64, 128, 192, 255], dtype=np.uint8), [-1.0, -0.5, 0.0, 0.5, 127 / 128]),
    ],
)
def test_integer_pcm_is_scaled_to_unit_range(extractor, samples, expected):
    features = extractor(samples, sampling_rate=SAMPLING_RATE)
    np.testing.assert_allclose(features["input_values"][0, 0, : len(expected)].numpy(), expected, rtol=0, atol=1e-7)
    from_tensor = extractor(torch.from_numpy(samples), sampling_rate=SAMPLING_RATE)
    torch.testing.assert_close(from_tensor["input_values"], features["input_values"], rtol=0, atol=0)


def test_int16_and_float_versions_of_a_clip_agree(extractor):
    clip = np.clip(noise(900), -1, 1)
    pcm = np.round(clip * 32767).astype(np.int16)
    from_pcm = extractor(pcm, sampling_rate=SAMPLING_RATE)["input_values"][0, 0, :900].numpy()
    np.testing.assert_allclose(from_pcm, clip, rtol=0, atol=1.5 / 32768)


def test_multichannel_axis_and_fold(extractor):
    stereo = noise(2, 800)  # (channels, samples)
    mono = noise(500, seed=3)
    channels_first = extractor([stereo, mono], sampling_rate=SAMPLING_RATE)
    channels_last = extractor([stereo.T, mono], sampling_rate=SAMPLING_RATE, channel_axis=-1)
    torch.testing.assert_close(channels_last["input_values"], channels_first["input_values"], rtol=0, atol=0)
    values = channels_first["input_values"]
    assert values.shape == (3, 1, 960)  # clip 0's two channels, then clip 1
    np.testing.assert_array_equal(values[0, 0, :800].numpy(), stereo[0])
    np.testing.assert_array_equal(values[1, 0, :800].numpy(), stereo[1])
    np.testing.assert_array_equal(values[2, 0, :500].numpy(), mono)
    assert channels_first["padding_mask"].sum(-1).tolist() == [800, 800, 500]


def test_multichannel_mean(extractor):
    surround = noise(6, 700)
    features = extractor(surround.T, sampling_rate=SAMPLING_RATE, channel_axis=-1, multichannel="mean")
    assert features["input_values"].shape == (1, 1, 960)
    np.testing.assert_allclose(features["input_values"][0, 0, :700].numpy(), surround.mean(0), rtol=0, atol=1e-7)
    assert features["padding_mask"].sum().item() == 700


def test_transposed_multichannel_clip_is_an_error_naming_channel_axis(extractor):
    with pytest.raises(ValueError, match="channel_axis=-1"):
        extractor(noise(1000, 2), sampling_rate=SAMPLING_RATE)  # (samples, channels) read as 1000 channels


def test_batch_of_different_lengths_is_right_padded_with_a_mask(extractor):
    lengths = [1, 319, 320, 321, 1000, 2345]
    clips = [noise(length, seed=length) for length in lengths]
    features = extractor(clips, sampling_rate=SAMPLING_RATE)
    values, mask = features["input_values"], features["padding_mask"]
    assert values.shape == (6, 1, 2560)  # 2345 rounded up to a multiple of 320
    assert mask.sum(-1).tolist() == lengths
    for row, (clip, length) in enumerate(zip(clips, lengths)):
        assert mask[row, :length].eq(1).all() and mask[row, length:].eq(0).all()
        np.testing.assert_array_equal(values[row, 0, :length].numpy(), clip)
        assert values[row, 0, length:].eq(0).all()


@pytest.mark.parametrize("length, padded", [(1, 320), (320, 320), (321, 640), (640, 640), (641, 960)])
def test_padding_to_a_hop_multiple(extractor, length, padded):
    assert extractor(noise(length), sampling_rate=SAMPLING_RATE)["input_values"].shape[-1] == padded


def test_max_length_padding_and_truncation(extractor):
    features = extractor(noise(100), sampling_rate=SAMPLING_RATE, padding="max_length", max_length=700)
    assert features["input_values"].shape == (1, 1, 960) and features["padding_mask"].sum().item() == 100
    with pytest.raises(ValueError, match="truncation=True"):
        extractor(noise(1000), sampling_rate=SAMPLING_RATE, padding="max_length", max_length=700)
    clip = noise(1000)
    cut = extractor(clip, sampling_rate=SAMPLING_RATE, padding="max_length", max_length=700, truncation=True)
    assert cut["padding_mask"].sum().item() == 700
    np.testing.assert_array_equal(cut["input_values"][0, 0, :700].numpy(), clip[:700])
    with pytest.raises(ValueError, match="max_length"):
        extractor(clip, sampling_rate=SAMPLING_RATE, padding="max_length")
    with pytest.raises(ValueError, match="padding"):
        extractor(clip, sampling_rate=SAMPLING_RATE, padding="left")
    for max_length in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="`max_length` must be a positive integer number of samples"):
            extractor(clip, sampling_rate=SAMPLING_RATE, truncation=True, max_length=max_length)


def test_a_sampling_rate_of_whole_float_value_is_taken(extractor):
    expected = extractor(noise(1000), sampling_rate=SAMPLING_RATE)["input_values"]
    for rate in (16000.0, np.float64(16000)):
        assert torch.equal(extractor(noise(1000), sampling_rate=rate)["input_values"], expected)


def test_wrong_sampling_rate_is_an_error(extractor):
    with pytest.raises(ValueError, match="44100 Hz but the model expects 16000 Hz.*resample=True"):
        extractor(noise(1000), sampling_rate=44100)


def test_resample_uses_soxr_and_keeps_the_mask_true_to_the_new_length(extractor):
    rate = 44100
    time = np.arange(rate // 2) / rate
    stereo = np.stack([np.sin(2 * np.pi * 440 * time), 0.5 * np.sin(2 * np.pi * 1000 * time)]).astype(np.float32)
    features = extractor([stereo, noise(4410)], sampling_rate=rate, resample=True)
    expected = soxr.resample(stereo.T, rate, SAMPLING_RATE, quality="HQ").T
    assert expected.shape[-1] == 8000
    assert features["padding_mask"].sum(-1).tolist() == [8000, 8000, 1600]
    np.testing.assert_allclose(features["input_values"][:2, 0, :8000].numpy(), expected, rtol=0, atol=1e-6)
    # Independent of soxr: the resampled tone is still the 440 Hz sine, now sampled at 16 kHz.
    target_time = np.arange(8000) / SAMPLING_RATE
    middle = slice(500, 7500)  # away from the filter's edge effects
    np.testing.assert_allclose(
        features["input_values"][0, 0, middle].numpy(), np.sin(2 * np.pi * 440 * target_time)[middle], atol=1e-3
    )


def test_resample_at_the_model_rate_changes_nothing(extractor):
    clip = noise(1000)
    same = extractor(clip, sampling_rate=SAMPLING_RATE, resample=True)
    np.testing.assert_array_equal(same["input_values"][0, 0, :1000].numpy(), clip)


@pytest.mark.parametrize(
    "raw_audio, message",
    [
        (np.zeros(0, dtype=np.float32), "Clip 0 is empty"),
        ([noise(10), np.zeros((2, 0), dtype=np.float32)], "Clip 1 is empty"),
        ([], "Clip 0 is empty"),
        (np.array([0.1, np.nan, 0.2], dtype=np.float32), "Clip 0 contains NaN or Inf"),
        ([noise(10), np.array([0.0, np.inf])], "Clip 1 contains NaN or Inf"),
        (np.array([0.0, 1e300]), "Clip 0 contains NaN or Inf"),  # beyond float32: inf after conversion
        (np.zeros((1, 2, 100), dtype=np.float32), "Clip 0 has 3 dimensions"),
        (np.float32(0.5), "Clip 0 has 0 dimensions"),
        (np.zeros(10, dtype=np.int64), "Clip 0: unsupported sample type int64"),
        (np.zeros(10, dtype=np.complex64), "unsupported sample type complex64"),
    ],
)
@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_bad_input_is_a_clear_error(extractor, raw_audio, message):
    with pytest.raises(ValueError, match=message):
        extractor(raw_audio, sampling_rate=SAMPLING_RATE)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"channel_axis": 2}, "`channel_axis` must be 0 or -1"),
        ({"multichannel": "sum"}, "`multichannel` must be 'fold' or 'mean'"),
        ({"return_tensors": "tf"}, "`return_tensors` must be 'pt' or 'np'"),
        ({"sampling_rate": "16000"}, "`sampling_rate` must be a positive integer in Hz, got '16000'"),
        ({"sampling_rate": True}, "`sampling_rate` must be a positive integer in Hz, got True"),
    ],
)
def test_bad_options_are_clear_errors(extractor, options, message):
    with pytest.raises(ValueError, match=message):
        extractor(noise(2, 100), **{"sampling_rate": SAMPLING_RATE, **options})


def _one_at_a_time(extractor, clips):
    return [extractor(clip, sampling_rate=SAMPLING_RATE, return_tensors="np") for clip in clips]


def test_pad_of_single_clip_features_equals_the_batch_call(extractor):
    clips = [noise(1000), noise(333, seed=1), noise(2, 700, seed=2), noise(2000, seed=3)]
    whole = extractor(clips, sampling_rate=SAMPLING_RATE)
    singles = _one_at_a_time(extractor, clips)
    as_stored_by_datasets = [{key: value.tolist() for key, value in single.items()} for single in singles]
    for entries in (singles, as_stored_by_datasets, whole):
        padded = extractor.pad(entries)
        assert torch.equal(padded["input_values"], whole["input_values"])
        assert torch.equal(padded["padding_mask"], whole["padding_mask"])
    truncated = extractor.pad(singles, padding="max_length", max_length=900, truncation=True, return_tensors="np")
    expected = extractor(clips, sampling_rate=SAMPLING_RATE, padding="max_length", max_length=900, truncation=True)
    np.testing.assert_array_equal(truncated["input_values"], expected["input_values"].numpy())


def test_data_collator_with_padding_batches_the_features(extractor):
    from transformers import DataCollatorWithPadding

    singles = _one_at_a_time(extractor, [noise(1000), noise(333, seed=1)])
    batch = DataCollatorWithPadding(extractor, pad_to_multiple_of=3)([dict(single) for single in singles])
    assert batch["input_values"].shape == (2, 1, 1920)  # 1000 samples -> a multiple of lcm(320, 3) = 960
    assert batch["padding_mask"].sum(-1).tolist() == [1000, 333]
    labelled = [{**single, "label": label} for single, label in zip(singles, (3, 7))]  # other keys come along
    batch = DataCollatorWithPadding(extractor)(labelled)
    assert batch["labels"].tolist() == [3, 7] and batch["input_values"].shape == (2, 1, 1280)
    # A folded stereo clip is two rows, each with the clip's values; what makes no tensor stays a list.
    stereo = {**extractor(noise(2, 500), sampling_rate=SAMPLING_RATE, return_tensors="np"), "label": 1}
    entries = zip(labelled + [stereo], "abc", (3, 2, 1))
    named = [{**entry, "speaker": name, "audio": [0.0] * size} for entry, name, size in entries]
    batch = extractor.pad(named)
    assert batch["input_values"].shape == (4, 1, 1280) and batch["label"].tolist() == [3, 7, 1, 1]
    assert batch["speaker"] == ["a", "b", "c", "c"] and batch["audio"][3] == [0.0]
    with pytest.raises(ValueError, match="`pad` got 2 `input_values` but \\{'label': 1\\}"):
        extractor.pad({"input_values": [noise(10), noise(20)], "label": [0]})


@pytest.mark.parametrize(
    "entries, message",
    [
        ([{"padding_mask": [1, 1]}], "Entry 0 of `pad` has no `input_values`"),
        ({"audio": [[0.0]]}, "`pad` needs `input_values`"),
        ([], "`pad` got no clips"),
        ([{"input_values": np.zeros(4, np.int16)}], "holds int16 samples"),
        ([{"input_values": np.zeros((1, 2, 4), np.float32)}], r"shape \(1, 2, 4\)"),
        ([{"input_values": np.zeros(4, np.float32), "padding_mask": np.ones(3)}], "`padding_mask` of shape"),
    ],
)
def test_pad_errors_name_the_problem(extractor, entries, message):
    with pytest.raises(ValueError, match=message):
        extractor.pad(entries)


@torch.no_grad()
def test_model_accepts_the_features_directly():
    config = DacConfig.from_pretrained("hub_configs/tiny")
    torch.manual_seed(0)
    model = DacModel(config).eval()
    extractor = DacFeatureExtractor.from_model_config(config)
    assert (extractor.sampling_rate, extractor.hop_length) == (16000, 320)
    features = extractor([noise(1000), noise(2, 500, seed=1)], sampling_rate=16000)
    output = model(**features)
    assert output.audio_values.shape == (3, 1, 1280)
    assert output.audio_codes.shape == (3, config.n_codebooks, 4)
    assert output.audio_codes_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
    assert output.audio_values[1:, :, 500:].eq(0).all()  # padding is silent in the reconstruction
    encoded = model.encode(**features)
    torch.testing.assert_close(encoded.audio_codes, output.audio_codes, rtol=0, atol=0)


def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    extractor = DacFeatureExtractor(sampling_rate=24000, hop_length=320, padding_value=0.0)
    extractor.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").is_file()
    loaded = DacFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, DacFeatureExtractor)
    assert loaded.to_dict() == extractor.to_dict()
    assert (loaded.sampling_rate, loaded.hop_length) == (24000, 320)
    clips = [noise(1000), noise(333, seed=4)]
    for key in ("input_values", "padding_mask"):
        torch.testing.assert_close(loaded(clips, sampling_rate=24000)[key], extractor(clips, sampling_rate=24000)[key])


def test_hub_config_extractor_matches_its_model_config():
    extractor = DacFeatureExtractor.from_pretrained("hub_configs/tiny")
    config = DacConfig.from_pretrained("hub_configs/tiny")
    assert (extractor.sampling_rate, extractor.hop_length) == (config.sampling_rate, config.hop_length)


def test_documentation_examples_run(monkeypatch):
    monkeypatch.chdir(REPO)
    run_markdown_examples(REPO / "docs" / "feature_extractor.md")
