"""Weight-norm state dicts: recognising them, reading them from checkpoints, and folding `g * v / ||v||` into plain
weights.

DAC trains every convolution with weight norm; checkpoints come with it stored as `weight_g`/`weight_v`
(official DAC, older Transformers) or as torch parametrizations' `original0`/`original1`, and inference wants
plain `weight`s.
"""

import zipfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers.utils import cached_file
from transformers.utils.hub import get_checkpoint_shard_files

__all__ = ["fold_weight_norm", "has_weight_norm_keys", "read_weight_norm_checkpoint"]

_WEIGHT_NORM_SUFFIXES = {
    ".weight_g": ".weight_v",  # torch.nn.utils.weight_norm (official DAC, older Transformers)
    ".parametrizations.weight.original0": ".parametrizations.weight.original1",  # torch parametrizations
}


def fold_weight_norm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """
    Replace every weight-norm pair (`weight_g`/`weight_v`, or parametrizations' `original0`/`original1`) by the
    plain `weight = g * v / ||v||`, computed with the kernel weight-normed modules run at every forward
    (`torch._weight_norm`), so the plain weights are bit-identical to what such a model uses.
    """
    folded = dict(state_dict)
    for key in state_dict:
        for magnitude_suffix, direction_suffix in _WEIGHT_NORM_SUFFIXES.items():
            if not key.endswith(magnitude_suffix):
                continue
            module = key[: -len(magnitude_suffix)]
            direction_key = module + direction_suffix
            if direction_key not in state_dict:
                raise ValueError(f"Weight norm magnitude {key} has no direction {direction_key}.")
            folded[f"{module}.weight"] = torch._weight_norm(folded.pop(direction_key), folded.pop(key), 0)
    return folded


def has_weight_norm_keys(keys) -> bool:
    """Whether state-dict `keys` hold a weight-norm magnitude (`weight_g` or parametrizations' `original0`)."""
    return any(key.endswith(suffix) for key in keys for suffix in _WEIGHT_NORM_SUFFIXES)


def read_weight_norm_checkpoint(name_or_path, kwargs: dict) -> dict[str, torch.Tensor] | None:
    """
    The whole state dict of the checkpoint `from_pretrained(name_or_path, **kwargs)` would load (its hub options
    and `use_safetensors` are honoured), if it holds weight norm; `None` for a plain checkpoint, whose weights are
    left to Transformers' loader. Only the keys are read to tell the two apart.
    """
    checkpoints = _weight_files(name_or_path, kwargs)
    if not has_weight_norm_keys(key for checkpoint in checkpoints for key in _weight_keys(checkpoint)):
        return None
    state_dict = {}
    for checkpoint in checkpoints:
        state_dict.update(_load_weights(checkpoint))
    return state_dict


# Weight files in the order transformers prefers them: (single file, index of shards).
_WEIGHT_FILE_NAMES = (
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
)


def _weight_files(name_or_path, kwargs: dict) -> list[str]:
    """
    Paths of the weights of a local directory or hub repo: `model.safetensors` or its shards, else
    `pytorch_model.bin` or its shards; empty when there are none.
    """
    hub_options = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
    options = {name: kwargs[name] for name in hub_options if name in kwargs}
    file_names = _WEIGHT_FILE_NAMES[1:] if kwargs.get("use_safetensors") is False else _WEIGHT_FILE_NAMES
    try:
        for single_name, index_name in file_names:
            single = cached_file(name_or_path, single_name, _raise_exceptions_for_missing_entries=False, **options)
            if single is not None:
                return [single]
            index = cached_file(name_or_path, index_name, _raise_exceptions_for_missing_entries=False, **options)
            if index is not None:
                return get_checkpoint_shard_files(name_or_path, index, **options)[0]
    except (OSError, ValueError):
        pass
    return []


def _weight_keys(path: str) -> list[str]:
    if path.endswith(".safetensors"):
        with safe_open(path, framework="pt") as handle:
            return list(handle.keys())
    # Memory-mapped where the format allows (zip, torch >= 1.6), so that only the keys are read.
    return list(torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path)))


def _load_weights(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)
