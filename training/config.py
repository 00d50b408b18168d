"""Training configuration: three dataclasses (model, data, training), filled from a YAML file and command-line flags.

A YAML file holds the values of a recipe (`training/configs/*.yaml`); flags given after it override single
values. The YAML may group keys under `model:`, `data:` and `training:` or list them flat. Every key is the
name of a dataclass field below, and the same name is the command-line flag (`--max_steps 1000`).
"""

import argparse
import inspect
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from modeling_dac import DacConfig

from .discriminator import DacDiscriminatorConfig

__all__ = [
    "FREEZABLE_MODULES",
    "GENERATOR_FIELDS",
    "DacDataArguments",
    "DacModelArguments",
    "DacTrainingArguments",
    "arguments_as_dict",
    "load_training_arguments",
]

FREEZABLE_MODULES = ("encoder", "quantizer", "decoder")
# The DacConfig arguments, which DacModelArguments repeats under the same names (tests check that it holds them
# all); `hop_length` follows from the strides.
GENERATOR_FIELDS = tuple(
    name for name in inspect.signature(DacConfig.__init__).parameters if name not in ("self", "hop_length", "kwargs")
)
# Flags that may repeat on the command line; given there, they replace the YAML list instead of extending it.
_REPEATABLE_FIELDS = ("dataset", "validation_dataset")


@dataclass
class DacModelArguments:
    """The generator (DacConfig fields), the discriminator and where their weights start from."""

    encoder_hidden_size: int = field(default=64, metadata={"help": "Width of the first encoder convolution."})
    downsampling_ratios: list[int] = field(default_factory=lambda: [2, 4, 8, 8], metadata={"help": "Encoder strides."})
    decoder_hidden_size: int = field(default=1536, metadata={"help": "Width of the first decoder convolution."})
    upsampling_ratios: list[int] | None = field(default=None, metadata={"help": "Decoder strides (default: reversed)."})
    hidden_size: int | None = field(default=None, metadata={"help": "Latent size (default: encoder width x 2^blocks)."})
    n_codebooks: int = field(default=9, metadata={"help": "Number of residual codebooks."})
    codebook_size: int = field(default=1024, metadata={"help": "Entries per codebook."})
    codebook_dim: int = field(default=8, metadata={"help": "Dimension of the code lookup space."})
    quantizer_dropout: float = field(
        default=0.5, metadata={"help": "Fraction of each batch quantized with a random number of codebooks."}
    )
    commitment_loss_weight: float = field(default=0.25, metadata={"help": "Weight of the commitment loss."})
    codebook_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the codebook loss."})
    sampling_rate: int = field(default=44100, metadata={"help": "Sample rate of the model; data is resampled to it."})

    discriminator_periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    discriminator_period_channels: list[int] = field(default_factory=lambda: [32, 128, 512, 1024, 1024])
    discriminator_fft_sizes: list[int] = field(default_factory=lambda: [2048, 1024, 512])
    discriminator_band_edges: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
    discriminator_band_channels: int = 32

    init_from: str | None = field(
        default=None,
        metadata={
            "help": "Start the generator from a pretrained model (local folder or hub id) or an official DAC .pth "
            "file; a `discriminator/` folder next to it starts the discriminator too. Architecture flags are then "
            "taken from that model."
        },
    )
    freeze: str | None = field(
        default=None,
        metadata={"help": "Comma-separated generator parts kept fixed, e.g. `encoder,quantizer` (decoder-only)."},
    )

    def __post_init__(self):
        unknown = [name for name in self.frozen_modules if name not in FREEZABLE_MODULES]
        if unknown:
            raise ValueError(f"--freeze got {unknown}; the generator parts are {list(FREEZABLE_MODULES)}.")
        if len(self.frozen_modules) == len(FREEZABLE_MODULES):
            raise ValueError("--freeze lists every generator part: nothing would train.")

    @property
    def frozen_modules(self) -> list[str]:
        return [name.strip() for name in (self.freeze or "").split(",") if name.strip()]

    def generator_config(self) -> DacConfig:
        return DacConfig(**{name: getattr(self, name) for name in GENERATOR_FIELDS})

    def discriminator_config(self, sampling_rate: int) -> DacDiscriminatorConfig:
        return DacDiscriminatorConfig(
            periods=self.discriminator_periods,
            period_channels=self.discriminator_period_channels,
            fft_sizes=self.discriminator_fft_sizes,
            band_edges=self.discriminator_band_edges,
            band_channels=self.discriminator_band_channels,
            sampling_rate=sampling_rate,
        )


@dataclass
class DacDataArguments:
    """Where the audio comes from and how training examples are cut from it."""

    dataset: list[str] = field(
        default_factory=list,
        metadata={
            "action": "extend",
            "help": "Training audio: a hub dataset id, a local folder of audio files or parquet file(s), optionally "
            "followed by comma-separated options name=, split=, column=, weight= "
            "(e.g. `openslr/librispeech_asr,name=clean,split=train.100,weight=2`). Repeatable: sources are mixed, "
            "in turn or by weight.",
        },
    )
    validation_dataset: list[str] = field(
        default_factory=list,
        metadata={
            "action": "extend",
            "help": "Held-out audio, same syntax as --dataset; validation uses its first --num_validation_examples "
            "records. Without it, that many records of the first training source are held out.",
        },
    )
    streaming: bool = field(default=False, metadata={"help": "Stream the datasets instead of downloading them."})
    sample_duration: float = field(default=0.38, metadata={"help": "Training crop length in seconds."})
    validation_duration: float = field(default=5.0, metadata={"help": "Validation clip length in seconds."})
    num_validation_examples: int = field(
        default=250,
        metadata={
            "help": "Number of validation clips, which bounds the cost of validation: the first records of "
            "--validation_dataset, or else of the first --dataset (held out of training)."
        },
    )
    loudness_target: float = field(default=-16.0, metadata={"help": "Loudness every example is normalised to (LUFS)."})
    loudness_cutoff: float = field(
        default=-40.0, metadata={"help": "Crops quieter than this (LUFS) are redrawn; a clip without one is skipped."}
    )
    num_crop_tries: int = field(default=8, metadata={"help": "Random crops tried per clip before it counts as silent."})
    random_phase_shift: bool = field(default=True, metadata={"help": "Rotate each example's phase at random."})
    num_workers: int = field(default=8, metadata={"help": "DataLoader worker processes per training process."})
    shuffle_buffer_size: int = field(
        default=1000, metadata={"help": "Records held to shuffle a streamed dataset (held in memory, bytes included)."}
    )

    def __post_init__(self):
        if self.sample_duration <= 0 or self.validation_duration <= 0:
            raise ValueError("sample_duration and validation_duration must be positive numbers of seconds.")
        if self.num_crop_tries < 1:
            raise ValueError(f"num_crop_tries must be at least 1, got {self.num_crop_tries}.")
        if self.num_workers < 0 or self.num_validation_examples < 0:
            raise ValueError("num_workers and num_validation_examples must not be negative.")
        if self.shuffle_buffer_size < 1:
            raise ValueError(f"shuffle_buffer_size must be at least 1, got {self.shuffle_buffer_size}.")


@dataclass
class DacTrainingArguments:
    """Optimisation, loss weights, checkpoints and logging."""

    output_dir: str = field(default="outputs/dac", metadata={"help": "Checkpoints, exported models and logs."})
    max_steps: int = field(default=400_000, metadata={"help": "Training iterations (one G and one D update each)."})
    batch_size: int = field(default=72, metadata={"help": "Examples per step over all processes."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate of both networks."})
    adam_betas: list[float] = field(default_factory=lambda: [0.8, 0.99])
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (PyTorch's default)."})
    lr_decay: float = field(default=0.999996, metadata={"help": "ExponentialLR gamma, applied every step."})
    generator_max_grad_norm: float = field(default=1000.0, metadata={"help": "Generator gradient-norm clip."})
    discriminator_max_grad_norm: float = field(default=10.0, metadata={"help": "Discriminator gradient-norm clip."})
    mel_loss_weight: float = 15.0
    feature_matching_loss_weight: float = 2.0
    adversarial_loss_weight: float = 1.0
    waveform_loss_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of an L1 loss on the waveform (0 in the released recipe). It ties the phase of the "
            "reconstruction to the input, which raises SI-SDR early in training."
        },
    )
    mixed_precision: str | None = field(
        default=None, metadata={"help": "`no` or `bf16`; default: what `accelerate launch` was told."}
    )
    seed: int = 0
    save_steps: int = field(default=1000, metadata={"help": "Write a resumable checkpoint every N steps."})
    save_total_limit: int = field(default=3, metadata={"help": "Keep the last K checkpoints."})
    resume: bool = field(default=False, metadata={"help": "Continue from the latest checkpoint in output_dir."})
    eval_steps: int = field(default=1000, metadata={"help": "Validate (mel, STFT distance, SI-SDR) every N steps."})
    sample_steps: int = field(default=10_000, metadata={"help": "Log audio and mel images every N steps."})
    num_audio_samples: int = field(default=4, metadata={"help": "Validation clips logged as audio and images."})
    validation_batch_size: int = 8
    logging_steps: int = field(default=10, metadata={"help": "Log training losses every N steps."})
    report_to: str = field(default="tensorboard", metadata={"help": "Accelerate tracker(s): tensorboard, wandb, all, none."})
    project_name: str = "dac"
    max_consecutive_nonfinite_steps: int = field(
        default=10, metadata={"help": "Stop when this many steps in a row have a NaN/Inf loss or gradient."}
    )

    @property
    def trains_discriminator(self) -> bool:
        """With both adversarial weights at 0 the discriminator is neither run nor updated (mel/waveform-only training)."""
        return self.adversarial_loss_weight > 0 or self.feature_matching_loss_weight > 0

    def __post_init__(self):
        if self.mixed_precision not in (None, "no", "bf16"):
            raise ValueError(
                f"mixed_precision={self.mixed_precision!r} is not supported: use `no` or `bf16`. fp16 needs a loss "
                "scaler per network, and GAN training of DAC is not stable in fp16."
            )
        for name in ("mel_loss_weight", "feature_matching_loss_weight", "adversarial_loss_weight", "waveform_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}.")
        positive_integers = ("max_steps", "batch_size", "save_steps", "save_total_limit", "eval_steps", "sample_steps")
        for name in (*positive_integers, "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        for name in ("learning_rate", "generator_max_grad_norm", "discriminator_max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay is the learning rate's factor per step, in (0, 1]; got {self.lr_decay}.")
        try:  # YAML reads `8e-1` (no dot) as a string
            self.adam_betas = [float(beta) for beta in self.adam_betas]
        except (TypeError, ValueError) as error:
            raise ValueError(f"adam_betas must be two numbers, got {self.adam_betas}.") from error
        if len(self.adam_betas) != 2 or not all(0 <= beta < 1 for beta in self.adam_betas):
            raise ValueError(f"adam_betas needs two values in [0, 1), got {self.adam_betas}.")


_DATACLASSES = (DacModelArguments, DacDataArguments, DacTrainingArguments)


def _read_yaml(path: str | Path) -> dict:
    with open(path) as stream:
        raw = yaml.safe_load(stream) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a mapping of option names to values.")
    flat = {}
    for key, value in raw.items():
        entries = value.items() if key in ("model", "data", "training") and isinstance(value, dict) else [(key, value)]
        for name, entry in entries:
            if name in flat:
                raise ValueError(f"{path} sets `{name}` twice.")
            flat[name] = entry
    known = {f.name for dataclass_type in _DATACLASSES for f in fields(dataclass_type)}
    unknown = sorted(set(flat) - known)
    if unknown:
        raise ValueError(f"{path} has unknown option(s) {unknown}.")
    return flat


def _as_flag_value(convert, value):
    """`value` read from YAML, converted as argparse converts the flag's text (`convert` is the action's type)."""
    if convert is string_to_bool:
        return value if isinstance(value, bool) else string_to_bool(str(value))
    if isinstance(value, (bool, list, dict)):
        raise ValueError(f"{value!r} is not a single {getattr(convert, '__name__', 'value')}")
    return convert(str(value))


def _checked_yaml_values(parser: HfArgumentParser, values: dict, path: str) -> dict:
    """The YAML `values` with the types the flags would have: `batch_size: 8.5` is an error, not a crash later."""
    actions = {action.dest: action for action in parser._actions if action.type is not None}
    checked = {}
    for name, value in values.items():
        action = actions.get(name)
        if name == "mixed_precision" and value is False:  # YAML reads Accelerate's unquoted `no` as false
            value = "no"
        if value is None or action is None:
            checked[name] = value
            continue
        if name in _REPEATABLE_FIELDS:  # one source may be written as a plain string
            checked[name] = [value] if isinstance(value, str) else value
            if not isinstance(checked[name], list) or not all(isinstance(item, str) for item in checked[name]):
                raise ValueError(f"{path}: `{name}` must be one str or a list of str, got {value!r}.")
            continue
        expected = getattr(action.type, "__name__", str(action.type)).replace("string_to_bool", "bool")
        is_list = action.nargs == "+"
        kind = f"a list of {expected}" if is_list else f"one {expected}"
        try:
            if is_list != isinstance(value, list):
                raise ValueError(f"{value!r} is not {kind}")
            checked[name] = (
                [_as_flag_value(action.type, item) for item in value] if is_list else _as_flag_value(action.type, value)
            )
        except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
            raise ValueError(f"{path}: `{name}` must be {kind}, got {value!r}.") from error
    return checked


def load_training_arguments(
    argv: list[str] | None = None,
) -> tuple[DacModelArguments, DacDataArguments, DacTrainingArguments]:
    """
    Parse `--config recipe.yaml` and any flags that override it. Without `--config`, the defaults (the released
    44.1 kHz recipe) apply.
    """
    config_parser = argparse.ArgumentParser(add_help=False)
    config_parser.add_argument("--config", default=None)
    known, remaining = config_parser.parse_known_args(argv)
    yaml_values = _read_yaml(known.config) if known.config else {}

    parser = HfArgumentParser(_DATACLASSES)
    parser.add_argument("--config", default=None, help="YAML recipe whose values the other flags override.")
    yaml_values = _checked_yaml_values(parser, yaml_values, known.config)
    parser.set_defaults(**{name: value for name, value in yaml_values.items() if name not in _REPEATABLE_FIELDS})
    model_args, data_args, training_args, _ = parser.parse_args_into_dataclasses(args=remaining)
    for name in _REPEATABLE_FIELDS:
        if not getattr(data_args, name) and yaml_values.get(name):
            setattr(data_args, name, yaml_values[name])
    return model_args, data_args, training_args


def arguments_as_dict(*arguments) -> dict:
    """One flat dict of every option, for the trackers' hyperparameter record."""
    merged = {}
    for dataclass_instance in arguments:
        merged.update(asdict(dataclass_instance))
    return merged
