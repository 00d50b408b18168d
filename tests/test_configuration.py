import json
import logging

import pytest
import torch

from modeling_dac import DacConfig, DacModel

HUB_CONFIGS = "hub_configs"

# SPEC section 3: parameters as trained (weight norm as g and v), hop length, frame rate, kbps at all codebooks.
RELEASED = {
    "dac_44khz": (76.65, 512, 86.13, 7.75),
    "dac_44khz_16kbps": (64.21, 512, 86.13, 15.50),
    "dac_24khz": (74.71, 320, 75.00, 24.00),
    "dac_16khz": (74.18, 320, 50.00, 6.00),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_configs_match_the_spec(name):
    parameters, hop_length, frame_rate, kbps = RELEASED[name]
    config = DacConfig.from_pretrained(f"{HUB_CONFIGS}/{name}")
    assert config.hop_length == hop_length
    assert round(config.frame_rate, 2) == frame_rate
    assert round(config.bitrate / 1000, 2) == kbps
    with torch.device("meta"):
        model = DacModel(config)
    model.apply_weight_norm()
    assert round(model.num_parameters() / 1e6, 2) == parameters


def test_latent_size_is_its_own_field():
    config = DacConfig(hidden_size=128, n_codebooks=18)
    assert config.hidden_size == 128 and config.encoder_hidden_size == 64
    reloaded = DacConfig.from_dict(config.to_dict())
    assert reloaded.hidden_size == 128


def test_port_config_with_wrong_hop_length_is_corrected_with_a_warning(tmp_path, caplog):
    # The Transformers port's 24 kHz hub config stores hop_length 512 although its strides multiply to 320.
    port_config = {
        "model_type": "dac",
        "encoder_hidden_size": 64,
        "downsampling_ratios": [2, 4, 5, 8],
        "decoder_hidden_size": 1536,
        "upsampling_ratios": [8, 5, 4, 2],
        "hidden_size": 1024,
        "n_codebooks": 32,
        "codebook_size": 1024,
        "codebook_dim": 8,
        "quantizer_dropout": 0.0,
        "commitment_loss_weight": 0.25,
        "codebook_loss_weight": 1.0,
        "sampling_rate": 24000,
        "hop_length": 512,
    }
    (tmp_path / "config.json").write_text(json.dumps(port_config))
    logger = logging.getLogger("modeling_dac.configuration_dac")
    logger.addHandler(caplog.handler)
    try:
        config = DacConfig.from_pretrained(tmp_path)
    finally:
        logger.removeHandler(caplog.handler)
    assert config.hop_length == 320
    assert config.frame_rate == 75.0
    assert "hop_length=512" in caplog.text


def test_from_pretrained_overrides_are_validated_and_rederive_what_followed_them():
    # transformers sets override kwargs on the finished config; here they go through __init__.
    tiny = f"{HUB_CONFIGS}/tiny"  # encoder width 8, strides [2, 4, 5, 8], latent 8 * 2**4 = 128
    config = DacConfig.from_pretrained(tiny, downsampling_ratios=[2, 4, 8])
    assert (config.hop_length, config.upsampling_ratios, config.hidden_size) == (64, [8, 4, 2], 64)
    assert DacConfig.from_pretrained(tiny, encoder_hidden_size=16).hidden_size == 256
    assert DacConfig.from_pretrained(tiny, hop_length=512).hop_length == 320
    with pytest.raises(ValueError, match="codebook_size"):
        DacConfig.from_pretrained(tiny, codebook_size=100)
    with pytest.raises(ValueError, match="upsampling_ratios"):
        DacConfig.from_pretrained(tiny, downsampling_ratios=[2, 4, 8], upsampling_ratios=[8, 8, 4, 2])
    config, unused = DacConfig.from_pretrained(tiny, n_codebooks=3, unknown=1, return_unused_kwargs=True)
    assert config.n_codebooks == 3 and unused == {"unknown": 1}
    # A latent size that was not the derived one (the 16 kbps model's 128) stays as stored.
    assert DacConfig.from_pretrained(f"{HUB_CONFIGS}/dac_44khz_16kbps", encoder_hidden_size=32).hidden_size == 128


@pytest.mark.parametrize(
    "fields, named",
    [
        (dict(downsampling_ratios=[]), "downsampling_ratios"),
        (dict(downsampling_ratios=[2, 0, 8]), "downsampling_ratios"),
        (dict(downsampling_ratios=[2.5, 4]), "downsampling_ratios"),  # not truncated to a hop length of 8
        (dict(upsampling_ratios=[8, 8, 4, 2, True]), "upsampling_ratios"),  # not a fifth block of stride 1
        (dict(upsampling_ratios=[8, 8, 4]), "upsampling_ratios"),
        (dict(codebook_size=1000), "codebook_size"),
        (dict(n_codebooks=0), "n_codebooks"),
        (dict(hidden_size=-4), "hidden_size"),
        (dict(sampling_rate=0), "sampling_rate"),
        (dict(quantizer_dropout=1.5), "quantizer_dropout"),
        (dict(decoder_hidden_size=100), "decoder_hidden_size"),
        (dict(codebook_loss_weight=-1.0), "codebook_loss_weight"),
    ],
)
def test_impossible_values_name_the_field(fields, named):
    with pytest.raises(ValueError, match=named):
        DacConfig(**fields)


def test_bitrate_at_fewer_codebooks():
    config = DacConfig()
    assert config.bitrate_at(1) == pytest.approx(10 * 44100 / 512)
    assert config.bitrate_at(config.n_codebooks) == config.bitrate
