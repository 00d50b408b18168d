"""Subcommands of the `dac` command line, one module per theme.

Each module defines `COMMANDS = {name: Command(help, add_arguments, run)}`; `modeling_dac.cli` discovers the
modules of this package, so adding a subcommand is adding a module. `run(args)` returns the exit status.
"""

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "Command", "add_model_argument", "load_model", "resolve_device"]

# The checkpoint `--model` falls back to: the reference codec shipped in a checkout of the repository
# (checkpoints/dac_reference, trained with training/; see docs/reference_checkpoint.md). An installed package
# without the checkout has none, and then `--model` is required.
_REFERENCE_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "dac_reference"
DEFAULT_MODEL: str | None = str(_REFERENCE_CHECKPOINT) if _REFERENCE_CHECKPOINT.is_dir() else None


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    # The pip extra of modeling_dac that installs the optional packages `run` imports (named in the error a
    # plain `pip install modeling_dac` then gives).
    extra: str | None = None


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """`--model`, defaulting to the repository's reference checkpoint when there is one."""
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="save_pretrained directory or hub id of a DacModel "
        + (
            "(default: the repository's reference checkpoint, a small 16 kHz codec; use a converted official model "
            "for real quality)"
            if DEFAULT_MODEL
            else "(required: an installed package has no default checkpoint)"
        ),
    )


def resolve_device(name: str):
    """The torch device `--device` names (`auto`: cuda when available), or a ValueError saying what is wrong."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"--device {name!r} is not a torch device (use cpu, cuda, cuda:1 or auto).") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto.")
    return device


def load_model(model: str | None, show_progress: bool = True):
    """`DacModel.from_pretrained(model)` in eval mode, or a ValueError naming what is wrong with `--model`."""
    from transformers.utils import logging as transformers_logging

    from ..modeling_dac import DacModel

    if not show_progress:
        transformers_logging.disable_progress_bar()  # the "Loading weights" bar

    if model is None:
        raise ValueError(
            "no model given: pass --model with a save_pretrained directory or hub id (for example one written "
            "by `dac convert`); an installed package has no default checkpoint."
        )
    model = os.path.expanduser(model)  # `--model=~/dir` arrives unexpanded: shells expand `~` only at a word's start
    path = Path(model)
    is_hub_id_shaped = not path.is_absolute() and not model.startswith((".", "~")) and len(path.parts) <= 2
    if not is_hub_id_shaped and not path.is_dir():
        raise ValueError(f"cannot load --model {model}: no such directory.")
    try:
        return DacModel.from_pretrained(model).eval()
    except OSError as error:
        local = "" if path.exists() else f" (there is no local directory {model} either)"
        raise ValueError(f"cannot load --model {model}{local}: {error}") from error
