"""Train or fine-tune DAC with the released GAN recipe, on one device or many, through Accelerate.

    accelerate launch training/train.py --config training/configs/dac_44khz.yaml \\
        --dataset path/to/audio --output_dir runs/dac44 [--resume] [--init_from descript/dac_44khz] [--freeze ...]

Reads top to bottom: options -> models -> optimizers -> data -> (resume) -> loop of GAN steps with logging,
validation, audio samples and checkpoints -> export of `final/` (and `best/` whenever validation improves).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make `training` and `modeling_dac` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, gather_object, set_seed
from tqdm.auto import tqdm

from modeling_dac import DacConfig, DacModel
from modeling_dac.conversion import load_official_checkpoint
from modeling_dac.metrics import DacMelDistance, DacStftDistance, si_sdr
from training.checkpointing import (
    TrainingProgress,
    export_models,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from training.config import (
    GENERATOR_FIELDS,
    DacDataArguments,
    DacModelArguments,
    DacTrainingArguments,
    arguments_as_dict,
    load_training_arguments,
)
from training.data import (
    SKIP_REASONS,
    DacAudioCropper,
    DacValidationDataset,
    build_datasets,
    build_training_dataloader,
    collate_examples,
)
from training.discriminator import DacDiscriminator
from training.step import DacGanStep

__all__ = ["load_discriminator", "load_generator", "main", "validate"]

logger = get_logger(__name__)

LOGGED_VALUES = (
    "loss/generator",
    "loss/discriminator",
    "loss/mel",
    "loss/adversarial",
    "loss/feature_matching",
    "loss/commitment",
    "loss/codebook",
    "loss/stft",
    "loss/waveform_l1",
    "grad_norm/generator",
    "grad_norm/discriminator",
)
_PROGRESS_BAR_VALUES = ("loss/mel", "loss/generator", "loss/discriminator")
# Options of the generator that training may change on a pretrained model; the rest is its architecture.
_TRAINING_FIELDS = ("quantizer_dropout", "commitment_loss_weight", "codebook_loss_weight")


def _is_official_checkpoint(init_from: str) -> bool:
    return init_from.endswith((".pth", ".pt"))


def load_generator(model_args: DacModelArguments) -> DacModel:
    """A new generator from the options, or a pretrained one (folder, hub id or official `.pth`) to fine-tune."""
    config = model_args.generator_config()
    if model_args.init_from is None:
        return DacModel(config)
    if _is_official_checkpoint(model_args.init_from):
        pretrained = load_official_checkpoint(model_args.init_from)
    else:
        # Transformers builds the default config for a folder without config.json, which would then be filled with
        # another architecture's weights.
        if Path(model_args.init_from).is_dir() and not (Path(model_args.init_from) / "config.json").is_file():
            raise ValueError(
                f"--init_from {model_args.init_from} has no config.json, so it is not a saved model. A training "
                "checkpoint (checkpoint-<step>) continues with --resume; to fine-tune from a run, start from its "
                "final/ or best/ export."
            )
        pretrained = DacModel.from_pretrained(model_args.init_from)
    architecture = {name: getattr(pretrained.config, name) for name in GENERATOR_FIELDS if name not in _TRAINING_FIELDS}
    differing = [name for name, value in architecture.items() if value != getattr(config, name)]
    if differing:
        logger.warning(f"--init_from {model_args.init_from}: using its {differing}, not the configured values.")
    training_values = {name: getattr(config, name) for name in _TRAINING_FIELDS}
    generator = DacModel(DacConfig(**architecture, **training_values))
    generator.load_state_dict(pretrained.state_dict())
    return generator


def load_discriminator(model_args: DacModelArguments, sampling_rate: int) -> DacDiscriminator:
    """A new discriminator, or the one saved next to `--init_from` (`<init_from>/discriminator`) when there is one."""
    init_from = model_args.init_from
    if init_from is not None and not _is_official_checkpoint(init_from):
        try:
            discriminator = DacDiscriminator.from_pretrained(init_from, subfolder="discriminator")
            logger.info(f"Discriminator initialised from {init_from}/discriminator.")
            return discriminator
        except (OSError, ValueError):
            logger.info(f"No discriminator saved with {init_from}: the discriminator starts from scratch.")
    return DacDiscriminator(model_args.discriminator_config(sampling_rate))


class _LoggingWindow:
    """Step values, data-loading time and skipped clips since the last log; `take_*` reduce them over processes."""

    def __init__(self, accelerator: Accelerator, batch_size: int):
        self.accelerator = accelerator
        self.batch_size = batch_size
        self.sums = torch.zeros(len(LOGGED_VALUES), device=accelerator.device)
        self.counts = torch.zeros(len(LOGGED_VALUES), device=accelerator.device)
        self.skipped_clips = torch.zeros(len(SKIP_REASONS), device=accelerator.device)
        self._restart_clock()

    def _restart_clock(self):
        self.start, self.steps, self.data_seconds = time.perf_counter(), 0, 0.0

    def add_batch(self, batch: dict, data_seconds: float):
        self.data_seconds += data_seconds
        counts = [batch[f"skipped_{reason}"] for reason in SKIP_REASONS]
        self.skipped_clips += torch.tensor(counts, device=self.accelerator.device, dtype=torch.float32)

    def add_step(self, result):
        self.steps += 1
        if result.skipped is not None:  # its values may be NaN: keep them out of the means
            return
        for index, name in enumerate(LOGGED_VALUES):
            if name in result.values:
                self.sums[index] += result.values[name].float()
                self.counts[index] += 1

    def add_skipped_clips_to(self, progress: TrainingProgress):
        counts = self.accelerator.reduce(self.skipped_clips.clone(), reduction="sum").tolist()
        for reason, count in zip(SKIP_REASONS, counts):
            progress.skipped_clips[reason] += int(count)
        self.skipped_clips.zero_()

    def take_means(self) -> dict[str, float]:
        sums = self.accelerator.reduce(self.sums.clone(), reduction="sum")
        counts = self.accelerator.reduce(self.counts.clone(), reduction="sum")
        elapsed = time.perf_counter() - self.start
        means = {name: (sums[i] / counts[i]).item() for i, name in enumerate(LOGGED_VALUES) if counts[i] > 0}
        means.update(
            {
                "perf/steps_per_second": self.steps / elapsed,
                "perf/samples_per_second": self.steps * self.batch_size / elapsed,
                "perf/data_seconds_per_step": self.data_seconds / max(self.steps, 1),
            }
        )
        self.sums.zero_()
        self.counts.zero_()
        self._restart_clock()
        return means


def _tracker_names(report_to: str):
    if report_to in ("none", ""):
        return None
    return report_to if report_to == "all" else [name.strip() for name in report_to.split(",")]


def _check_trackers_available(report_to: str, accelerator: Accelerator) -> None:
    """Accelerate drops a requested tracker whose package is missing with a warning: the run would log nothing."""
    requested = _tracker_names(report_to)
    if requested is None or requested == "all":
        return
    available = {str(tracker) for tracker in accelerator.log_with}
    missing = [name for name in requested if name not in available]
    if missing:
        raise ValueError(
            f"--report_to {report_to}: {', '.join(missing)} is not installed (pip install {' '.join(missing)}), so "
            "nothing would be logged there; install it or pass --report_to none."
        )


def _loggable(value):
    return value if isinstance(value, (int, float, str, bool)) else str(value)


@torch.no_grad()
def validate(accelerator: Accelerator, generator, loader, mel_distance, stft_distance) -> dict[str, float] | None:
    """Mean mel distance, STFT distance and SI-SDR of the reconstructions of the validation clips (all processes)."""
    model = accelerator.unwrap_model(generator).eval()
    sampling_rate = model.config.sampling_rate
    per_item = []
    for batch in loader:
        if batch["audio"] is None:
            continue
        audio = batch["audio"].to(accelerator.device)
        reconstruction = model(audio).audio_values.float()
        scores = zip(
            mel_distance(audio, reconstruction).tolist(),
            stft_distance(audio, reconstruction).tolist(),
            np.atleast_1d(si_sdr(audio.cpu(), reconstruction.cpu(), sampling_rate)).tolist(),
        )
        per_item.extend(scores)
    per_item = gather_object(per_item)
    if not per_item:
        return None
    mel, stft, sdr = np.mean(np.asarray(per_item, dtype=np.float64), axis=0)
    return {"validation/mel_distance": mel, "validation/stft_distance": stft, "validation/si_sdr": sdr}


@torch.no_grad()
def log_samples(accelerator: Accelerator, generator, dataset, count: int, step: int, mel_distance):
    """The first `count` validation clips and their reconstructions, as audio and log-mel images, to TensorBoard."""
    trackers = [tracker for tracker in accelerator.trackers if tracker.name == "tensorboard"]
    if not accelerator.is_main_process or not trackers:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    writer = trackers[0].tracker
    model = accelerator.unwrap_model(generator).eval()
    sampling_rate = model.config.sampling_rate
    examples = [example for example in (dataset[i] for i in range(min(len(dataset), count))) if example is not None]
    for index, example in enumerate(examples):
        audio = example["audio"][None].to(accelerator.device)
        reconstruction = model(audio).audio_values.float()
        writer.add_audio(f"samples/{index}/reconstruction", reconstruction[0].cpu(), step, sample_rate=sampling_rate)
        writer.add_audio(f"samples/{index}/original", audio[0].cpu(), step, sample_rate=sampling_rate)
        # The finest-frequency scale of the mel loss (2048-sample window, most mel bands).
        spectrograms = [mel_distance.spectrograms(signal[:, 0])[-1][0] for signal in (audio, reconstruction)]
        figure, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
        for axis, spectrogram, title in zip(axes, spectrograms, ("original", "reconstruction")):
            axis.imshow(spectrogram.clamp(min=1e-5).log10().cpu().numpy(), origin="lower", aspect="auto")
            axis.set_title(f"{title}: log10 mel")
        writer.add_figure(f"samples/{index}/mel", figure, step)
        plt.close(figure)


def _apply_learning_rate_schedule(scheduler_g, scheduler_d, training_args: DacTrainingArguments):
    """
    A checkpoint restores the learning-rate schedule it was saved with. When `learning_rate` or `lr_decay` differ
    (lowered to calm an unstable run, say), apply theirs instead: `learning_rate * lr_decay ** updates so far`.
    """
    options = (training_args.learning_rate, training_args.lr_decay)
    saved = (scheduler_g.base_lrs[0], scheduler_g.gamma)
    if saved == options:
        return
    logger.warning(
        f"Resuming with the learning rate schedule (learning_rate, lr_decay) {options} instead of the checkpoint's "
        f"{saved}."
    )
    for scheduler in (scheduler_g, scheduler_d):
        scheduler.base_lrs = [training_args.learning_rate] * len(scheduler.base_lrs)
        scheduler.gamma = training_args.lr_decay
        for group in scheduler.optimizer.param_groups:
            group["lr"] = training_args.learning_rate * training_args.lr_decay**scheduler.last_epoch


def _has_accelerator_device() -> bool:
    if hasattr(torch, "accelerator"):
        return torch.accelerator.is_available()
    return torch.cuda.is_available()


def main(argv: list[str] | None = None):
    model_args, data_args, training_args = load_training_arguments(argv)
    _train(model_args, data_args, training_args)


def _build_accelerator(
    model_args: DacModelArguments, training_args: DacTrainingArguments, output_dir: Path
) -> Accelerator:
    """The Accelerator of the run, refusing what the trainer does not support (fp16, gradient accumulation)."""
    accelerator = Accelerator(
        # Without a GPU, say so: Accelerate then runs several launched processes as one CPU (gloo) group.
        cpu=not _has_accelerator_device(),
        mixed_precision=training_args.mixed_precision,
        log_with=_tracker_names(training_args.report_to),
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # With quantizer_dropout 1.0 every item may skip the last codebooks, leaving their parameters unused.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=model_args.quantizer_dropout >= 1.0)],
    )
    if accelerator.mixed_precision == "fp16":  # set by `accelerate config` / ACCELERATE_MIXED_PRECISION
        raise ValueError(
            "fp16 mixed precision (from the Accelerate configuration or environment) is not supported: use bf16 "
            "or no; GAN training of DAC is not stable in fp16."
        )
    _check_trackers_available(training_args.report_to, accelerator)
    if accelerator.gradient_accumulation_steps != 1:  # ACCELERATE_GRADIENT_ACCUMULATION_STEPS, DeepSpeed configs
        raise ValueError(
            f"gradient accumulation ({accelerator.gradient_accumulation_steps} steps, from the Accelerate "
            "configuration or environment) is not supported: every batch is one generator and one discriminator "
            "update; raise --batch_size or the number of processes instead."
        )
    if training_args.batch_size % accelerator.num_processes:
        raise ValueError(
            f"batch_size {training_args.batch_size} must be divisible by the {accelerator.num_processes} processes."
        )
    return accelerator


def _build_models(model_args: DacModelArguments, seed: int) -> tuple[DacModel, DacDiscriminator]:
    """Generator (weight norm on, frozen parts frozen) and discriminator, initialised alike on every process."""
    set_seed(seed)
    generator = load_generator(model_args)
    discriminator = load_discriminator(model_args, generator.config.sampling_rate)
    generator.apply_weight_norm()
    for part in model_args.frozen_modules:
        getattr(generator, part).requires_grad_(False)
    logger.info(
        f"Generator {sum(p.numel() for p in generator.parameters()) / 1e6:.2f}M parameters "
        f"({sum(p.numel() for p in generator.parameters() if p.requires_grad) / 1e6:.2f}M trained), "
        f"discriminator {sum(p.numel() for p in discriminator.parameters()) / 1e6:.2f}M."
    )
    return generator, discriminator


def _build_optimizer(module: torch.nn.Module, training_args: DacTrainingArguments):
    """AdamW over the trained parameters, with a per-iteration exponential learning-rate decay."""
    optimizer = torch.optim.AdamW(
        [p for p in module.parameters() if p.requires_grad],
        lr=training_args.learning_rate,
        betas=tuple(training_args.adam_betas),
        weight_decay=training_args.weight_decay,
    )
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=training_args.lr_decay)


def _cropper(
    data_args: DacDataArguments, model_config, seconds: float, whole_frames: Callable[[float], int] = round
) -> DacAudioCropper:
    """Crops of `seconds`, made a whole number of code frames by `whole_frames`, normalised as the options say."""
    hop_length = model_config.hop_length
    return DacAudioCropper(
        sampling_rate=model_config.sampling_rate,
        num_samples=max(1, whole_frames(seconds * model_config.sampling_rate / hop_length)) * hop_length,
        loudness_target=data_args.loudness_target,
        loudness_cutoff=data_args.loudness_cutoff,
        num_crop_tries=data_args.num_crop_tries,
        random_phase_shift=data_args.random_phase_shift,
    )


def _check_crop_length(option: str, cropper: DacAudioCropper, minimum_length: int, hop_length: int, needed_by: str):
    """Refuses crops shorter than `minimum_length` samples, naming the shortest `option` (seconds) that is enough."""
    if cropper.num_samples >= minimum_length:
        return
    # Rounded up to 0.1 ms, so that the duration named gives crops that are long enough.
    shortest = math.ceil(math.ceil(minimum_length / hop_length) * hop_length / cropper.sampling_rate * 1e4) / 1e4
    raise ValueError(
        f"--{option} gives crops of {cropper.num_samples} samples ({cropper.num_samples / cropper.sampling_rate:g} "
        f"s), but {needed_by} need at least {minimum_length} for their STFT windows: use --{option} {shortest:g} "
        "or more."
    )


def _validation_loader(dataset: DacValidationDataset, accelerator: Accelerator, training_args: DacTrainingArguments):
    """This process's share of the validation clips (every `num_processes`-th), in fixed batches."""
    return torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, range(accelerator.process_index, len(dataset), accelerator.num_processes)),
        batch_size=training_args.validation_batch_size,
        collate_fn=collate_examples,
        # A generator of its own: iterating must not draw from the global one, or resumed runs would diverge.
        generator=torch.Generator().manual_seed(training_args.seed),
    )


def _train(model_args: DacModelArguments, data_args: DacDataArguments, training_args: DacTrainingArguments):
    output_dir = Path(training_args.output_dir)
    earlier = latest_checkpoint(output_dir)
    if earlier is not None and not training_args.resume:
        # Checkpoints are pruned by step, so the new run's own checkpoints would be the ones deleted.
        raise ValueError(
            f"{output_dir} holds checkpoints of an earlier run (up to {earlier.name}): pass --resume to continue it, "
            "or choose another --output_dir."
        )
    accelerator = _build_accelerator(model_args, training_args, output_dir)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logger.info(str(accelerator.state).strip())
    per_process_batch_size = training_args.batch_size // accelerator.num_processes

    generator, discriminator = _build_models(model_args, training_args.seed)
    sampling_rate = generator.config.sampling_rate
    optimizer_g, scheduler_g = _build_optimizer(generator, training_args)
    optimizer_d, scheduler_d = _build_optimizer(discriminator, training_args)
    generator, discriminator, optimizer_g, optimizer_d = accelerator.prepare(
        generator, discriminator, optimizer_g, optimizer_d
    )
    gan_step = DacGanStep(
        accelerator, generator, discriminator, optimizer_g, optimizer_d, scheduler_g, scheduler_d,
        training_args, sampling_rate,
    )
    validation_mel = DacMelDistance(sampling_rate, reduction="none").to(accelerator.device)
    validation_stft = DacStftDistance(reduction="none").to(accelerator.device)
    model_config = accelerator.unwrap_model(generator).config
    training_cropper = _cropper(data_args, model_config, data_args.sample_duration)
    # Rounded down, so that clips cut to exactly `validation_duration` are long enough.
    validation_cropper = _cropper(
        data_args, model_config, data_args.validation_duration, lambda frames: math.floor(frames + 1e-9)
    )
    # Before any data is read: a crop too short for an STFT window would otherwise fail at the first step.
    _check_crop_length(
        "sample_duration", training_cropper, gan_step.minimum_length, model_config.hop_length,
        "the training losses and the discriminator",
    )
    if data_args.num_validation_examples > 0:
        _check_crop_length(
            "validation_duration", validation_cropper,
            max(validation_mel.minimum_length, validation_stft.minimum_length), model_config.hop_length,
            "the validation metrics",
        )
    progress = TrainingProgress()
    # Saved with every checkpoint (training_state.json); the order is that of checkpoints of earlier versions.
    training_state = {"generator_scheduler": scheduler_g, "discriminator_scheduler": scheduler_d, "progress": progress}

    train_records, validation_records = build_datasets(data_args, training_args.seed)
    validation_dataset = DacValidationDataset(validation_records, validation_cropper, training_args.seed)
    validation_loader = _validation_loader(validation_dataset, accelerator, training_args)

    # Different quantizer-dropout draws on each process; a resumed run then restores each process's generators.
    set_seed(training_args.seed, device_specific=True)
    if training_args.resume:
        checkpoint = latest_checkpoint(output_dir)
        if checkpoint is None:
            logger.warning(f"--resume: no checkpoint in {output_dir}; starting from step 0.")
        else:
            load_checkpoint(accelerator, checkpoint, training_state)
            logger.info(f"Resumed from {checkpoint} at step {progress.step}.")
            _apply_learning_rate_schedule(scheduler_g, scheduler_d, training_args)

    train_loader = build_training_dataloader(
        train_records,
        training_cropper,
        seed=training_args.seed,
        per_process_batch_size=per_process_batch_size,
        start_step=progress.step,
        process_index=accelerator.process_index,
        num_processes=accelerator.num_processes,
        num_workers=data_args.num_workers,
        shuffle_buffer_size=data_args.shuffle_buffer_size,
    )
    hyperparameters = arguments_as_dict(model_args, data_args, training_args)
    accelerator.init_trackers(training_args.project_name, {k: _loggable(v) for k, v in hyperparameters.items()})

    def run_validation_and_export_best():
        scores = validate(accelerator, generator, validation_loader, validation_mel, validation_stft)
        if scores is None:
            logger.warning("No usable validation clip (too short, silent or unreadable): validation skipped.")
            return
        accelerator.log(scores, step=progress.step)
        logger.info(f"Step {progress.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        if scores["validation/mel_distance"] < progress.best_validation_mel:
            progress.best_validation_mel = float(scores["validation/mel_distance"])
            export_models(accelerator, generator, discriminator, output_dir / "best")

    window = _LoggingWindow(accelerator, training_args.batch_size)
    consecutive_nonfinite = 0
    batches = iter(train_loader)
    bar = tqdm(
        total=training_args.max_steps, initial=progress.step, disable=not accelerator.is_local_main_process,
        desc="training", dynamic_ncols=True,
    )
    while progress.step < training_args.max_steps:
        data_start = time.perf_counter()
        batch = next(batches)
        window.add_batch(batch, time.perf_counter() - data_start)
        result = gan_step(batch["audio"].to(accelerator.device, non_blocking=True))
        window.add_step(result)
        progress.step += 1
        bar.update(1)

        if result.skipped is None:
            consecutive_nonfinite = 0
        else:
            consecutive_nonfinite += 1
            progress.nonfinite_steps += 1
            logger.warning(f"Step {progress.step}: skipped the {result.skipped}.")
            if consecutive_nonfinite >= training_args.max_consecutive_nonfinite_steps:
                raise RuntimeError(
                    f"Stopping at step {progress.step}: {consecutive_nonfinite} steps in a row had a NaN/Inf loss "
                    f"or gradient (last: {result.skipped}). Lower the learning rate, check the data, or resume "
                    f"from an earlier checkpoint in {output_dir}."
                )

        finished = progress.step == training_args.max_steps
        if progress.step % training_args.logging_steps == 0 or finished:
            window.add_skipped_clips_to(progress)
            logs = {
                **window.take_means(),
                "lr/generator": optimizer_g.param_groups[0]["lr"],
                "lr/discriminator": optimizer_d.param_groups[0]["lr"],
                "data/nonfinite_steps": progress.nonfinite_steps,
                **{f"data/skipped_{reason}": count for reason, count in progress.skipped_clips.items()},
            }
            accelerator.log(logs, step=progress.step)
            bar.set_postfix({k.split("/")[1]: f"{logs[k]:.3f}" for k in _PROGRESS_BAR_VALUES if k in logs})
        if progress.step % training_args.sample_steps == 0 or finished:
            log_samples(
                accelerator, generator, validation_dataset, training_args.num_audio_samples, progress.step,
                validation_mel,
            )
        if progress.step % training_args.eval_steps == 0 or finished:
            run_validation_and_export_best()
        if progress.step % training_args.save_steps == 0 or finished:
            window.add_skipped_clips_to(progress)
            save_checkpoint(accelerator, output_dir, progress.step, training_args.save_total_limit, training_state)
    bar.close()

    export_models(accelerator, generator, discriminator, output_dir / "final")
    best = (
        f"best validation mel distance {progress.best_validation_mel:.4f} in {output_dir / 'best'}"
        if math.isfinite(progress.best_validation_mel)
        else "no validation ran, so no best/"
    )
    logger.info(f"Done at step {progress.step}: {output_dir / 'final'} ({best}); skipped clips {progress.skipped_clips}.")
    accelerator.end_training()


if __name__ == "__main__":
    main()
