import math

import numpy as np
import pytest
import torch
from transformers import PreTrainedModel

from modeling_dac import DacConfig, DacModel

SMALL = dict(encoder_hidden_size=4, decoder_hidden_size=32, n_codebooks=6, codebook_size=64)


def small_model(**overrides) -> DacModel:
    torch.manual_seed(0)
    return DacModel(DacConfig(**{**SMALL, **overrides})).eval()


@pytest.mark.parametrize(
    "ratios, sampling_rate",
    [([2, 4, 8, 8], 44100), ([2, 4, 5, 8], 24000), ([2, 4, 5, 8], 16000), ([3, 5], 8000), ([2, 3], 8000)],
)
@torch.no_grad()
def test_decode_returns_frames_times_hop_for_every_config(ratios, sampling_rate):
    model = small_model(downsampling_ratios=ratios, sampling_rate=sampling_rate)
    hop = model.config.hop_length
    for frames in (1, 2, 7):
        codes = torch.randint(0, 64, (2, 3, frames))
        assert model.decode(audio_codes=codes).audio_values.shape == (2, 1, frames * hop)
        latent = torch.randn(1, model.config.hidden_size, frames)
        assert model.decode(quantized_representation=latent).audio_values.shape == (1, 1, frames * hop)


@torch.no_grad()
def test_odd_stride_decoder_keeps_the_official_samples_and_pads_silence():
    model = small_model(downsampling_ratios=[2, 5], sampling_rate=8000)
    latent = torch.randn(1, model.config.hidden_size, 6)
    official = model.decoder(latent)  # the official computation: 5 * L - 1 samples after the stride-5 block
    assert official.shape[-1] == 6 * 10 - 2
    ours = model.decode(quantized_representation=latent).audio_values
    torch.testing.assert_close(ours[..., : official.shape[-1]], official, rtol=0, atol=0)
    assert torch.all(ours[..., official.shape[-1] :] == 0)


@torch.no_grad()
def test_encode_shapes_and_padding_to_a_hop_multiple():
    model = small_model()
    audio = torch.randn(3, 1, 1000) * 0.3
    output = model.encode(audio, n_quantizers=4)
    assert output.audio_codes.shape == (3, 4, math.ceil(1000 / 512))
    assert output.audio_codes.dtype == torch.int64
    assert output.projected_latents.shape == (3, 4 * 8, 2)
    assert output.quantized_representation.shape == (3, model.config.hidden_size, 2)
    assert output.loss.ndim == 0 and output.commitment_loss.ndim == 0 and output.codebook_loss.ndim == 0
    padded = torch.nn.functional.pad(audio, (0, 24))
    torch.testing.assert_close(model.encode(padded, n_quantizers=4).audio_codes, output.audio_codes, rtol=0, atol=0)


@torch.no_grad()
def test_fewer_quantizers_are_a_prefix_of_more():
    model = small_model()
    audio = torch.randn(2, 1, 2048) * 0.3
    every = model.encode(audio).audio_codes
    for n in range(1, model.config.n_codebooks + 1):
        torch.testing.assert_close(model.encode(audio, n_quantizers=n).audio_codes, every[:, :n], rtol=0, atol=0)


@torch.no_grad()
def test_decoding_codes_matches_decoding_the_quantized_representation():
    model = small_model()
    audio = torch.randn(2, 1, 2048) * 0.3
    encoded = model.encode(audio, n_quantizers=3)
    from_codes = model.decode(audio_codes=encoded.audio_codes).audio_values
    from_latent = model.decode(encoded.quantized_representation).audio_values
    torch.testing.assert_close(from_codes, from_latent, rtol=0, atol=1e-5)


@torch.no_grad()
def test_batch_equals_single_for_equal_lengths():
    model = small_model()
    audio = torch.randn(3, 1, 4096) * 0.3
    batched = model(audio)
    for index in range(3):
        single = model(audio[index : index + 1])
        torch.testing.assert_close(single.audio_codes, batched.audio_codes[index : index + 1], rtol=0, atol=0)
        torch.testing.assert_close(single.audio_values, batched.audio_values[index : index + 1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_quantizers", [0, -1, 7, 2.0, True, "3", torch.tensor(True), torch.tensor([2])])
def test_invalid_n_quantizers_is_a_clear_error(n_quantizers):
    model = small_model()
    with pytest.raises(ValueError, match="n_quantizers"):
        model.encode(torch.zeros(1, 1, 512), n_quantizers=n_quantizers)


@pytest.mark.parametrize(
    "audio, message",
    [
        (torch.zeros(2, 512), "shape"),
        (torch.zeros(1, 2, 512), "shape"),
        (torch.zeros(1, 1, 512, dtype=torch.int16), "float"),
        (torch.zeros(1, 1, 0), "empty"),
        (torch.tensor([[[0.0, float("nan")] * 256]]), "NaN"),
        (torch.tensor([[[0.0, float("inf")] * 256]]), "NaN or Inf"),
    ],
)
def test_bad_input_is_a_clear_error(audio, message):
    with pytest.raises(ValueError, match=message):
        small_model().encode(audio)


@pytest.mark.parametrize(
    "padding_mask",
    [torch.tensor([[0] * 256 + [1] * 256]), torch.full((1, 512), 2), torch.tensor([[1.0] * 100 + [0.5] * 412])],
    ids=["left-padded", "not binary", "fractional"],
)
def test_padding_masks_other_than_right_padding_are_refused(padding_mask):
    with pytest.raises(ValueError, match="`padding_mask` must be right-padded"):
        small_model().encode(torch.zeros(1, 1, 512), padding_mask=padding_mask)


def test_bad_codes_are_a_clear_error():
    model = small_model()
    with pytest.raises(ValueError, match="codebook_size"):
        model.decode(audio_codes=torch.full((1, 2, 3), 64))
    with pytest.raises(ValueError, match="n_codebooks"):
        model.decode(audio_codes=torch.zeros(1, 7, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        model.decode(audio_codes=torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="either"):
        model.decode()
    with pytest.raises(ValueError, match="hold no frames"):
        model.decode(audio_codes=torch.zeros(1, 2, 0, dtype=torch.long))


def test_decode_refuses_codes_and_a_quantized_representation_together():
    model = small_model()
    codes = model.encode(torch.randn(1, 1, 512) * 0.1).audio_codes
    with pytest.raises(ValueError, match="not both"):
        model.decode(quantized_representation=model.quantizer.from_codes(codes), audio_codes=codes)


def test_positional_n_quantizers_in_the_ports_place_is_a_clear_error():
    # transformers.DacModel.encode(input_values, n_quantizers); here the second argument is padding_mask.
    with pytest.raises(ValueError, match="`padding_mask` must be a torch.Tensor.*n_quantizers="):
        small_model().encode(torch.zeros(1, 1, 512), 2)
    with pytest.raises(ValueError, match=r"must be a torch.Tensor of shape \(batch, samples\), got list\.$"):
        small_model().encode(torch.zeros(1, 1, 512), [[1] * 512])


@pytest.mark.parametrize("n_quantizers", [np.int64(3), torch.tensor(3)], ids=["numpy", "0-d tensor"])
def test_integer_like_n_quantizers_are_accepted(n_quantizers):
    model = small_model()
    audio = torch.randn(1, 1, 1024) * 0.1
    codes = model.encode(audio, n_quantizers=n_quantizers).audio_codes
    assert torch.equal(codes, model.encode(audio, n_quantizers=3).audio_codes)


@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.uint8, torch.uint16, torch.uint32])
def test_codes_of_any_integer_dtype_decode_like_int64(dtype):
    model = small_model(codebook_size=1024)  # above uint8's range: a uint8 comparison with it would wrap
    codes = model.encode(torch.randn(1, 1, 1024) * 0.1).audio_codes % 256
    expected = model.decode(audio_codes=codes).audio_values
    torch.testing.assert_close(model.decode(audio_codes=codes.to(dtype)).audio_values, expected, rtol=0, atol=0)


def test_return_dict_false_gives_tuples_and_the_helpers_still_work():
    from modeling_dac.lm_bridge import codes_to_audio
    from modeling_dac.tokenization import encode_clips

    model = small_model(return_dict=False)
    audio = torch.randn(2, 1, 1024) * 0.1
    with torch.no_grad():
        output = model(audio)
        encoded = model.encode(audio)
        assert isinstance(output, tuple) and isinstance(encoded, tuple)
        reference = small_model().encode(audio).audio_codes
        assert torch.equal(encoded[2], reference)
        expected_audio = small_model().decode(audio_codes=reference).audio_values
        assert torch.equal(model.decode(audio_codes=reference)[0], expected_audio)
    clips_codes = encode_clips(model, [audio[0, 0], audio[1, 0, :700]])
    assert torch.equal(clips_codes[0], reference[0])
    assert codes_to_audio(model, clips_codes)[1].shape == (clips_codes[1].shape[-1] * model.config.hop_length,)


def test_encoded_length_and_codes_mask():
    model = small_model()
    assert model.get_encoded_length(1) == 1
    assert model.get_encoded_length(512) == 1
    assert model.get_encoded_length(513) == 2
    torch.testing.assert_close(model.get_encoded_length(torch.tensor([0, 512, 1025])), torch.tensor([0, 1, 3]))
    padding_mask = torch.zeros(3, 2048, dtype=torch.long)
    padding_mask[0, :2048] = 1
    padding_mask[1, :600] = 1
    padding_mask[2, :1] = 1
    expected = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    torch.testing.assert_close(model.get_audio_codes_mask(padding_mask), expected)
    output = model.encode(torch.randn(3, 1, 2048) * 0.1, padding_mask=padding_mask)
    torch.testing.assert_close(output.audio_codes_mask, expected)
    torch.testing.assert_close(model.get_audio_codes_mask(padding_mask.bool()), expected)  # int64 for any mask


def test_quantizer_dropout_in_training_follows_the_released_code():
    model = small_model(quantizer_dropout=0.5)
    model.train()
    audio = torch.randn(4, 1, 1024) * 0.3
    torch.manual_seed(3)
    trained = model.encode(audio)
    assert trained.audio_codes.shape[1] == model.config.n_codebooks  # n_quantizers is honoured in eval only
    torch.manual_seed(3)
    counts = torch.full((4,), model.config.n_codebooks)
    counts[:2] = torch.randint(1, model.config.n_codebooks + 1, (4,))[:2]
    with torch.no_grad():
        latents = model.encoder(audio)
        expected = 0
        residual = latents
        for index, quantizer in enumerate(model.quantizer.quantizers):
            contribution = quantizer(residual)[0]
            residual = residual - contribution
            expected = expected + contribution * (index < counts)[:, None, None]
    torch.testing.assert_close(trained.quantized_representation.detach(), expected, rtol=1e-5, atol=1e-6)


def test_n_quantizers_caps_codebooks_in_training():
    model = small_model(quantizer_dropout=0.0)
    model.train()
    audio = torch.randn(2, 1, 1024) * 0.3
    capped = model.encode(audio, n_quantizers=2)
    model.eval()
    with torch.no_grad():
        reference = model.encode(audio, n_quantizers=2)
    torch.testing.assert_close(capped.quantized_representation.detach(), reference.quantized_representation)
    assert capped.audio_codes.shape[1] == model.config.n_codebooks


def test_losses_are_scalars_with_gradients():
    model = small_model()
    model.train()
    output = model(torch.randn(2, 1, 1024) * 0.3)
    expected = 0.25 * output.commitment_loss + 1.0 * output.codebook_loss
    torch.testing.assert_close(output.loss, expected)
    output.loss.backward()
    assert model.quantizer.quantizers[0].codebook.weight.grad.abs().sum() > 0
    assert model.encoder.conv1.weight.grad.abs().sum() > 0


def test_weight_norm_round_trip_is_exact_enough_and_saves_folded(tmp_path):
    model = small_model()
    plain = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    audio = torch.randn(1, 1, 1024) * 0.3
    with torch.no_grad():
        before = model(audio).audio_values
    model.apply_weight_norm()
    assert model.has_weight_norm
    conv = model.encoder.conv1
    magnitude = conv.parametrizations.weight.original0
    direction = conv.parametrizations.weight.original1
    torch.testing.assert_close(direction, plain["encoder.conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(magnitude, plain["encoder.conv1.weight"].norm(dim=(1, 2), keepdim=True), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(audio).audio_values, before, rtol=1e-5, atol=1e-6)
    model.save_pretrained(tmp_path)
    assert model.has_weight_norm  # saving does not change the model being trained
    reloaded = DacModel.from_pretrained(tmp_path).eval()
    assert not reloaded.has_weight_norm
    assert set(reloaded.state_dict()) == set(plain)
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, plain[name], rtol=1e-6, atol=1e-7)
    model.remove_weight_norm()
    assert not model.has_weight_norm and set(model.state_dict()) == set(plain)


@pytest.mark.parametrize("shards", [{}, {"max_shard_size": "20KB"}])
def test_checkpoint_with_weight_norm_loads_folded_with_the_from_pretrained_options(shards, tmp_path):
    # What transformers.DacModel writes after apply_weight_norm(): parametrizations' original0/1, maybe sharded.
    model = small_model()
    plain = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model.apply_weight_norm()
    PreTrainedModel.save_pretrained(model, tmp_path, **shards)
    reloaded = DacModel.from_pretrained(tmp_path, dtype=torch.bfloat16, return_dict=False)
    assert not reloaded.has_weight_norm and not reloaded.training
    assert reloaded.encoder.conv1.weight.dtype == torch.bfloat16
    assert reloaded.quantizer.quantizers[0].in_proj.weight.dtype == torch.float32  # kept in fp32, as for plain
    assert reloaded.config.return_dict is False and reloaded.config.name_or_path == str(tmp_path)
    assert set(reloaded.state_dict()) == set(plain)
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, plain[name].to(tensor.dtype))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pytorch_model_bin_with_weight_norm_loads_folded(tmp_path, zip_format):
    model = small_model()
    plain = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model.apply_weight_norm()
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin", _use_new_zipfile_serialization=zip_format)
    reloaded = DacModel.from_pretrained(tmp_path)
    assert set(reloaded.state_dict()) == set(plain)
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, plain[name], rtol=1e-6, atol=1e-7)


def test_a_weight_norm_state_dict_given_in_memory_loads_folded():
    model = small_model()
    plain = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model.apply_weight_norm()
    reloaded = DacModel.from_pretrained(None, config=model.config, state_dict=model.state_dict())
    assert set(reloaded.state_dict()) == set(plain)
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, plain[name], rtol=1e-6, atol=1e-7)


def test_use_safetensors_false_reads_the_bin_beside_a_safetensors_file(tmp_path):
    model = small_model()
    model.save_pretrained(tmp_path)  # plain weights in model.safetensors
    other = small_model(encoder_hidden_size=4)
    torch.nn.init.normal_(other.encoder.conv1.weight)
    other.apply_weight_norm()
    torch.save(other.state_dict(), tmp_path / "pytorch_model.bin")
    reloaded = DacModel.from_pretrained(tmp_path, use_safetensors=False)
    torch.testing.assert_close(reloaded.encoder.conv1.weight, other.encoder.conv1.weight.detach())


def test_transposed_convolution_weight_norm_is_over_input_channels():
    model = small_model()
    model.apply_weight_norm()
    conv_t = model.decoder.block[0].conv_t1
    assert conv_t.parametrizations.weight.original0.shape == (conv_t.in_channels, 1, 1)


def test_save_and_load_round_trip(tmp_path):
    model = small_model(hidden_size=24)
    model.save_pretrained(tmp_path)
    reloaded = DacModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.hidden_size == 24
    audio = torch.randn(1, 1, 1024) * 0.3
    with torch.no_grad():
        torch.testing.assert_close(reloaded(audio).audio_values, model(audio).audio_values, rtol=0, atol=0)
