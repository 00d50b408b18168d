"""Long audio over overlapping windows: receptive fields, window plans, and equality with whole-file passes."""

import functools

import numpy as np
import pytest
import torch

from modeling_dac import DacConfig, DacModel
from modeling_dac.windowing import (
    DacEncoderReceptiveField,
    DacReceptiveField,
    decode_long,
    decoder_context,
    encode_long,
    encoder_context,
    encoder_receptive_field,
    iter_decode_long,
    plan_windows,
    window_frames,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 44.1 kHz-like (hop 512) and 24 kHz-like strides (hop 320, an odd stride of 5 and a decoder 8 samples short).
STRIDES = {"44khz": ([2, 4, 8, 8], 44100), "24khz": ([2, 4, 5, 8], 24000)}



@functools.cache
def random_model(strides: str, n_codebooks: int = 4) -> DacModel:
    """A narrow model with every weight, bias and Snake alpha perturbed, so that no output is trivial."""
    ratios, sampling_rate = STRIDES[strides]
    torch.manual_seed(0)
    config = DacConfig(
        encoder_hidden_size=2,
        decoder_hidden_size=16,
        downsampling_ratios=ratios,
        n_codebooks=n_codebooks,
        codebook_size=64,
        sampling_rate=sampling_rate,
    )
    model = DacModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def random_audio(channels: int, samples: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(channels, samples, generator=generator)


@torch.no_grad()
def whole_encode(model: DacModel, audio: torch.Tensor, n_quantizers=None) -> torch.Tensor:
    return model.encode(audio[:, None], n_quantizers=n_quantizers).audio_codes


@torch.no_grad()
def whole_decode(model: DacModel, codes: torch.Tensor) -> torch.Tensor:
    return model.decode(audio_codes=codes).audio_values[:, 0]


def test_receptive_fields_by_hand_for_one_stride():
    # Encoder with one stride of 2: conv2 (k3, p1) reads latent frames -1..1; the strided conv (k4, s2, p1)
    # reads samples 2*(-1)-1 .. 2*1-1+3 = -3..4; the residual units (k7, dilations 1, 3, 9) widen that by
    # 3 + 9 + 27 = 39 each side: -42..43; conv1 (k7, p3): -45..46. Frame 0 spans samples 0..1.
    config = DacConfig(downsampling_ratios=[2], encoder_hidden_size=2, decoder_hidden_size=16)
    expected = DacEncoderReceptiveField(left=45, right=46 - 1, hop_length=2)
    assert encoder_receptive_field(config) == expected
    assert encoder_context(config) == DacReceptiveField(left=23, right=23)  # ceil(45 / 2)
    # Decoder: samples 0..1 <- conv2 (k7, p3) -3..4 <- residual units -42..43 <- transposed conv (k4, s2, p1):
    # latent i writes samples 2i-1 .. 2i+2, so frames ceil((-42-2)/2) .. floor(44/2) = -22..22 <- conv1: -25..25.
    assert decoder_context(config) == DacReceptiveField(left=25, right=25)


@pytest.mark.parametrize("strides", ["44khz", "24khz"])
def test_receptive_fields_match_the_gradients(strides):
    """The computed fields are exactly the samples (frames) with a non-zero gradient, on both sides."""
    model = random_model(strides)
    config, hop_length, frame = model.config, model.config.hop_length, 20
    audio = random_audio(1, 40 * hop_length)[None].requires_grad_()
    model.encoder(audio)[0, :, frame].sum().backward()
    touched = torch.nonzero(audio.grad[0, 0]).flatten()
    field = encoder_receptive_field(config)
    assert frame * hop_length - touched.min() == field.left
    assert touched.max() - ((frame + 1) * hop_length - 1) == field.right

    latents = torch.randn(1, config.hidden_size, 40, requires_grad=True)
    model.decoder(latents)[0, 0, frame * hop_length : (frame + 1) * hop_length].sum().backward()
    touched = torch.nonzero(latents.grad[0].abs().sum(0)).flatten()
    context = decoder_context(config)
    assert (frame - touched.min(), touched.max() - frame) == (context.left, context.right)


def test_released_configs_context():
    # 44.1 kHz: 3733 samples each side, 7.3 hops, so 8 frames of context for the encoder; 10 for the decoder.
    assert encoder_receptive_field(DacConfig()) == DacEncoderReceptiveField(3733, 3733, 512)
    assert encoder_context(DacConfig()) == DacReceptiveField(8, 8)
    assert decoder_context(DacConfig()) == DacReceptiveField(10, 10)
    config_24khz = DacConfig(sampling_rate=24000, downsampling_ratios=[2, 4, 5, 8], n_codebooks=32)
    assert encoder_receptive_field(config_24khz) == DacEncoderReceptiveField(2501, 2493, 320)


@pytest.mark.parametrize(
    "total, keep, window", [(100, (0, 100), 30), (37, (0, 37), 17), (50, (12, 31), 20), (5, (0, 5), 40)]
)
def test_plans_keep_every_frame_once_with_full_context(total, keep, window):
    context = DacReceptiveField(left=6, right=4)
    windows = plan_windows(*keep, total, window, context)
    kept = [frame for item in windows for frame in range(item.keep_start, item.keep_stop)]
    assert kept == list(range(*keep))
    for item in windows:
        assert 0 <= item.start <= item.keep_start < item.keep_stop <= item.stop <= total
        assert item.start <= max(0, item.keep_start - context.left)
        assert item.stop >= min(total, item.keep_stop + context.right)
        assert item.stop - item.start <= window


def test_windows_shorter_than_the_receptive_field_are_rejected():
    model = random_model("44khz")
    context, frame_rate = encoder_context(model.config), model.config.frame_rate
    minimum = context.left + context.right + 1
    with pytest.raises(ValueError, match="shorter than the model's receptive field"):
        encode_long(model, random_audio(1, 10000), window_duration=(minimum - 1) / frame_rate)
    assert window_frames(model.config, context, minimum / frame_rate) == minimum
    assert window_frames(model.config, context, np.float32(2.0)) == window_frames(model.config, context, 2)
    for refused in (-1.0, True, "1"):
        with pytest.raises(ValueError, match="window_duration"):
            window_frames(model.config, context, refused)
    with pytest.raises(ValueError, match="no frame besides"):
        plan_windows(0, 10, 10, 10, DacReceptiveField(5, 5))


def test_automatic_window_follows_the_memory_budget():
    config = DacConfig()  # 44.1 kHz: widest full-rate layer 1536 / 16 = 96 channels
    context = encoder_context(config)
    assert window_frames(config, context) == 2**30 // (64 * 96 * 512)  # 341 frames, 3.96 s
    assert window_frames(config, context, items=2) == 2**30 // (64 * 96 * 512 * 2)
    tiny = random_model("24khz").config
    assert window_frames(tiny, encoder_context(tiny)) == 30 * 75  # capped at 30 s
    assert window_frames(config, context, items=1000) == 4 * (context.left + context.right + 1)


@pytest.mark.parametrize("strides", ["44khz", "24khz"])
@pytest.mark.parametrize("window_frames_, batch_size", [(17, 1), (30, 3), (None, 1)])
def test_windowed_codes_equal_the_whole_file_encode(strides, window_frames_, batch_size):
    model = random_model(strides)
    hop_length, frame_rate = model.config.hop_length, model.config.frame_rate
    audio = random_audio(2, 41 * hop_length + 123)  # not a multiple of the hop
    window_duration = None if window_frames_ is None else window_frames_ / frame_rate
    codes = encode_long(model, audio, window_duration=window_duration, batch_size=batch_size)
    expected = whole_encode(model, audio)
    assert codes.shape == expected.shape == (2, 4, 42)
    assert torch.equal(codes, expected)


def test_windowed_encode_with_fewer_quantizers_and_numpy_mono_input():
    model = random_model("24khz")
    audio = random_audio(1, 50 * 320 + 1)
    codes = encode_long(model, audio[0].numpy(), n_quantizers=2, window_duration=20 / 75)
    assert torch.equal(codes, whole_encode(model, audio, n_quantizers=2))


@pytest.mark.parametrize("strides", ["44khz", "24khz"])
@pytest.mark.parametrize("window_frames_, batch_size", [(21, 1), (33, 2)])
def test_windowed_audio_matches_the_whole_file_decode(strides, window_frames_, batch_size):
    model = random_model(strides)
    codes = whole_encode(model, random_audio(2, 45 * model.config.hop_length))
    expected = whole_decode(model, codes)
    window_duration = window_frames_ / model.config.frame_rate
    audio = decode_long(model, codes, window_duration=window_duration, batch_size=batch_size)
    assert audio.shape == expected.shape == (2, 45 * model.config.hop_length)
    assert expected.abs().max() > 0.05  # the decoded audio is not trivial
    assert (audio - expected).abs().max() < 1e-4
    blocks = list(iter_decode_long(model, codes[0].numpy(), window_duration=window_duration))
    assert len(blocks) > 3 and all(block.shape[0] == 1 for block in blocks)
    assert (torch.cat(blocks, dim=-1) - expected[:1]).abs().max() < 1e-4


def test_odd_stride_end_is_padded_like_the_whole_decode():
    model = random_model("24khz")
    codes = whole_encode(model, random_audio(1, 40 * 320))
    audio = decode_long(model, codes, window_duration=21 / 75)
    assert torch.equal(audio[:, -8:], torch.zeros(1, 8))  # the official decoder's 8 missing samples
    assert audio[:, -9].abs() > 0


def test_training_mode_model_runs_in_eval_and_keeps_its_mode():
    model = random_model("44khz")
    audio = random_audio(1, 30 * 512)
    expected = whole_encode(model, audio)
    model.train()
    model.quantizer.eval()  # a part the caller keeps in eval mode stays so
    try:
        assert torch.equal(encode_long(model, audio, window_duration=20 / model.config.frame_rate), expected)
        assert model.training and model.encoder.training and not model.quantizer.training
        # Between the blocks of a generator, the caller's grad mode and model mode are in force.
        for _ in iter_decode_long(model, expected, window_duration=22 / model.config.frame_rate):
            assert model.training and torch.is_grad_enabled()
    finally:
        model.eval()


@pytest.mark.parametrize(
    "audio, message",
    [
        (torch.zeros(1, 0), "empty"),
        (torch.full((1, 1000), float("nan")), "NaN"),
        (torch.zeros(1, 1000, dtype=torch.int16), "float"),
        (torch.zeros(2, 2, 1000), "shape"),
        (np.zeros((16000, 2), np.float32), r"16000 channels of 2 samples\. Pass \(channels, samples\)"),
        ([0.0] * 1000, "numpy array or a torch.Tensor"),
    ],
)
def test_bad_audio_is_a_clear_error(audio, message):
    with pytest.raises(ValueError, match=message):
        encode_long(random_model("44khz"), audio)


def test_bad_codes_and_options_are_clear_errors():
    model = random_model("44khz")
    with pytest.raises(ValueError, match="must be an integer torch.Tensor"):
        decode_long(model, torch.zeros(1, 4, 10))
    with pytest.raises(ValueError, match="no frames"):
        decode_long(model, torch.zeros(1, 4, 0, dtype=torch.long))
    codes = torch.zeros(1, 4, 200, dtype=torch.long)
    codes[0, 0, -1] = model.config.codebook_size
    with pytest.raises(ValueError, match=r"must lie in \[0, codebook_size="):
        iter_decode_long(model, codes, window_duration=0.5)  # at the call, before any block is decoded
    with pytest.raises(ValueError, match="batch_size"):
        encode_long(model, random_audio(1, 5000), batch_size=0)
    with pytest.raises(ValueError, match="n_quantizers"):
        encode_long(model, random_audio(1, 5000), n_quantizers=5)
