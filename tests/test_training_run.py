"""End-to-end training runs on CPU with the tiny recipe: outputs, logging, exact resumption, NaN handling."""

import importlib.util
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from docs_examples import REPO, run_markdown_examples
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_training_data import write_tone_folder

from modeling_dac import DacModel
from training.discriminator import DacDiscriminator
from training.train import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = str(REPO / "training" / "configs" / "tiny.yaml")


def train(dataset: Path, output_dir: Path, *flags: str):
    main(["--config", TINY, "--dataset", str(dataset), "--output_dir", str(output_dir), "--logging_steps", "1", *flags])


def read_events(output_dir: Path) -> tuple[dict[str, dict[int, float]], set[str], set[str]]:
    """Scalars by tag and step, and the audio and image tags, from every TensorBoard event file of a run."""
    scalars, audio, images = {}, set(), set()
    for events in sorted((output_dir / "logs").rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0, "audio": 0, "images": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            for event in accumulator.Scalars(tag):
                scalars.setdefault(tag, {})[event.step] = event.value
        audio.update(accumulator.Tags()["audio"])
        images.update(accumulator.Tags()["images"])
    return scalars, audio, images


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "tones"
    write_tone_folder(folder, count=8)
    return folder


def test_few_steps_end_to_end(tmp_path, tones, monkeypatch):
    output = tmp_path / "runs" / "dac44"  # the folder the guide's example loads
    train(tones, output, "--max_steps", "6", "--save_steps", "3", "--eval_steps", "3", "--sample_steps", "3",
          "--save_total_limit", "1")

    assert sorted(p.name for p in output.iterdir()) == ["best", "checkpoint-6", "final", "logs"]
    weights = load_file(output / "final" / "model.safetensors")
    assert not any("parametrizations" in key for key in weights)
    model = DacModel.from_pretrained(output / "final").eval()
    assert (model.config.n_codebooks, model.config.sampling_rate) == (4, 16000)
    audio = torch.sin(torch.arange(4096) / 10.0)[None, None] * 0.3
    assert torch.isfinite(model(audio).audio_values).all()
    DacDiscriminator.from_pretrained(output / "final" / "discriminator")
    DacModel.from_pretrained(output / "best")

    scalars, audio_tags, image_tags = read_events(output)
    for tag in ("loss/mel", "loss/generator", "loss/discriminator", "loss/adversarial", "loss/feature_matching",
                "loss/commitment", "loss/codebook", "loss/stft", "grad_norm/generator", "grad_norm/discriminator",
                "lr/generator", "perf/steps_per_second", "data/skipped_silent"):
        assert sorted(scalars[tag]) == [1, 2, 3, 4, 5, 6], tag
    assert scalars["lr/generator"][6] == pytest.approx(1e-3 * 0.999996**6, rel=1e-6)
    for tag in ("validation/mel_distance", "validation/stft_distance", "validation/si_sdr"):
        assert sorted(scalars[tag]) == [3, 6]
    assert {"samples/0/reconstruction", "samples/0/original"} <= audio_tags
    assert "samples/0/mel" in image_tags

    monkeypatch.chdir(tmp_path)
    namespace = run_markdown_examples(REPO / "docs" / "training.md")
    assert isinstance(namespace["model"], DacModel) and isinstance(namespace["discriminator"], DacDiscriminator)


def test_streamed_dataset_trains_and_resumes(tmp_path, tones):
    flags = ["--streaming", "--num_workers", "1", "--save_steps", "2", "--eval_steps", "2", "--report_to", "tensorboard"]
    train(tones, tmp_path / "run", "--max_steps", "2", *flags)
    train(tones, tmp_path / "run", "--max_steps", "4", "--resume", *flags)
    scalars, _, _ = read_events(tmp_path / "run")
    assert sorted(scalars["loss/mel"]) == [1, 2, 3, 4] and sorted(scalars["validation/mel_distance"]) == [2, 4]
    DacModel.from_pretrained(tmp_path / "run" / "final")


def test_resumed_run_matches_uninterrupted_run(tmp_path, tones):
    flags = ["--save_steps", "4", "--eval_steps", "4", "--sample_steps", "4", "--report_to", "tensorboard"]
    train(tones, tmp_path / "whole", "--max_steps", "8", *flags)
    train(tones, tmp_path / "split", "--max_steps", "4", *flags)
    # A run killed while writing its next checkpoint leaves only a temporary folder, which resuming ignores.
    (tmp_path / "split" / ".incomplete-checkpoint-8").mkdir()
    (tmp_path / "split" / ".incomplete-checkpoint-8" / "model.safetensors").write_bytes(b"truncated")
    train(tones, tmp_path / "split", "--max_steps", "8", "--resume", *flags)

    whole, _, _ = read_events(tmp_path / "whole")
    split, _, _ = read_events(tmp_path / "split")
    for tag in ("loss/mel", "loss/generator", "loss/discriminator", "loss/codebook", "grad_norm/generator"):
        for step in range(1, 9):
            assert split[tag][step] == pytest.approx(whole[tag][step], rel=1e-6, abs=1e-7), (tag, step)
    assert split["validation/mel_distance"][8] == pytest.approx(whole["validation/mel_distance"][8], rel=1e-6)
    final_whole = load_file(tmp_path / "whole" / "final" / "model.safetensors")
    final_split = load_file(tmp_path / "split" / "final" / "model.safetensors")
    for key, value in final_whole.items():
        torch.testing.assert_close(final_split[key], value, rtol=1e-6, atol=1e-7)


def test_resuming_with_a_new_learning_rate_schedule_applies_it(tmp_path, tones, caplog):
    flags = ["--save_steps", "2", "--eval_steps", "100", "--sample_steps", "100", "--report_to", "tensorboard"]
    train(tones, tmp_path / "run", "--max_steps", "2", *flags)
    # As the guide advises for an unstable run: resume with a lower learning rate (and here another decay too).
    with caplog.at_level(logging.WARNING):
        train(tones, tmp_path / "run", "--max_steps", "3", "--resume", "--learning_rate", "5e-4", "--lr_decay", "0.9",
              *flags)
    assert "learning rate schedule" in caplog.text
    scalars, _, _ = read_events(tmp_path / "run")
    assert scalars["lr/generator"][2] == pytest.approx(1e-3 * 0.999996**2, rel=1e-6)
    for tag in ("lr/generator", "lr/discriminator"):  # the schedule the options define, after 3 updates
        assert scalars[tag][3] == pytest.approx(5e-4 * 0.9**3, rel=1e-6), tag


def test_a_tracker_that_is_not_installed_stops_the_run(tmp_path, tones):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(ValueError, match="wandb is not installed .*nothing would be logged"):
        train(tones, tmp_path / "run", "--max_steps", "1", "--report_to", "tensorboard,wandb")
    assert not (tmp_path / "run" / "final").exists()


def test_a_run_without_validation_says_so_at_the_end(tmp_path, tones, caplog):
    with caplog.at_level(logging.INFO):
        train(tones, tmp_path / "run", "--max_steps", "1", "--num_validation_examples", "0", "--report_to", "none")
    assert "no validation ran, so no best/" in caplog.text
    assert not (tmp_path / "run" / "best").exists() and (tmp_path / "run" / "final").is_dir()


def test_a_new_run_refuses_a_folder_with_checkpoints_of_an_earlier_run(tmp_path, tones):
    flags = ["--save_steps", "2", "--eval_steps", "2", "--report_to", "none"]
    train(tones, tmp_path / "run", "--max_steps", "4", *flags)
    # Started again without --resume, it would save checkpoint-2 and prune it at once, keeping checkpoint-4.
    with pytest.raises(ValueError, match="holds checkpoints of an earlier run \\(up to checkpoint-4\\): pass --resume"):
        train(tones, tmp_path / "run", "--max_steps", "2", *flags)
    assert sorted(path.name for path in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def test_repeated_nan_losses_stop_the_run_with_the_step(tmp_path, tones, caplog):
    model_dir = tmp_path / "nan_model"
    train(tones, tmp_path / "seed_run", "--max_steps", "1", "--report_to", "none")
    model = DacModel.from_pretrained(tmp_path / "seed_run" / "final")
    with torch.no_grad():
        model.decoder.conv2.bias.fill_(float("nan"))
    model.save_pretrained(model_dir)
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError, match="Stopping at step 3: 3 steps in a row"):
        train(tones, tmp_path / "nan_run", "--init_from", str(model_dir), "--max_steps", "10",
              "--max_consecutive_nonfinite_steps", "3", "--report_to", "none")
    assert "Step 1: skipped the discriminator and generator updates: non-finite discriminator loss" in caplog.text


def test_crops_too_short_for_the_stft_windows_are_refused_before_reading_data(tmp_path, tones):
    with pytest.raises(ValueError, match="--sample_duration gives crops of 32 samples \\(0.002 s\\), but the training "
                       "losses and the discriminator need at least 1025 for their STFT windows: use "
                       "--sample_duration 0.066 or more"):
        train(tmp_path / "no_data", tmp_path / "run", "--sample_duration", "0.001")
    with pytest.raises(ValueError, match="--validation_duration gives crops of 160 samples .* use "
                       "--validation_duration 0.066 or more"):
        train(tones, tmp_path / "run", "--validation_duration", "0.01")
    # A 2048-sample discriminator window needs more than the mel loss: 1153 samples, 37 hops of 32.
    flags = ["--discriminator_fft_sizes", "2048", "--num_validation_examples", "0", "--report_to", "none"]
    with pytest.raises(ValueError, match="need at least 1153 for their STFT windows: use --sample_duration 0.074 or"):
        train(tones, tmp_path / "run", "--sample_duration", "0.066", *flags)
    assert not (tmp_path / "run").exists()
    train(tones, tmp_path / "run", "--sample_duration", "0.074", "--max_steps", "1", *flags)
    assert (tmp_path / "run" / "final").is_dir()


def test_bf16_mixed_precision_on_cpu_trains_with_finite_losses(tmp_path, tones):
    # The tiny recipe's 128-sample STFT window narrows its lowest band to 2 bins, where oneDNN's bf16 strided
    # convolution (an AMX CPU) returns garbage. A fresh interpreter: Accelerate keeps its first precision.
    argv = [sys.executable, str(REPO / "training" / "train.py"), "--config", TINY, "--dataset", str(tones),
            "--output_dir", str(tmp_path / "run"), "--max_steps", "6", "--logging_steps", "1", "--eval_steps", "6",
            "--mixed_precision", "bf16", "--report_to", "tensorboard"]
    result = subprocess.run(argv, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped the" not in result.stderr
    scalars, _, _ = read_events(tmp_path / "run")
    assert scalars["data/nonfinite_steps"][6] == 0
    for tag in ("loss/discriminator", "loss/generator", "grad_norm/discriminator", "validation/mel_distance"):
        assert all(math.isfinite(value) for value in scalars[tag].values()), tag


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("ACCELERATE_MIXED_PRECISION", "fp16", "fp16 mixed precision (from the Accelerate configuration"),
        # Accelerate would divide every loss by 4 while the trainer still updates on every batch.
        ("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4", "gradient accumulation (4 steps, from the Accelerate"),
    ],
)
def test_unsupported_settings_from_the_accelerate_environment_are_refused(tmp_path, tones, variable, value, message):
    # A fresh interpreter: Accelerate keeps its first state (and its precision) for the life of a process.
    script = REPO / "training" / "train.py"
    argv = [sys.executable, str(script), "--config", TINY, "--dataset", str(tones), "--output_dir", str(tmp_path / "run")]
    environment = {**os.environ, variable: value, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(argv + ["--max_steps", "1"], env=environment, capture_output=True, text=True)
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "run" / "checkpoint-1").exists()
