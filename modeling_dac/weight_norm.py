"""Weight-norm state dicts: recognising them and folding `g * v / ||v||` into plain weights.

DAC trains every convolution with weight norm; checkpoints come with it stored as `weight_g`/`weight_v`
(official DAC, older Transformers) or as torch parametrizations' `original0`/`original1`, and inference wants
plain `weight`s.
"""

import torch

__all__ = ["fold_weight_norm", "has_weight_norm_keys"]

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
    return any(key.endswith(suffix) for key in keys for suffix in _WEIGHT_NORM_SUFFIXES)
