"""Checkpoints cross-load with the Transformers port (`transformers.DacModel`), run live, with the same outputs."""

import sys
from pathlib import Path

import pytest
import torch
import transformers

from modeling_dac import DacConfig, DacModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from harness import perturb_weights  # noqa: E402  (random Snake alphas and biases, shared with the benchmarks)

SHAPES = {
    "44khz": dict(sampling_rate=44100, downsampling_ratios=[2, 4, 8, 8]),
    "24khz": dict(sampling_rate=24000, downsampling_ratios=[2, 4, 5, 8]),
    # The 16 kbps model's latent is an eighth of encoder_hidden_size * 2 ** 4, as in the released one (128).
    "44khz_16kbps": dict(sampling_rate=44100, downsampling_ratios=[2, 4, 8, 8], hidden_size=16),
}
WIDTHS = dict(encoder_hidden_size=8, decoder_hidden_size=64, n_codebooks=5, codebook_size=256)


def port_outputs(model, audio):
    encoded = model.encode(audio)
    decoded = model.decode(encoded.quantized_representation).audio_values
    return encoded.audio_codes, decoded.reshape(audio.shape[0], 1, -1)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@torch.no_grad()
def test_ours_loads_in_transformers_with_the_same_outputs(shape, tmp_path):
    torch.manual_seed(0)
    ours = DacModel(DacConfig(**SHAPES[shape], **WIDTHS)).eval()
    perturb_weights(ours)
    ours.save_pretrained(tmp_path)
    port = transformers.DacModel.from_pretrained(tmp_path).eval()
    audio = torch.randn(2, 1, 8 * ours.config.hop_length) * 0.3
    port_codes, port_audio = port_outputs(port, audio)
    encoded = ours.encode(audio)
    assert torch.equal(encoded.audio_codes, port_codes)
    our_audio = ours.decode(encoded.quantized_representation).audio_values
    assert our_audio.shape[-1] == 8 * ours.config.hop_length >= port_audio.shape[-1]
    torch.testing.assert_close(our_audio[..., : port_audio.shape[-1]], port_audio, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@torch.no_grad()
def test_transformers_checkpoint_loads_in_ours_with_the_same_outputs(shape, tmp_path):
    torch.manual_seed(1)
    port = transformers.DacModel(transformers.DacConfig(**SHAPES[shape], **WIDTHS)).eval()
    perturb_weights(port, seed=1)
    port.save_pretrained(tmp_path)
    ours = DacModel.from_pretrained(tmp_path).eval()
    assert ours.config.hop_length == port.config.hop_length
    audio = torch.randn(2, 1, 8 * ours.config.hop_length) * 0.3
    port_codes, port_audio = port_outputs(port, audio)
    our_codes = ours.encode(audio).audio_codes
    assert torch.equal(our_codes, port_codes)
    our_audio = ours.decode(audio_codes=our_codes).audio_values
    torch.testing.assert_close(our_audio[..., : port_audio.shape[-1]], port_audio, rtol=0, atol=1e-5)


@torch.no_grad()
def test_checkpoint_saved_with_weight_norm_active_loads_folded(tmp_path):
    # transformers.DacModel.apply_weight_norm() registers parametrizations, and save_pretrained then writes
    # `parametrizations.weight.original0/1` keys (its own remove_weight_norm cannot undo them).
    torch.manual_seed(2)
    port = transformers.DacModel(transformers.DacConfig(**SHAPES["24khz"], **WIDTHS)).eval()
    perturb_weights(port, seed=2)
    audio = torch.randn(1, 1, 4 * 320) * 0.3
    port_codes, port_audio = port_outputs(port, audio)
    port.apply_weight_norm()
    port.save_pretrained(tmp_path)
    ours = DacModel.from_pretrained(tmp_path)
    assert not ours.has_weight_norm and not ours.training
    our_codes = ours.encode(audio).audio_codes
    assert torch.equal(our_codes, port_codes)
    our_audio = ours.decode(audio_codes=our_codes).audio_values
    torch.testing.assert_close(our_audio[..., : port_audio.shape[-1]], port_audio, rtol=0, atol=1e-5)
