"""Official DAC `.pth` checkpoints to `DacModel`.

An official checkpoint is `torch.save({"state_dict": ..., "metadata": {"kwargs": {...}}})` with sequential
module indices and weight norm stored as `weight_g` / `weight_v` (SPEC section 4). It holds only plain
containers and tensors, so it is read with `torch.load(weights_only=True)`: nothing else is ever unpickled.
Transformers-port checkpoints need no conversion: their layout is ours, and `DacModel.from_pretrained` loads them.
"""

import pickle
import zipfile
from pathlib import Path

import torch

from .configuration_dac import DacConfig
from .modeling_dac import DacModel
from .saving import check_model_output_dir, save_model_folder
from .weight_norm import fold_weight_norm

__all__ = [
    "config_from_official_kwargs",
    "convert_official_checkpoint",
    "convert_official_state_dict",
    "load_official_checkpoint",
    "official_module_names",
]

_RESIDUAL_UNIT_PARTS = ("snake1", "conv1", "snake2", "conv2")


def config_from_official_kwargs(kwargs: dict) -> DacConfig:
    """
    DacConfig from the official `metadata["kwargs"]`. Checkpoints made before DAC 1.0.0 have no `latent_dim`;
    the official code then uses `encoder_dim * 2 ** len(encoder_rates)`, and so does this.
    """
    required = ("encoder_dim", "encoder_rates", "decoder_dim", "decoder_rates", "sample_rate")
    missing = [name for name in required if name not in kwargs]
    if missing:
        raise ValueError(f"The checkpoint metadata kwargs lack {missing}; is this a DAC checkpoint?")
    return DacConfig(
        encoder_hidden_size=int(kwargs["encoder_dim"]),
        downsampling_ratios=list(kwargs["encoder_rates"]),
        decoder_hidden_size=int(kwargs["decoder_dim"]),
        upsampling_ratios=list(kwargs["decoder_rates"]),
        hidden_size=None if kwargs.get("latent_dim") is None else int(kwargs["latent_dim"]),
        n_codebooks=int(kwargs.get("n_codebooks", 9)),
        codebook_size=int(kwargs.get("codebook_size", 1024)),
        codebook_dim=int(kwargs.get("codebook_dim", 8)),
        quantizer_dropout=float(kwargs.get("quantizer_dropout", 0.0)),
        sampling_rate=int(kwargs["sample_rate"]),
    )


def official_module_names(config: DacConfig) -> dict[str, str]:
    """Official module path -> our module path, for every module that holds parameters."""
    names = {}

    def residual_units(official_prefix: str, our_prefix: str, first_index: int):
        for unit in range(3):
            for part_index, part in enumerate(_RESIDUAL_UNIT_PARTS):
                names[f"{official_prefix}.block.{first_index + unit}.block.{part_index}"] = (
                    f"{our_prefix}.res_unit{unit + 1}.{part}"
                )

    n_encoder_blocks = len(config.downsampling_ratios)
    names["encoder.block.0"] = "encoder.conv1"
    for index in range(1, n_encoder_blocks + 1):
        residual_units(f"encoder.block.{index}", f"encoder.block.{index - 1}", first_index=0)
        names[f"encoder.block.{index}.block.3"] = f"encoder.block.{index - 1}.snake1"
        names[f"encoder.block.{index}.block.4"] = f"encoder.block.{index - 1}.conv1"
    names[f"encoder.block.{n_encoder_blocks + 1}"] = "encoder.snake1"
    names[f"encoder.block.{n_encoder_blocks + 2}"] = "encoder.conv2"

    n_decoder_blocks = len(config.upsampling_ratios)
    names["decoder.model.0"] = "decoder.conv1"
    for index in range(1, n_decoder_blocks + 1):
        names[f"decoder.model.{index}.block.0"] = f"decoder.block.{index - 1}.snake1"
        names[f"decoder.model.{index}.block.1"] = f"decoder.block.{index - 1}.conv_t1"
        residual_units(f"decoder.model.{index}", f"decoder.block.{index - 1}", first_index=2)
    names[f"decoder.model.{n_decoder_blocks + 1}"] = "decoder.snake1"
    names[f"decoder.model.{n_decoder_blocks + 2}"] = "decoder.conv2"

    for index in range(config.n_codebooks):
        for part in ("in_proj", "out_proj", "codebook"):
            names[f"quantizer.quantizers.{index}.{part}"] = f"quantizer.quantizers.{index}.{part}"
    return names


def convert_official_state_dict(state_dict: dict[str, torch.Tensor], config: DacConfig) -> dict[str, torch.Tensor]:
    """
    Rename an official state dict to our layout and fold its weight norm (see `fold_weight_norm`).
    Unknown or missing keys raise a `ValueError` listing them.
    """
    module_names = official_module_names(config)
    renamed, unknown = {}, []
    for key, tensor in state_dict.items():
        module, _, parameter = key.rpartition(".")
        if module in module_names and parameter in ("weight_g", "weight_v", "weight", "bias", "alpha"):
            renamed[f"{module_names[module]}.{parameter}"] = tensor
        else:
            unknown.append(key)
    converted = fold_weight_norm(renamed)

    with torch.device("meta"):
        expected = DacModel(config).state_dict()
    missing = sorted(set(expected) - set(converted))
    mismatched = [
        f"{key} {tuple(tensor.shape)} instead of {tuple(expected[key].shape)}"
        for key, tensor in converted.items()
        if key in expected and tensor.shape != expected[key].shape
    ]
    if unknown or missing or mismatched:
        raise ValueError(
            "The state dict does not match an official DAC model with this config: "
            f"unexpected keys {_first(unknown)}, missing keys {_first(missing)}, "
            f"tensors of the wrong shape {_first(mismatched)}."
        )
    return converted


def _first(items: list[str], count: int = 8) -> str:
    return f"{items[:count]}{' ...' if len(items) > count else ''}"


def _load_failure_reason(error: Exception) -> str:
    """torch.load's reason for refusing a file, without the advice around it to turn the safe loader off."""
    message, marker = str(error), "WeightsUnpickler error:"
    if marker in message:
        reason = message.split(marker, 1)[1].split("Check the documentation", 1)[0].split(" Please use", 1)[0]
        return " ".join(reason.split()).rstrip(".")
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    return type(error).__name__ if not first_line or first_line.startswith("Weights only load failed") else first_line


def _read_official_checkpoint(path: str | Path) -> tuple[dict, dict]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No checkpoint file at {path}.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError... by the damage
        if not zipfile.is_zipfile(path):
            # torch.load reads such bytes as its pre-1.6 pickle format, which fails with meaningless errors
            # (KeyError: 101 for a text file).
            raise ValueError(
                f"{path} is not a PyTorch checkpoint (or is truncated): torch.save writes a zip archive, and this "
                "file is neither one nor a checkpoint in PyTorch's older format."
            ) from error
        if not isinstance(error, pickle.UnpicklingError):
            raise ValueError(
                f"{path} is a zip archive but not a readable PyTorch checkpoint: {_load_failure_reason(error)}."
            ) from error
        raise ValueError(
            f"{path} is not a plain DAC checkpoint: torch.load with weights_only=True refused it "
            f"({_load_failure_reason(error)}). Nothing in it was run; an official .pth holds only tensors and plain "
            "containers."
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not an official DAC checkpoint: expected a dict with a 'state_dict' entry.")
    metadata = checkpoint.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("kwargs"), dict):
        raise ValueError(f"{path} has no metadata['kwargs'] describing the DAC architecture.")
    state_dict = checkpoint["state_dict"]
    if not isinstance(state_dict, dict) or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise ValueError(f"{path}: 'state_dict' must map names to tensors.")
    return state_dict, metadata["kwargs"]


def load_official_checkpoint(path: str | Path) -> DacModel:
    """An official DAC `.pth` as a `DacModel` in eval mode, with folded (plain) weights."""
    state_dict, kwargs = _read_official_checkpoint(path)
    config = config_from_official_kwargs(kwargs)
    config.name_or_path = Path(path).stem
    model = DacModel(config)
    model.load_state_dict(convert_official_state_dict(state_dict, config), strict=True)
    return model.eval()


def convert_official_checkpoint(path: str | Path, output_dir: str | Path, overwrite: bool = False) -> DacModel:
    """
    Write an official `.pth` as a `save_pretrained` directory: `model.safetensors`, `config.json` and the
    feature extractor's `preprocessor_config.json`, written beside `output_dir` and renamed into place once
    complete. An existing non-empty `output_dir` is replaced only with `overwrite=True`, and only if it holds
    nothing but an earlier model's files. Returns the converted model.
    """
    check_model_output_dir(output_dir, overwrite)  # before the slow load
    model = load_official_checkpoint(path)
    save_model_folder(model, output_dir, overwrite)
    return model
