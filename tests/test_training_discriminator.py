"""The DAC discriminator (SPEC section 6) and the GAN losses."""

import math

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

from training.discriminator import (
    DacDiscriminator,
    DacDiscriminatorConfig,
    DacDiscriminatorOutput,
    DacMultiBandDiscriminator,
)
from training.losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(periods=[2, 3], period_channels=[4, 8, 16], fft_sizes=[256, 128], band_channels=4)


@pytest.fixture(scope="module")
def tiny_discriminator():
    torch.manual_seed(0)
    return DacDiscriminator(DacDiscriminatorConfig(**TINY)).eval()


def test_released_discriminator_has_42_5m_parameters_all_weight_normed():
    discriminator = DacDiscriminator(DacDiscriminatorConfig())
    assert sum(p.numel() for p in discriminator.parameters()) / 1e6 == pytest.approx(42.52, abs=0.01)
    convolutions = [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    # 5 period discriminators x (5 + post) + 3 STFT discriminators x (5 bands x 5 + post).
    assert len(convolutions) == 5 * 6 + 3 * 26
    assert all(parametrize.is_parametrized(conv, "weight") for conv in convolutions)


def _strided(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


def test_output_structure_and_shapes(tiny_discriminator):
    length = 1000
    output = tiny_discriminator(torch.randn(3, 1, length))
    assert isinstance(output, DacDiscriminatorOutput)
    assert len(output.logits) == len(output.feature_maps) == 4
    for period, logits, maps in zip((2, 3), output.logits, output.feature_maps):
        rows = (length + period - length % period) // period  # always padded, by a whole period at 1000 % 2
        for _ in range(2):
            rows = _strided(rows, 5, 3, 2)
        assert [tuple(m.shape) for m in maps] == [
            (3, 4, _strided((length + period - length % period) // period, 5, 3, 2), period),
            (3, 8, rows, period),
            (3, 16, rows, period),
        ]
        assert logits.shape == (3, 1, rows, period)
    for fft_size, logits, maps in zip((256, 128), output.logits[2:], output.feature_maps[2:]):
        frames = math.ceil(length / (fft_size // 4))
        bins = fft_size // 2 + 1
        edges = [int(fraction * bins) for fraction in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)]
        widths = [high - low for low, high in zip(edges, edges[1:])]
        reduced = [math.ceil(math.ceil(math.ceil(width / 2) / 2) / 2) for width in widths]
        assert len(maps) == 25 and all(m.shape[:3] == (3, 4, frames) for m in maps)
        assert [maps[5 * band + 4].shape[-1] for band in range(5)] == reduced
        assert logits.shape == (3, 1, frames, sum(reduced))


def test_minimum_length_is_where_every_length_is_taken(tiny_discriminator):
    # The 256-sample window pads by 96 samples plus up to 63: 144 samples are too few, 145 and more are enough.
    assert tiny_discriminator.minimum_length == 145
    with pytest.raises(RuntimeError, match="[Pp]adding size should be less than"):
        tiny_discriminator(torch.randn(1, 1, 144))
    for length in range(145, 145 + 64):
        tiny_discriminator(torch.randn(1, 1, length))


def test_bf16_autocast_on_cpu_matches_float32(tiny_discriminator):
    # The 128-sample window's lowest band is 6 bins wide, 2 after two strided layers: oneDNN's bf16 convolution
    # returns garbage for the third one on an AMX CPU unless it runs in float32.
    audio = torch.randn(8, 1, 2048, generator=torch.Generator().manual_seed(0))
    reference = tiny_discriminator(audio)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = tiny_discriminator(audio)
    pairs = list(zip(output.logits, reference.logits))
    pairs += [pair for maps in zip(output.feature_maps, reference.feature_maps) for pair in zip(*maps)]
    for bf16, float32 in pairs:
        assert bf16.dtype == torch.bfloat16
        assert (bf16.float() - float32).abs().max() <= 0.05 * float32.abs().max()


def test_complex_spectrogram_frames_are_aligned_like_a_strided_convolution():
    fft_size, hop = 256, 64
    discriminator = DacMultiBandDiscriminator(fft_size, [0.0, 1.0], channels=2)
    audio = torch.randn(1, 1, 2000, dtype=torch.float64)
    spectrogram = discriminator.spectrogram(audio)
    assert spectrogram.shape == (1, 2, math.ceil(2000 / hop), fft_size // 2 + 1)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(fft_size) / fft_size)  # periodic Hann
    signal = audio[0, 0].numpy()
    for frame in (5, 17):
        start = frame * hop + hop // 2 - fft_size // 2  # frame k is centred on (k + 1/2) * hop
        expected = np.fft.rfft(signal[start : start + fft_size] * window)
        np.testing.assert_allclose(spectrogram[0, 0, frame].numpy(), expected.real, atol=1e-9)
        np.testing.assert_allclose(spectrogram[0, 1, frame].numpy(), expected.imag, atol=1e-9)


def test_judgement_ignores_level_and_dc_offset(tiny_discriminator):
    audio = torch.randn(2, 1, 1200) * 0.1
    reference = tiny_discriminator(audio)
    louder = tiny_discriminator(3.0 * audio + 0.2)
    for expected, actual in zip(reference.logits, louder.logits):
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


def test_save_and_reload_keep_weight_norm_and_outputs(tmp_path, tiny_discriminator):
    tiny_discriminator.save_pretrained(tmp_path)
    reloaded = DacDiscriminator.from_pretrained(tmp_path).eval()
    assert reloaded.config.periods == [2, 3] and reloaded.config.band_channels == 4
    assert any("parametrizations.weight.original0" in key for key in reloaded.state_dict())
    audio = torch.randn(1, 1, 900)
    for expected, actual in zip(tiny_discriminator(audio).logits, reloaded(audio).logits):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"periods": [1]}, "periods"),
        ({"fft_sizes": [130]}, "fft_sizes"),
        ({"band_edges": [0.0, 0.5, 0.4, 1.0]}, "band_edges"),
        ({"periods": [], "fft_sizes": []}, "at least one"),
    ],
)
def test_config_rejects_invalid_values(options, message):
    with pytest.raises(ValueError, match=message):
        DacDiscriminatorConfig(**options)


def _output(logit_values, feature_values):
    return DacDiscriminatorOutput(
        logits=[torch.full((2, 1, 3, 2), value) for value in logit_values],
        feature_maps=[[torch.full((2, 4, 3), value, requires_grad=True) for value in values] for values in feature_values],
    )


def test_least_squares_adversarial_losses():
    real = _output([0.5, 1.0], [[0.0], [0.0]])
    fake = _output([0.0, 0.25], [[0.0], [0.0]])
    assert discriminator_loss(real, fake).item() == pytest.approx((1 - 0.5) ** 2 + 0.0 + 0.0 + 0.25**2)
    assert generator_adversarial_loss(fake).item() == pytest.approx(1.0 + 0.75**2)
    perfect = _output([1.0, 1.0], [[0.0], [0.0]])
    assert generator_adversarial_loss(perfect).item() == 0.0


def test_feature_matching_sums_l1_over_every_map_and_leaves_real_maps_alone():
    real = _output([0.0], [[1.0, 2.0], [0.0]])
    fake = _output([0.0], [[1.5, 1.0], [-0.25]])
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(0.5 + 1.0 + 0.25)
    loss.backward()
    assert all(m.grad is None for maps in real.feature_maps for m in maps)
    assert all(m.grad is not None for maps in fake.feature_maps for m in maps)
