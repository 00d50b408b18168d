"""Model folders that `from_pretrained` loads whole: the weights, `config.json` and the matching feature extractor's
`preprocessor_config.json`, written together and replaced atomically, never over files of another kind."""

import re
from pathlib import Path

from torch import nn

from .atomic import write_folder_atomically

__all__ = ["check_model_output_dir", "save_model_folder", "write_model_files"]

# What `write_model_files` (through `save_pretrained`) can leave in a folder, sharded weights included.
_MODEL_FILE = re.compile(
    r"config\.json|preprocessor_config\.json|generation_config\.json"
    r"|model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json"
)


def write_model_files(model: nn.Module, folder: str | Path) -> None:
    """`model.save_pretrained(folder)` plus the feature extractor that matches its config, in the same folder."""
    from .feature_extraction_dac import DacFeatureExtractor

    model.save_pretrained(folder)
    DacFeatureExtractor.from_model_config(model.config).save_pretrained(folder)


def check_model_output_dir(output_dir: str | Path, overwrite: bool) -> None:
    """
    Refuse an output that is a file, a non-empty folder without ``overwrite``, or (even with it) a folder holding
    anything but an earlier model's files: replacing the folder would delete them, e.g. the checkpoint being
    converted or a whole project.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output {output_dir} is an existing file; the output is a directory.")
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return
    if not overwrite:
        raise ValueError(
            f"output directory {output_dir} is not empty; pass overwrite=True (--overwrite) to replace it."
        )
    foreign = sorted(entry.name for entry in output_dir.iterdir() if not _MODEL_FILE.fullmatch(entry.name))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ValueError(
            f"output directory {output_dir} holds {shown}, which is not a saved model's; replacing the directory "
            "would delete it. Choose a new or empty output directory."
        )


def save_model_folder(model: nn.Module, output_dir: str | Path, overwrite: bool = False) -> Path:
    """
    `write_model_files` into a staging folder beside ``output_dir`` that then takes its place, after
    `check_model_output_dir`. Returns ``output_dir``.
    """
    check_model_output_dir(output_dir, overwrite)
    return write_folder_atomically(output_dir, lambda folder: write_model_files(model, folder))
