"""Learning and fine-tuning on CPU with the tiny recipe: the mel loss falls; decoder-only fine-tuning keeps tokens."""

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_parity_official import write_official_checkpoint
from test_training_data import write_tone_folder
from test_training_run import read_events, train

from modeling_dac import DacModel
from modeling_dac.conversion import load_official_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_mel_loss_falls_clearly_over_100_steps(tmp_path):
    write_tone_folder(tmp_path / "tones", count=8)
    train(tmp_path / "tones", tmp_path / "run", "--max_steps", "100", "--logging_steps", "10",
          "--eval_steps", "100", "--sample_steps", "1000", "--save_steps", "1000", "--num_validation_examples", "2")
    scalars, _, _ = read_events(tmp_path / "run")
    mel = scalars["loss/mel"]  # means over windows of 10 steps
    assert mel[100] < 0.7 * mel[10], mel
    assert mel[100] < mel[50] < mel[10], mel


def test_decoder_only_fine_tuning_keeps_tokens_and_continues_the_discriminator(tmp_path, caplog):
    write_tone_folder(tmp_path / "tones", count=6)
    train(tmp_path / "tones", tmp_path / "pretrain", "--max_steps", "2", "--report_to", "none")
    pretrained = tmp_path / "pretrain" / "final"
    checkpoint = next((tmp_path / "pretrain").glob("checkpoint-*"))  # no config.json: never read as another model
    with pytest.raises(ValueError, match="has no config.json, so it is not a saved model.*--resume"):
        train(tmp_path / "tones", tmp_path / "wrong", "--init_from", str(checkpoint), "--report_to", "none")
    with caplog.at_level(logging.INFO):
        train(tmp_path / "tones", tmp_path / "finetune", "--init_from", str(pretrained), "--freeze", "encoder,quantizer",
              "--max_steps", "4", "--quantizer_dropout", "0.5", "--report_to", "none")
    assert f"Discriminator initialised from {pretrained}/discriminator" in caplog.text

    before, after = load_file(pretrained / "model.safetensors"), load_file(tmp_path / "finetune" / "final" / "model.safetensors")
    for key, value in before.items():
        if key.startswith(("encoder.", "quantizer.")):
            # Equal up to folding g * v / ||v|| back into one weight.
            torch.testing.assert_close(after[key], value, rtol=1e-5, atol=1e-6)
    assert max((after[k] - before[k]).abs().max().item() for k in before if k.startswith("decoder.")) > 1e-4

    audio = torch.sin(torch.arange(8192) / 7.0)[None, None] * 0.3
    codes_before = DacModel.from_pretrained(pretrained).eval().encode(audio).audio_codes
    codes_after = DacModel.from_pretrained(tmp_path / "finetune" / "final").eval().encode(audio).audio_codes
    assert torch.equal(codes_after, codes_before)
    assert Path(tmp_path / "finetune" / "final" / "discriminator" / "config.json").is_file()


def test_fine_tuning_starts_from_an_official_checkpoint(tmp_path, caplog):
    write_tone_folder(tmp_path / "tones", count=5, seconds=1.0)
    checkpoint = write_official_checkpoint("dac_24khz", tmp_path / "weights.pth")  # reduced widths, released shapes
    with caplog.at_level(logging.WARNING):
        train(tmp_path / "tones", tmp_path / "run", "--init_from", str(checkpoint), "--max_steps", "2",
              "--sample_duration", "0.2", "--validation_duration", "0.4", "--report_to", "none")
    assert "using its ['downsampling_ratios'" in caplog.text  # the checkpoint's architecture, not tiny.yaml's

    fine_tuned = DacModel.from_pretrained(tmp_path / "run" / "final")
    official = load_official_checkpoint(checkpoint)
    assert (fine_tuned.config.sampling_rate, fine_tuned.config.hop_length, fine_tuned.config.n_codebooks) == (24000, 320, 32)
    assert fine_tuned.config.quantizer_dropout == 0.5  # the training config's, not the checkpoint's
    before, after = official.state_dict(), fine_tuned.state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.allclose(after[key], before[key], atol=1e-6) for key in before)
