import math

import numpy as np
import pytest
import torch

from modeling_dac import DacConfig, DacFeatureExtractor, DacModel
from modeling_dac.batching import DacEncoderReceptiveField, encoder_receptive_field, unpad

from docs_examples import REPO, run_markdown_examples


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return DacModel(DacConfig.from_pretrained("hub_configs/tiny")).eval()


def test_receptive_field_matches_the_gradient_support(tiny_model):
    """The traced receptive field is exactly the set of input samples with a nonzero gradient."""
    receptive_field = encoder_receptive_field(tiny_model.config)
    hop = tiny_model.config.hop_length
    frame = 20
    torch.manual_seed(1)
    audio = (torch.randn(1, 1, hop * 40) * 0.2).requires_grad_()
    tiny_model.encoder(audio)[0, :, frame].sum().backward()
    support = audio.grad[0, 0].nonzero().flatten()
    assert support.min().item() == frame * hop - receptive_field.left
    assert support.max().item() == (frame + 1) * hop - 1 + receptive_field.right
    assert len(support) == receptive_field.size


@pytest.mark.parametrize(
    "name, left, right, hop",
    [("dac_44khz", 3733, 3733, 512), ("dac_44khz_16kbps", 3733, 3733, 512), ("dac_24khz", 2501, 2493, 320)],
)
def test_receptive_field_of_the_released_configs(name, left, right, hop):
    # Worked out by hand for the 16/24 kHz layout in docs/batching.md.
    config = DacConfig.from_pretrained(f"hub_configs/{name}")
    assert encoder_receptive_field(config) == DacEncoderReceptiveField(left=left, right=right, hop_length=hop)


@pytest.mark.parametrize(
    "length, frames", [(0, 0), (2812, 0), (2813, 1), (3132, 1), (3133, 2), (16000, 42), (16320, 43)]
)
def test_exact_frames(length, frames):
    assert DacEncoderReceptiveField(left=2501, right=2493, hop_length=320).exact_frames(length) == frames


@torch.no_grad()
def test_codes_in_a_padded_batch_equal_codes_alone_where_the_receptive_field_is_inside(tiny_model):
    config = tiny_model.config
    receptive_field = encoder_receptive_field(config)
    extractor = DacFeatureExtractor.from_model_config(config)
    # Ten clips of different lengths: shorter than one receptive field, hop multiples and not.
    lengths = [2000, 2813, 3200, 4001, 4800, 5120, 6000, 6500, 7777, 9000]
    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal(length) * 0.2).astype(np.float32) for length in lengths]

    features = extractor(clips, sampling_rate=config.sampling_rate)
    batch = tiny_model.encode(**features)
    items = unpad(batch.audio_codes, batch.audio_codes_mask)

    checked_frames = 0
    for clip, item in zip(clips, items):
        alone = tiny_model.encode(torch.from_numpy(clip)[None, None]).audio_codes[0]
        assert item.shape == alone.shape == (config.n_codebooks, math.ceil(len(clip) / config.hop_length))
        exact = receptive_field.exact_frames(len(clip))
        torch.testing.assert_close(item[:, :exact], alone[:, :exact], rtol=0, atol=0)
        checked_frames += exact
    assert checked_frames == 0 + 1 + 2 + 4 + 7 + 8 + 10 + 12 + 16 + 20


@torch.no_grad()
def test_clips_with_the_batch_frame_count_are_exact_in_every_frame(tiny_model):
    hop = tiny_model.config.hop_length
    lengths = [9 * hop + 1, 9 * hop + 150, 10 * hop]  # all 10 frames: padded to the same 3200 samples
    torch.manual_seed(3)
    clips = [torch.randn(length) * 0.2 for length in lengths]
    extractor = DacFeatureExtractor.from_model_config(tiny_model.config)
    batch = tiny_model.encode(**extractor(clips, sampling_rate=tiny_model.config.sampling_rate))
    for clip, codes in zip(clips, batch.audio_codes):
        torch.testing.assert_close(codes, tiny_model.encode(clip[None, None]).audio_codes[0], rtol=0, atol=0)


@torch.no_grad()
def test_padding_reaches_frames_past_the_rule(tiny_model):
    """
    The rule is not vacuous: padding after a clip changes the encoder latent of its last frame, while the
    frames the rule guarantees agree to float rounding (convolutions over longer inputs may sum in another
    order; codes are argmins, so the rounding does not reach them).
    """
    hop = tiny_model.config.hop_length
    torch.manual_seed(2)
    clip = torch.randn(1, 1, 10 * hop) * 0.2
    alone = tiny_model.encoder(clip)
    padded = tiny_model.encoder(torch.nn.functional.pad(clip, (0, 10 * hop)))[..., :10]
    receptive_field = encoder_receptive_field(tiny_model.config)
    exact = receptive_field.exact_frames(clip.shape[-1])
    torch.testing.assert_close(padded[..., :exact], alone[..., :exact], rtol=0, atol=1e-6)
    assert (padded[..., -1] - alone[..., -1]).abs().max() > 1e-3


@torch.no_grad()
def test_unpad_crops_decoded_audio_and_codes_per_item(tiny_model):
    config = tiny_model.config
    extractor = DacFeatureExtractor.from_model_config(config)
    lengths = [500, 1300, 700]
    clips = [np.full(length, 0.1, dtype=np.float32) for length in lengths]
    features = extractor(clips, sampling_rate=config.sampling_rate)
    output = tiny_model(**features)
    audio_items = unpad(output.audio_values, features["padding_mask"])
    assert [tuple(item.shape) for item in audio_items] == [(1, 500), (1, 1300), (1, 700)]
    for row, item in enumerate(audio_items):
        torch.testing.assert_close(item, output.audio_values[row, :, : lengths[row]], rtol=0, atol=0)
    code_items = unpad(output.audio_codes, output.audio_codes_mask)
    assert [item.shape[-1] for item in code_items] == [2, 5, 3]


def test_unpad_numpy_and_views():
    values = np.arange(24).reshape(2, 3, 4)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    first, second = unpad(values, mask)
    np.testing.assert_array_equal(first, values[0, :, :2])
    np.testing.assert_array_equal(second, values[1])
    assert np.shares_memory(first, values)


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32, torch.bfloat16])
def test_unpad_accepts_bool_and_float_masks(dtype):
    values = torch.arange(8).reshape(2, 1, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]]).to(dtype)  # e.g. attention_mask.float()
    assert [item.tolist() for item in unpad(values, mask)] == [[[0, 1, 2]], [[4]]]


@pytest.mark.parametrize(
    "mask, message",
    [
        (np.ones((2, 3)), "shape"),
        (np.ones((3, 4)), "shape"),
        (np.array([[1, 0, 1, 0], [1, 1, 1, 1]]), "right-padded"),
        (np.array([[2, 0, 0, 0], [1, 1, 1, 1]]), "right-padded"),
    ],
)
def test_unpad_rejects_bad_masks(mask, message):
    with pytest.raises(ValueError, match=message):
        unpad(np.zeros((2, 3, 4)), mask)


def test_unpad_takes_a_flipped_numpy_mask_and_names_values_without_a_batch():
    mask = np.flip(np.array([[0, 0, 1, 1], [0, 0, 0, 1]]), axis=1)  # negative strides
    assert [item.tolist() for item in unpad(np.arange(8).reshape(2, 4), mask)] == [[0, 1], [4]]
    with pytest.raises(ValueError, match=r"`values` must have shape \(batch, ..., length\), got \(\)"):
        unpad(np.float32(1.0), mask)


def test_documentation_examples_run(monkeypatch):
    monkeypatch.chdir(REPO)
    run_markdown_examples(REPO / "docs" / "batching.md")
