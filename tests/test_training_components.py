"""Training options, the GAN step (order, schedules, NaN skipping, freezing) and crash-safe checkpoints."""

import dataclasses
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from modeling_dac import DacConfig, DacFeatureExtractor, DacModel
from training import average_checkpoints, checkpointing
from training.checkpointing import (
    TrainingProgress,
    export_models,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from training.config import GENERATOR_FIELDS, DacModelArguments, load_training_arguments
from training.discriminator import DacDiscriminator, DacDiscriminatorConfig
from training.step import DacGanStep

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "training" / "configs" / "tiny.yaml")
RELEASED = ("dac_44khz", "dac_44khz_16kbps", "dac_24khz", "dac_16khz")  # recipe names = hub_configs folders


def test_yaml_sections_and_command_line_overrides(tmp_path):
    model, data, training = load_training_arguments(["--config", TINY])
    assert (model.sampling_rate, model.n_codebooks, data.sample_duration, training.batch_size) == (16000, 4, 0.128, 4)
    model, data, training = load_training_arguments(
        ["--config", TINY, "--n_codebooks", "2", "--downsampling_ratios", "2", "8", "--learning_rate", "3e-4",
         "--dataset", "a", "--dataset", "b,weight=2", "--resume", "--freeze", "encoder,quantizer"]
    )
    assert (model.n_codebooks, model.downsampling_ratios, training.learning_rate) == (2, [2, 8], 3e-4)
    assert data.dataset == ["a", "b,weight=2"] and training.resume is True
    assert model.frozen_modules == ["encoder", "quantizer"]

    flat = tmp_path / "flat.yaml"
    flat.write_text("dataset: [from_yaml]\nmax_steps: 7\nlearning_rate: 2.0e-4\n")
    model, data, training = load_training_arguments(["--config", str(flat)])
    assert data.dataset == ["from_yaml"] and training.max_steps == 7 and training.learning_rate == 2e-4
    _, data, _ = load_training_arguments(["--config", str(flat), "--dataset", "from_cli"])
    assert data.dataset == ["from_cli"]
    flat.write_text("adam_betas: [8e-1, 0.99]\nlearning_rate: 1e-4\n")  # YAML reads both as strings
    _, _, training = load_training_arguments(["--config", str(flat)])
    assert training.adam_betas == [0.8, 0.99] and training.learning_rate == 1e-4


def test_yaml_values_as_people_write_them(tmp_path):
    path = tmp_path / "recipe.yaml"
    # One dataset as a plain string, and Accelerate's unquoted `no`, which YAML reads as false.
    path.write_text(
        "data:\n  dataset: data/speech\n  validation_dataset: data/held_out\ntraining:\n  mixed_precision: no\n"
    )
    _, data, training = load_training_arguments(["--config", str(path)])
    assert data.dataset == ["data/speech"] and data.validation_dataset == ["data/held_out"]
    assert training.mixed_precision == "no"
    # Numbers as YAML reads them (`5e-4` without a dot is a string), converted as the flags would be.
    path.write_text("training:\n  learning_rate: 5e-4\n  max_steps: 1000\n  adam_betas: [0.5, 9e-1]\n")
    _, _, training = load_training_arguments(["--config", str(path)])
    assert (training.learning_rate, training.max_steps, training.adam_betas) == (5e-4, 1000, [0.5, 0.9])


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("model:\n  n_codebook: 4\n", "unknown option"),
        ("model:\n  n_codebooks: 4\nn_codebooks: 5\n", "twice"),
        ("training:\n  mixed_precision: fp16\n", "bf16"),
        ("model:\n  freeze: encoder,vocoder\n", "vocoder"),
        ("model:\n  freeze: encoder,quantizer,decoder\n", "nothing would train"),
        ("training:\n  logging_steps: 0\n", "logging_steps must be a positive integer"),
        ("training:\n  generator_max_grad_norm: -10\n", "generator_max_grad_norm must be positive"),
        ("training:\n  lr_decay: 1.5\n", "lr_decay .* in \\(0, 1\\]"),
        ("training:\n  adam_betas: [0.8, fast]\n", "`adam_betas` must be a list of float, got \\[0.8, 'fast'\\]"),
        ("training:\n  adam_betas: [0.8, 0.9, 0.99]\n", "adam_betas needs two values"),
        ("training:\n  batch_size: 8.5\n", "`batch_size` must be one int, got 8.5"),
        ("training:\n  batch_size: true\n", "`batch_size` must be one int"),
        ("training:\n  learning_rate: fast\n", "`learning_rate` must be one float"),
        ("model:\n  freeze: [encoder]\n", "`freeze` must be one str, got \\['encoder'\\]"),
        ("model:\n  downsampling_ratios: 2\n", "`downsampling_ratios` must be a list of int"),
        ("data:\n  streaming: maybe\n", "`streaming` must be one bool"),
        ("training:\n  output_dir: no\n", "`output_dir` must be one str, got False"),  # only mixed_precision maps it
        ("data:\n  dataset: 123\n", "`dataset` must be one str or a list of str, got 123"),
        ("data:\n  dataset: [data/a, 5]\n", "`dataset` must be one str or a list of str"),
        ("data:\n  validation_dataset: {source: x}\n", "`validation_dataset` must be one str or a list of str"),
        ("data:\n  shuffle_buffer_size: 0\n", "shuffle_buffer_size must be at least 1"),
    ],
)
def test_invalid_options_are_reported(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError, match=message):
        load_training_arguments(["--config", str(path)])


def test_model_arguments_repeat_every_dac_config_argument_with_its_default():
    defaults = {field.name: field.default for field in dataclasses.fields(DacModelArguments)}
    factories = {field.name: field.default_factory for field in dataclasses.fields(DacModelArguments)}
    config = DacConfig()
    assert set(GENERATOR_FIELDS) <= set(defaults)
    for name in GENERATOR_FIELDS:
        default = factories[name]() if defaults[name] is dataclasses.MISSING else defaults[name]
        if name == "quantizer_dropout":  # the released recipe trains with 0.5; the config's default is inference's
            assert (default, config.quantizer_dropout) == (0.5, 0.0)
        elif name in ("upsampling_ratios", "hidden_size"):  # None: derived, as in DacConfig
            assert default is None
        else:
            assert default == getattr(config, name), name


@pytest.mark.parametrize("name", RELEASED)
def test_released_recipes_describe_the_released_models(name):
    model, data, training = load_training_arguments(["--config", str(REPO / "training" / "configs" / f"{name}.yaml")])
    hub_config = json.loads((REPO / "hub_configs" / name / "config.json").read_text())
    ours = model.generator_config()
    for field in GENERATOR_FIELDS:
        assert getattr(ours, field) == hub_config[field], field
    assert ours.hop_length == hub_config["hop_length"]
    assert model.discriminator_config(ours.sampling_rate).to_dict() == {
        **DacDiscriminatorConfig(sampling_rate=ours.sampling_rate).to_dict()
    }
    assert (training.batch_size, training.max_steps, training.learning_rate, training.lr_decay) == (72, 400_000, 1e-4, 0.999996)
    assert (training.mel_loss_weight, training.feature_matching_loss_weight, training.adversarial_loss_weight) == (15, 2, 1)
    assert training.waveform_loss_weight == 0
    assert (model.commitment_loss_weight, model.codebook_loss_weight, model.quantizer_dropout) == (0.25, 1.0, 0.5)
    assert (data.sample_duration, data.loudness_target) == (0.38, -16.0)


class _Models:
    """A tiny generator and discriminator with their optimizers, prepared by a CPU Accelerator."""

    def __init__(self, freeze: tuple[str, ...] = (), quantizer_dropout: float = 0.0, options: tuple[str, ...] = ()):
        model_args, _, self.args = load_training_arguments(
            ["--config", TINY, "--quantizer_dropout", str(quantizer_dropout), *options]
        )
        torch.manual_seed(0)
        self.accelerator = Accelerator(cpu=True)
        generator = DacModel(model_args.generator_config())
        generator.apply_weight_norm()
        for part in freeze:
            getattr(generator, part).requires_grad_(False)
        discriminator = DacDiscriminator(model_args.discriminator_config(16000))
        optimizers = [
            torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3, betas=(0.8, 0.99))
            for m in (generator, discriminator)
        ]
        self.schedulers = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.5) for o in optimizers]
        self.generator, self.discriminator, self.optimizer_g, self.optimizer_d = self.accelerator.prepare(
            generator, discriminator, *optimizers
        )
        self.step = DacGanStep(
            self.accelerator, self.generator, self.discriminator, self.optimizer_g, self.optimizer_d,
            *self.schedulers, self.args, sampling_rate=16000,
        )

    def snapshot(self, module) -> dict[str, torch.Tensor]:
        return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _audio(batch: int = 2) -> torch.Tensor:
    time = torch.arange(2048) / 16000
    return torch.stack([0.3 * torch.sin(2 * torch.pi * (220 + 110 * i) * time)[None] for i in range(batch)])


def test_step_updates_discriminator_before_generator_losses_and_decays_learning_rates():
    models = _Models()
    first_conv = models.discriminator.discriminators[0].convs[0].parametrizations.weight.original1
    seen = []
    models.discriminator.register_forward_pre_hook(lambda module, args: seen.append(first_conv.detach().clone()))
    generator_before = models.snapshot(models.generator)
    discriminator_before = models.snapshot(models.discriminator)

    result = models.step(_audio())

    assert result.skipped is None
    assert len(seen) == 2  # the D update, then the G losses
    torch.testing.assert_close(seen[0], discriminator_before[[k for k in discriminator_before if k.endswith("convs.0.parametrizations.weight.original1")][0]])
    assert not torch.equal(seen[1], seen[0]), "the generator losses must use the updated discriminator"
    assert any(not torch.equal(v, models.snapshot(models.generator)[k]) for k, v in generator_before.items())
    assert [s.get_last_lr()[0] for s in models.schedulers] == [5e-4, 5e-4]
    expected_keys = {"loss/generator", "loss/discriminator", "loss/mel", "loss/adversarial", "loss/feature_matching",
                     "loss/commitment", "loss/codebook", "loss/stft", "loss/waveform_l1", "grad_norm/generator",
                     "grad_norm/discriminator"}
    assert set(result.values) == expected_keys
    total = (15 * result.values["loss/mel"] + 2 * result.values["loss/feature_matching"]
             + result.values["loss/adversarial"] + 0.25 * result.values["loss/commitment"] + result.values["loss/codebook"])
    torch.testing.assert_close(result.values["loss/generator"], total)


def test_waveform_loss_without_discriminator_trains_the_generator_alone():
    models = _Models(options=("--adversarial_loss_weight", "0", "--feature_matching_loss_weight", "0",
                              "--waveform_loss_weight", "100"))
    calls = []
    models.discriminator.register_forward_pre_hook(lambda module, args: calls.append(1))
    discriminator_before = models.snapshot(models.discriminator)
    generator_before = models.snapshot(models.generator)

    result = models.step(_audio())

    assert result.skipped is None and calls == []
    assert all(torch.equal(v, models.snapshot(models.discriminator)[k]) for k, v in discriminator_before.items())
    assert any(not torch.equal(v, models.snapshot(models.generator)[k]) for k, v in generator_before.items())
    assert "loss/adversarial" not in result.values and "loss/discriminator" not in result.values
    total = (15 * result.values["loss/mel"] + 100 * result.values["loss/waveform_l1"]
             + 0.25 * result.values["loss/commitment"] + result.values["loss/codebook"])
    torch.testing.assert_close(result.values["loss/generator"], total)
    assert [s.get_last_lr()[0] for s in models.schedulers] == [5e-4, 1e-3]  # only the generator stepped


def test_negative_loss_weights_are_refused():
    with pytest.raises(ValueError, match="waveform_loss_weight must not be negative"):
        load_training_arguments(["--config", TINY, "--waveform_loss_weight", "-1"])


def test_non_finite_loss_skips_both_updates():
    models = _Models()
    with torch.no_grad():
        models.generator.decoder.conv2.bias.fill_(float("nan"))  # every reconstruction is NaN
    generator_before, discriminator_before = models.snapshot(models.generator), models.snapshot(models.discriminator)
    result = models.step(_audio())
    assert result.skipped is not None and "non-finite discriminator loss" in result.skipped
    for before, module in ((generator_before, models.generator), (discriminator_before, models.discriminator)):
        after = models.snapshot(module)
        assert all(torch.allclose(after[k], v, rtol=0, atol=0, equal_nan=True) for k, v in before.items())
    assert [s.get_last_lr()[0] for s in models.schedulers] == [1e-3, 1e-3]


def test_frozen_parts_do_not_change():
    models = _Models(freeze=("encoder", "quantizer"), quantizer_dropout=0.5)
    before = models.snapshot(models.generator)
    for _ in range(2):
        assert models.step(_audio(4)).skipped is None
    after = models.snapshot(models.generator)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("decoder.") for k in changed)


def test_checkpoints_are_atomic_rotated_and_loadable(tmp_path, monkeypatch):
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(3, 2))
    progress = TrainingProgress()
    state = {"progress": progress}
    for step in (1, 2, 3):
        progress.step = step
        save_checkpoint(accelerator, tmp_path, step, keep_last=2, training_state=state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-3"]
    saved_weight = model.weight.detach().clone()

    def killed_mid_write(output_dir, **kwargs):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        Path(output_dir, "model.safetensors").write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(accelerator, "save_state", killed_mid_write)
    progress.step = 4
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(accelerator, tmp_path, 4, keep_last=2, training_state=state)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path).name == "checkpoint-3"
    assert (tmp_path / "checkpoint-2").is_dir()

    with torch.no_grad():
        model.weight.zero_()
    progress.step = 0
    load_checkpoint(accelerator, latest_checkpoint(tmp_path), state)
    assert progress.step == 3 and torch.equal(model.weight, saved_weight)
    assert json.loads((tmp_path / "checkpoint-3" / "training_state.json").read_text())["progress"]["step"] == 3
    save_checkpoint(accelerator, tmp_path, 5, keep_last=2, training_state=state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3", "checkpoint-5"]


class _RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["CHECKPOINT_CANARY"]),))


def test_checkpoints_of_earlier_versions_load_without_running_pickled_code(tmp_path, monkeypatch):
    accelerator = Accelerator(cpu=True)
    accelerator.prepare(torch.nn.Linear(3, 2))
    checkpoint = tmp_path / "checkpoint-7"
    accelerator.save_state(str(checkpoint))
    legacy_progress = {"step": 7, "best_validation_mel": np.float64(2.5), "skipped_clips": {}, "nonfinite_steps": 1}
    torch.save(legacy_progress, checkpoint / "custom_checkpoint_0.pkl")  # what register_for_checkpointing wrote
    progress = TrainingProgress()
    load_checkpoint(accelerator, checkpoint, {"progress": progress})
    assert (progress.step, progress.best_validation_mel, progress.nonfinite_steps) == (7, 2.5, 1)

    monkeypatch.setenv("CHECKPOINT_CANARY", str(tmp_path / "code_ran"))
    torch.save(_RunsCode(), checkpoint / "custom_checkpoint_0.pkl")
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(accelerator, checkpoint, {"progress": progress})
    assert not (tmp_path / "code_ran").exists()


def test_export_folds_weight_norm_and_replaces_the_previous_export(tmp_path):
    models = _Models()
    target = tmp_path / "best"
    export_models(models.accelerator, models.generator, models.discriminator, target)
    models.step(_audio())
    export_models(models.accelerator, models.generator, models.discriminator, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    extractor = DacFeatureExtractor.from_pretrained(target)
    config = models.accelerator.unwrap_model(models.generator).config
    assert (extractor.sampling_rate, extractor.hop_length) == (config.sampling_rate, config.hop_length)
    exported = DacModel.from_pretrained(target).eval()
    assert not exported.has_weight_norm
    audio = _audio()
    expected = models.accelerator.unwrap_model(models.generator).eval()(audio).audio_values
    torch.testing.assert_close(exported(audio).audio_values, expected, atol=1e-5, rtol=1e-4)
    discriminator = DacDiscriminator.from_pretrained(target / "discriminator")
    for key, value in models.accelerator.unwrap_model(models.discriminator).state_dict().items():
        assert torch.equal(discriminator.state_dict()[key], value)


def test_an_export_killed_between_its_renames_never_loses_the_last_complete_copy(tmp_path, monkeypatch):
    models = _Models()
    target = tmp_path / "best"
    export_models(models.accelerator, models.generator, models.discriminator, target)
    replace = os.replace

    def killed_before_the_new_export_lands(source, destination):
        if Path(source).name == ".incomplete-best":
            raise KeyboardInterrupt
        replace(source, destination)

    # The first kill leaves the only complete export at .previous-best; a second kill at the same point must not
    # delete it.
    monkeypatch.setattr(checkpointing.os, "replace", killed_before_the_new_export_lands)
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            export_models(models.accelerator, models.generator, models.discriminator, target)
        assert not target.exists()
        assert DacModel.from_pretrained(tmp_path / ".previous-best") is not None
    monkeypatch.setattr(checkpointing.os, "replace", replace)
    export_models(models.accelerator, models.generator, models.discriminator, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_averaged_checkpoints_hold_the_mean_of_the_folded_generator_weights(tmp_path):
    models = _Models()
    state = {"progress": TrainingProgress()}
    folded = []
    for step in (1, 2, 3):
        models.step(_audio())
        save_checkpoint(models.accelerator, tmp_path, step, keep_last=3, training_state=state)
        generator = models.accelerator.unwrap_model(models.generator)
        folded.append({name: tensor.clone() for name, tensor in generator.folded_state_dict().items()})
    assert any(not torch.equal(folded[1][name], folded[2][name]) for name in folded[1])
    with pytest.raises(ValueError, match="no final/ or best/ export"):
        average_checkpoints.main([str(tmp_path), "--last", "2"])
    export_models(models.accelerator, models.generator, models.discriminator, tmp_path / "final")

    averaged = DacModel.from_pretrained(average_checkpoints.main([str(tmp_path), "--last", "2"]))
    assert (tmp_path / "averaged" / "preprocessor_config.json").is_file()
    with pytest.raises(ValueError, match="which is not a saved model's"):  # the run itself is never replaced
        average_checkpoints.main([str(tmp_path), "--last", "2", "--output_dir", str(tmp_path)])
    assert (tmp_path / "final").is_dir()
    for name, tensor in averaged.state_dict().items():
        torch.testing.assert_close(tensor, (folded[1][name] + folded[2][name]) / 2, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="has 3 checkpoint"):
        average_checkpoints.main([str(tmp_path), "--last", "4"])
